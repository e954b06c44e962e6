"""Yin-Yang data set (Kriener et al. 2022): generator with the published seeds, and a spike
encoding (time to first spike)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_int
from ._common import PathLike, check_folder

__all__ = ["YinYang", "yin_yang_points", "YIN_YANG_SEEDS", "YIN_YANG_SIZES"]

#: Seeds and sizes of the published splits.
YIN_YANG_SEEDS = {"train": 42, "validation": 41, "test": 40}
YIN_YANG_SIZES = {"train": 5000, "validation": 1000, "test": 1000}


def _which_class(x: float, y: float, r_small: float, r_big: float) -> int:
    d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    if d_right < r_small or d_left < r_small:
        return 2  # dot
    is_yin = (d_right <= r_small) or (r_small < d_left <= 0.5 * r_big) or (y > r_big and d_right > 0.5 * r_big)
    return int(is_yin)


def yin_yang_points(size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Generate Yin-Yang samples exactly as the published generator does.

    One ``numpy.random.RandomState(seed)``; per sample a goal class ``randint(3)`` then
    rejection sampling of ``(x, y) = 2 r_big rand(2)`` inside the big circle until the class
    matches. Features are ``[x, y, 1 - x, 1 - y]``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(size, 4)`` float64 samples and ``(size,)`` int64 labels (0 yin, 1 yang, 2 dot).

    Examples
    --------
    >>> x, y = yin_yang_points(5, seed=0)
    >>> x.shape, bool(np.allclose(x[:, 0] + x[:, 2], 1.0))
    ((5, 4), True)
    """
    size = check_int("size", size, minimum=0)
    rng = np.random.RandomState(seed)
    vals, cs = [], []
    for _ in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if np.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            c = _which_class(x, y, r_small, r_big)
            if c == goal:
                break
        vals.append([x, y, 1.0 - x, 1.0 - y])
        cs.append(c)
    return np.asarray(vals, dtype=np.float64).reshape(size, 4), np.asarray(cs, dtype=np.int64)


class YinYang(Dataset):
    """Yin-Yang classification (3 classes) as spike trains, time-to-first-spike encoded.

    Each of the 4 coordinates ``v`` in ``[0, 1]`` becomes one spike at step
    ``round(v * (n_steps_enc - 1))``; a fifth bias channel spikes at step 0. The sequence has
    ``n_steps`` steps (>= ``n_steps_enc``), leaving time for delayed spikes to arrive.

    Parameters
    ----------
    split : {"train", "validation", "test"}
    root : str or pathlib.Path, optional
        Folder with the published ``{split}_samples.npy`` / ``{split}_labels.npy``; without
        it the generator makes the same points from the published seeds (train 42,
        validation 41, test 40).
    size : int, optional
        Number of samples (default: the published size of the split).
    n_steps_enc : int
        Steps over which the coordinates are encoded (default 20).
    n_steps : int
        Sequence length (default 30).

    Examples
    --------
    >>> ds = YinYang("test", size=3)
    >>> x, y = ds[0]
    >>> x.shape, float(x.sum())
    (torch.Size([30, 5]), 5.0)
    """

    n_features = 5
    n_classes = 3

    def __init__(self, split: str = "train", root: Optional[PathLike] = None, size: Optional[int] = None,
                 n_steps_enc: int = 20, n_steps: int = 30) -> None:
        self.split = check_choice("split", split, tuple(YIN_YANG_SEEDS))
        self.n_steps_enc = check_int("n_steps_enc", n_steps_enc, minimum=2)
        self.n_steps = check_int("n_steps", n_steps, minimum=self.n_steps_enc)
        if root is not None:
            p = check_folder("root", root, "Yin-Yang folder",
                             "Generate the data instead (root=None) or get the arrays from "
                             "https://github.com/lkriener/yin_yang_data_set.")
            xs, ys = np.load(p / f"{split}_samples.npy"), np.load(p / f"{split}_labels.npy")
            if size is not None:
                xs, ys = xs[: check_int("size", size, minimum=0)], ys[:size]
        else:
            n = YIN_YANG_SIZES[split] if size is None else check_int("size", size, minimum=0)
            xs, ys = yin_yang_points(n, YIN_YANG_SEEDS[split])
        self.points, self.labels = xs, ys.astype(np.int64)
        steps = np.rint(xs * (self.n_steps_enc - 1)).astype(np.int64)
        x = torch.zeros(len(ys), self.n_steps, 5)
        rows = torch.arange(len(ys))
        for f in range(4):
            x[rows, torch.from_numpy(steps[:, f]), f] = 1.0
        x[:, 0, 4] = 1.0
        self.x = x

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.x[i], int(self.labels[i])
