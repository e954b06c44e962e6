"""``benchmarks/ff_events.py`` runs and reports one row per shape (tiny sizes)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import ff_events  # noqa: E402


@pytest.mark.parametrize("extra", [[], ["--lif", "--input-grad"]], ids=["input-layer", "hidden-layer-lif"])
def test_ff_events_benchmark_runs(tmp_path, extra):
    out = tmp_path / "r.json"
    argv = ["--shapes", "12x3x5x4x6", "--density", "0.1", "--repeats", "1", "--json", str(out)] + extra
    assert ff_events.main(argv) == 0
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert row["shape"] == "T12 B3 5->4 D6" and row["lif"] == bool(extra) and row["input_grad"] == bool(extra)
    assert row["ours_ms"] > 0 and row["no_delay_ms"] > 0 and row["reference_ms"] > 0
    assert row["ours_over_no_delay"] > 0


@pytest.mark.parametrize("argv", [["--shapes", "66x128x256"], ["--density", "1.5"]])
def test_bad_arguments_are_refused(argv):
    with pytest.raises(SystemExit):
        ff_events.main(argv)
