"""``benchmarks/delrec_neuron.py`` runs and reports one row per neuron (tiny sizes)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import delrec_neuron  # noqa: E402
from snn_delays_ext.ops import AVAILABLE  # noqa: E402


@pytest.mark.skipif(not AVAILABLE, reason="needs the compiled ops")
def test_delrec_neuron_benchmark_runs(tmp_path):
    out = tmp_path / "r.json"
    assert delrec_neuron.main(["--batch", "2", "--steps", "12", "--neurons", "8", "--repeats", "1",
                               "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["neuron"] for r in rows] == list(delrec_neuron.NEURONS)
    assert all(r["compiled_ms"] > 0 and r["reference_ms"] > 0 for r in rows)
