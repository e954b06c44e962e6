"""Benchmarks of snn_delays_ext (not part of the test suite, not installed with the package).

Run them from the repository root, e.g. ``python -m benchmarks.run --suite cpu --quick``;
see ``benchmarks/README.md``.
"""
