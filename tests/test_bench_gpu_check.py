"""The CUDA-machine script ``benchmarks/gpu_check.py``, the parts a CPU can run: the small data it
generates in each dataset's own format loads with the library's readers, a preset and the
torchrun step run end to end (on the CPU here), and the summary reads a benchmark report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check as gc
from snn_delays_ext.data import SHD, SSC, Braille, PermutedSequentialMNIST

REPO = Path(__file__).resolve().parents[1]


def test_generated_data_loads_with_the_readers(tmp_path):
    pytest.importorskip("h5py")
    folders = gc.make_small_data(tmp_path, ["braille", "shd", "ssc", "psmnist"])
    assert len(Braille(folders["braille"], "train")) > 100
    shd = SHD(folders["shd"], "train", pool=5)
    x, y = shd[3]
    assert x.shape[1] == 140 and 0 <= y < 20 and float(x.sum()) > 0
    assert len(SSC(folders["ssc"], "valid")) == 70 and SSC.n_classes == 35
    ps = PermutedSequentialMNIST(folders["psmnist"], "train")
    assert len(ps) == 300 and ps[0][0].shape == (784, 1)
    assert len(PermutedSequentialMNIST(folders["psmnist"], "val")) == 5000


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def test_preset_and_torchrun_steps_run_on_cpu(tmp_path):
    pytest.importorskip("h5py")
    steps = gc.step_presets(_env(), tmp_path, None, 48, 24, 300, names=["braille", "default"], device="cpu")
    assert [s.status for s in steps] == ["PASS", "PASS"], [s.detail for s in steps]
    assert steps[0].data["data"] == "generated" and steps[0].data["n_train"] == 48
    assert steps[0].data["epoch_s"] > 0
    if torch.distributed.is_available() and torch.distributed.is_gloo_available():
        st = gc.step_torchrun(_env(), tmp_path, 300, device="cpu")
        assert st.status == "PASS", st.detail
        assert "backend gloo" in st.detail


def test_summary_of_a_benchmark_report(capsys):
    report = {"groups": [{"name": "SSC-like", "results": [
        {"impl": "ours", "label": "ours[compiled]", "time_ms": 10.0, "peak_MB": 100.0},
        {"impl": "delrec_style", "label": "delrec_style", "time_ms": 95.0, "time_vs_ours": 9.5,
         "peak_MB": 800.0, "peak_vs_ours": 8.0}]},
        {"name": "DCLS-paper-D512", "error": "group timed out after 90 s", "results": []}]}
    rows = gc.benchmark_ratios(report)
    assert rows == [dict(group="SSC-like", ours_ms=10.0, ours_peak_MB=100.0, time_vs_ours={"delrec_style": 9.5},
                         peak_vs_ours={"delrec_style": 8.0})]
    st = gc.Step("benchmarks.run --suite gpu --quick")
    st.status, st.data = "PASS", {"ratios": rows}
    gc.print_summary([st], 1.0)
    assert "delrec_style 9.5x" in capsys.readouterr().out
