"""Shared by the DDP tests: train under torchrun (2 CPU processes, gloo) and in one process on
the same global batch, and compare the checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parents[1]


def torchrun_train(out: Path, args: List[str], nproc: int = 2) -> "subprocess.CompletedProcess[str]":
    """``snn-delays train --out OUT ARGS`` under torchrun with ``nproc`` processes (gloo on the
    CPU, NCCL on GPUs); skips where gloo is missing; returns the finished process (output
    captured)."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("needs torch.distributed gloo")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "snn_delays_ext.train", "train", "--out", str(out)] + args
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def train_ddp_and_single(tmp_path: Path, args: List[str]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Run ``snn-delays train ARGS`` under torchrun with 2 processes and in this process; check
    both finished with the right world size and the same weights; return both checkpoints."""
    from snn_delays_ext.train.cli import main

    r = torchrun_train(tmp_path / "ddp", args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert main(["train", "--out", str(tmp_path / "one")] + args) == 0
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    assert a["world_size"] == 2 and b["world_size"] == 1
    for k, v in b["model"].items():
        if isinstance(v, torch.Tensor):
            assert torch.allclose(a["model"][k], v, atol=1e-5, rtol=1e-4), k
    return a, b
