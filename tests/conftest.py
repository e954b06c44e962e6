"""Shared fixtures: the shared data folder, CUDA skipping, seeding, interrupted-and-resumed runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# The suite draws the same hypothesis examples in every run (a CI result does not depend on the
# draw); `pytest --hypothesis-profile=explore` draws new ones each run to hunt for bugs.
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile("default")


def shared_data_dir() -> Path | None:
    """``$SNN_DELAYS_DATA`` or ``<repo>/../shared/data``; ``None`` if neither exists."""
    env = os.environ.get("SNN_DELAYS_DATA")
    for p in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data"]:
        if p.is_dir():
            return p
    return None


@pytest.fixture
def shared_data() -> Path:
    """Path of the real-data folder; skips the test cleanly where it is absent."""
    p = shared_data_dir()
    if p is None:
        pytest.skip("shared data folder not found (set SNN_DELAYS_DATA)")
    return p


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """A test (or a benchmark's ``main`` it runs) that changes torch's thread count does not
    change the numbers of the tests after it (BLAS sums depend on the thread count)."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


class _Killed(Exception):
    """Raised from ``on_epoch_end`` to stand for a run killed after an epoch's checkpoint."""


@pytest.fixture
def train_killed_then_resumed():
    """``run(cfg, root, kill_after) -> (full_dir, cut_dir)``: trains ``cfg`` uninterrupted in
    ``root/full``; in ``root/cut`` it stops the run after epoch ``kill_after`` (checkpoint
    written) and finishes it with ``snn-delays train --resume``."""
    from snn_delays_ext.train import train
    from snn_delays_ext.train.cli import main

    def run(cfg, root: Path, kill_after: int):
        full, cut = root / "full", root / "cut"
        train(cfg, run_dir=full, verbose=False)

        def kill(epoch, row):
            if epoch == kill_after:
                raise _Killed

        with pytest.raises(_Killed):
            train(cfg, run_dir=cut, on_epoch_end=kill, verbose=False)
        assert torch.load(cut / "checkpoint.pt", weights_only=False)["epoch"] == kill_after
        assert main(["train", "--resume", str(cut), "--no-progress"]) == 0
        return full, cut

    return run
