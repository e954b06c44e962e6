"""``benchmarks/leaky_sequence.py`` runs and reports one row per shape (tiny sizes)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import leaky_sequence  # noqa: E402
from snn_delays_ext.ops import leaky_sequence_devices  # noqa: E402


@pytest.mark.skipif("cpu" not in leaky_sequence_devices(), reason="needs the compiled leaky_sequence op")
def test_leaky_sequence_benchmark_runs(tmp_path):
    out = tmp_path / "r.json"
    assert leaky_sequence.main(["--shapes", "5x2x3", "1x1x4", "--repeats", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["shape"] for r in rows] == ["T5 B2 N3", "T1 B1 N4"]
    assert all(r["fused_ms"] > 0 and r["snntorch_loop_ms"] > 0 and r["reference_ms"] > 0 for r in rows)


def test_bad_shape_is_refused():
    with pytest.raises(SystemExit):
        leaky_sequence.main(["--shapes", "66x128"])
