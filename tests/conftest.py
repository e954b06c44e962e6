"""Shared fixtures: the shared data folder, CUDA skipping, seeding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


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
