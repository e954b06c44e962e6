"""Sequence detection: tell which of two input neurons fired first, a fixed gap apart."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_int

__all__ = ["SequenceDetection"]

_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


class SequenceDetection(Dataset):
    """Two input neurons each fire one spike, ``gap`` steps apart; the class says which fired
    first (0: neuron 0 then neuron 1, 1: neuron 1 then neuron 0).

    A network with two leaky-integrator outputs solves it exactly when output ``k``'s delays
    align its sequence (delay ``gap`` on the first input, 0 on the second): the two inputs then
    coincide and the voltage peak is highest. Starting delays the other way round (0 and
    ``gap``) is the worst case. The onset ``t0`` is uniform in ``[0, n_steps - gap - max_lag)``
    so every delayed spike still arrives inside the sequence; optional ``noise`` adds
    background spikes with that probability per step and channel.

    Parameters
    ----------
    split : {"train", "val", "test"}
        Each split has its own fixed seed (0, 1, 2) unless ``seed`` is given.
    size : int
        Number of samples (classes balanced, alternating).
    n_steps : int
        Sequence length (default 40).
    gap : int
        Steps between the two spikes (default 10).
    max_lag : int
        Steps left free at the end for delayed spikes (default ``gap``).
    noise : float
        Background spike probability per step and channel.
    seed : int, optional
        Overrides the split's seed.

    Examples
    --------
    >>> ds = SequenceDetection("train", size=4)
    >>> x, y = ds[1]
    >>> x.shape, y, x.sum(0).tolist()
    (torch.Size([40, 2]), 1, [1.0, 1.0])
    >>> int(x[:, 0].argmax() - x[:, 1].argmax())   # class 1: neuron 1 fired 10 steps earlier
    10
    """

    n_features = 2
    n_classes = 2

    def __init__(self, split: str = "train", size: int = 1000, n_steps: int = 40, gap: int = 10,
                 max_lag: Optional[int] = None, noise: float = 0.0, seed: Optional[int] = None) -> None:
        self.split = check_choice("split", split, tuple(_SPLIT_SEEDS))
        self.size = check_int("size", size, minimum=1)
        self.n_steps = check_int("n_steps", n_steps, minimum=2)
        self.gap = check_int("gap", gap, minimum=1)
        self.max_lag = self.gap if max_lag is None else check_int("max_lag", max_lag, minimum=0)
        span = self.n_steps - self.gap - self.max_lag
        if span < 1:
            raise ValueError(
                f"n_steps: expected n_steps > gap + max_lag = {self.gap + self.max_lag}, got {n_steps}"
            )
        if not 0.0 <= float(noise) < 1.0:
            raise ValueError(f"noise: expected a probability in [0, 1), got {noise}")
        rng = np.random.RandomState(_SPLIT_SEEDS[split] if seed is None else seed)
        self.labels = np.arange(self.size, dtype=np.int64) % 2
        t0 = rng.randint(0, span, size=self.size)
        x = np.zeros((self.size, self.n_steps, 2), dtype=np.float32)
        if noise > 0:
            x[:] = (rng.rand(self.size, self.n_steps, 2) < noise).astype(np.float32)
        first = self.labels  # class 0: neuron 0 first; class 1: neuron 1 first
        rows = np.arange(self.size)
        x[rows, t0, first] = 1.0
        x[rows, t0 + self.gap, 1 - first] = 1.0
        self.x = torch.from_numpy(x)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.x[i], int(self.labels[i])
