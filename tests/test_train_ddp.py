"""DistributedDataParallel under torchrun, 2 CPU processes with gloo: same result as one
process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_torchrun_two_processes_match_one(tmp_path):
    # one epoch (4 optimiser steps): the two runs differ only by float summation order, which
    # later epochs can amplify into different spikes (a threshold crossing is discontinuous)
    args = ["--dataset", "sequence", "--hidden", "4", "--max-delay", "12", "--epochs", "1", "--batch-size", "50",
            "--train-limit", "200", "--eval-limit", "100", "--sigma0", "3", "--lr", "0.01", "--delay-lr", "0.3",
            "--device", "cpu", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "snn_delays_ext.train", "train", "--out", str(tmp_path / "ddp")] + args
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    from snn_delays_ext.train.cli import main

    assert main(["train", "--out", str(tmp_path / "one")] + args) == 0
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    assert a["world_size"] == 2 and b["world_size"] == 1
    for k, v in b["model"].items():
        if isinstance(v, torch.Tensor):
            assert torch.allclose(a["model"][k], v, atol=1e-5, rtol=1e-4), k
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5)
        assert ha["val_acc"] == hb["val_acc"]
