"""DistributedDataParallel under torchrun, 2 CPU processes with gloo: same result as one
process on the same global batch."""

from __future__ import annotations

import pytest
import torch.distributed as dist
import json

import torch
from _ddp_helpers import torchrun_train, train_ddp_and_single


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_torchrun_two_processes_match_one(tmp_path):
    # one epoch (4 optimiser steps): the two runs differ only by float summation order, which
    # later epochs can amplify into different spikes (a threshold crossing is discontinuous)
    args = ["--dataset", "sequence", "--hidden", "4", "--max-delay", "12", "--epochs", "1", "--batch-size", "50",
            "--train-limit", "200", "--eval-limit", "100", "--sigma0", "3", "--lr", "0.01", "--delay-lr", "0.3",
            "--device", "cpu", "--no-progress"]
    a, b = train_ddp_and_single(tmp_path, args)
    for ha, hb in zip(a["history"], b["history"]):
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5)
        assert ha["val_acc"] == hb["val_acc"]


_ONE = ["--dataset", "sequence", "--hidden", "4", "--max-delay", "12", "--epochs", "1", "--batch-size", "50",
        "--train-limit", "100", "--eval-limit", "50", "--no-progress"]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_torchrun_one_process_runs_the_distributed_path(tmp_path):
    """``torchrun --nproc_per_node=1`` initialises the process group and wraps the model in
    DistributedDataParallel (a one-GPU machine tests NCCL that way), with the numbers of a
    plain run."""
    from snn_delays_ext.train.cli import main

    r = torchrun_train(tmp_path / "ddp", _ONE + ["--device", "cpu"], nproc=1)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["world_size"] == 1 and results["distributed_backend"] == "gloo"
    assert main(["train", "--out", str(tmp_path / "one"), "--device", "cpu"] + _ONE) == 0
    plain = json.loads((tmp_path / "one" / "results.json").read_text())
    assert plain["distributed_backend"] is None
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    for k in b:
        if isinstance(b[k], torch.Tensor):
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.cuda
def test_torchrun_one_gpu_uses_nccl(tmp_path):
    if not dist.is_nccl_available():
        pytest.skip("no NCCL in this torch build")
    r = torchrun_train(tmp_path / "ddp", _ONE + ["--device", "cuda"], nproc=1)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["world_size"] == 1 and results["distributed_backend"] == "nccl"
