"""Compile the kernels on first use, for the torch that runs, when the install did not.

``pip install --no-build-isolation .`` compiles the kernels against the installed torch at
install time (``snn_delays_ext._C``). Every other install (``pip install .`` or a wheel built in
an isolated environment, which has no torch) ships the C++/CUDA sources instead, and the first
import compiles them with :func:`torch.utils.cpp_extension.load` into a cache keyed by the torch
build, the Python version and the sources: a later torch upgrade compiles again instead of
loading a library built for another torch. A compiled library from the install that cannot be
loaded (built for another torch) is replaced the same way.

The cache is ``$SNN_DELAYS_CACHE`` or ``~/.cache/snn_delays_ext``; delete it to force a rebuild.
Compiling needs a C++ compiler and ``ninja`` (a dependency), the CUDA kernels also ``nvcc``;
without them the layers run the plain-PyTorch reference (with one warning naming the error).
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
from pathlib import Path
from typing import List

import torch

__all__ = ["cache_dir", "load"]

_CSRC = Path(__file__).resolve().parent / "csrc"
_SOURCES = {
    "cpu": ["delays.cpp", "eventprop.cpp", "leaky_sequence.cpp", "synaptic_sequence.cpp"],
    "cuda": ["cuda/delays_cuda.cu", "cuda/eventprop_cuda.cu", "cuda/eventprop_cuda_ops.cpp", "cuda/leaky_sequence_cuda.cu",
             "cuda/synaptic_sequence_cuda.cu"],
}


def cache_dir() -> Path:
    """Where compiled libraries are kept: ``$SNN_DELAYS_CACHE``, else
    ``$XDG_CACHE_HOME/snn_delays_ext`` (``~/.cache/snn_delays_ext``)."""
    env = os.environ.get("SNN_DELAYS_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "snn_delays_ext"


def _key(kind: str) -> str:
    """A digest of what the library depends on: torch's build, Python, the platform, every
    source and header."""
    h = hashlib.sha256()
    h.update(f"{torch.__version__}|{torch.version.cuda}|{sys.version_info[:2]}|{platform.machine()}|{kind}".encode())
    for path in sorted(_CSRC.rglob("*")):
        if path.suffix in (".h", ".cpp", ".cu"):
            h.update(path.relative_to(_CSRC).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _flags(kind: str) -> dict:
    cflags = ["-O3"]
    ldflags: List[str] = []
    if sys.platform.startswith("linux"):
        # as setup.py: OpenMP, and no fused multiply-add contraction (the EventProp forward
        # reproduces the reference's separately rounded multiplies and adds)
        cflags += ["-fopenmp", "-ffp-contract=off"]
        ldflags += ["-fopenmp"]
    flags = dict(extra_cflags=cflags, extra_ldflags=ldflags)
    if kind == "cuda":
        flags["extra_cuda_cflags"] = ["-O3"]
    return flags


def load(kind: str) -> Path:
    """Load the ``kind`` (``"cpu"`` or ``"cuda"``) kernels, compiling them first if the cache
    has no library for this torch and these sources. Registers the ops; returns the library's
    path. Raises what the compiler or the loader raise."""
    if not all((_CSRC / s).is_file() for s in _SOURCES[kind]):
        raise ImportError(f"the {kind} kernel sources are not in {_CSRC}")
    name = "snn_delays_ext_C" + ("_cuda" if kind == "cuda" else "")
    build = cache_dir() / f"{name}-{_key(kind)}"
    lib = build / f"{name}.so"
    failed = build / "FAILED"
    if failed.is_file():  # tried before for this torch and these sources: do not wait again
        raise RuntimeError(f"{failed.read_text().strip()} (delete {build} to try again)")
    if not lib.is_file():
        from torch.utils import cpp_extension

        build.mkdir(parents=True, exist_ok=True)
        print(f"snn_delays_ext: compiling the {kind} kernels for torch {torch.__version__} (once; cached in "
              f"{build})", file=sys.stderr, flush=True)
        try:
            cpp_extension.load(
                name=name, sources=[str(_CSRC / s) for s in _SOURCES[kind]], build_directory=str(build),
                extra_include_paths=[str(_CSRC)], is_python_module=False, with_cuda=kind == "cuda",
                verbose=False, **_flags(kind))
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            failed.write_text(f"compiling the {kind} kernels failed: {type(exc).__name__}: "
                              f"{lines[-1] if lines else ''}")
            raise
        return lib
    torch.ops.load_library(str(lib))
    return lib
