"""DistributedDataParallel under torchrun, 2 CPU processes with gloo: same result as one
process on the same global batch."""

from __future__ import annotations

import pytest
import torch.distributed as dist
from _ddp_helpers import train_ddp_and_single


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
