"""Shared by the DelayedRecurrentLeaky tests: run snnTorch's own RLeaky step by step."""

from __future__ import annotations

from typing import Tuple

import torch


def run_ref(ref: torch.nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes ``(T, B, N)`` of an ``snn.RLeaky`` fed ``x`` from its zero state."""
    spk, mem = ref.init_rleaky()
    spks, mems = [], []
    for t in range(x.shape[0]):
        spk, mem = ref(x[t], spk, mem)
        spks.append(spk)
        mems.append(mem)
    return torch.stack(spks), torch.stack(mems)
