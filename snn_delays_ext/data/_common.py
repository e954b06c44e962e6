"""Shared pieces of the dataset loaders: the time-first collate function, binning, splits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["time_first_collate", "TensorSequenceDataset", "bin_events", "stratified_split",
           "make_loader", "check_folder", "PathLike"]

PathLike = Union[str, Path]


def time_first_collate(batch: Sequence[Tuple[torch.Tensor, int]]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(x (T, F), label)`` samples into a time-first batch ``(T, B, F)``.

    Shorter sequences are zero-padded at the end (silence) to the longest one.

    Parameters
    ----------
    batch : sequence of (torch.Tensor, int)
        Samples of shape ``(T_i, F)`` and integer labels.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``x`` of shape ``(max T_i, B, F)`` and labels ``(B,)`` (int64).

    Examples
    --------
    >>> import torch
    >>> x, y = time_first_collate([(torch.ones(3, 2), 0), (torch.ones(5, 2), 1)])
    >>> x.shape, y.tolist(), x[3:, 0].sum().item()
    (torch.Size([5, 2, 2]), [0, 1], 0.0)
    """
    if len(batch) == 0:
        raise ValueError("batch: expected at least one sample, got an empty batch")
    xs = [torch.as_tensor(b[0]) for b in batch]
    for x in xs:
        if x.dim() != 2 or x.shape[1] != xs[0].shape[1]:
            raise ValueError(
                f"batch: expected samples of shape (T, {xs[0].shape[1]}), got {tuple(x.shape)}"
            )
    t_max = max(x.shape[0] for x in xs)
    out = xs[0].new_zeros((t_max, len(xs), xs[0].shape[1]))
    for i, x in enumerate(xs):
        out[: x.shape[0], i] = x
    labels = torch.as_tensor([int(b[1]) for b in batch], dtype=torch.long)
    return out, labels


class TensorSequenceDataset(Dataset):
    """Dataset of dense sequences ``x[i]`` of shape ``(T, F)`` with labels ``y[i]``.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, T, F)``.
    y : torch.Tensor
        ``(N,)`` integer labels.
    n_classes : int
        Number of classes.

    Examples
    --------
    >>> import torch
    >>> ds = TensorSequenceDataset(torch.zeros(4, 10, 3), torch.tensor([0, 1, 0, 1]), 2)
    >>> len(ds), ds[1][0].shape, ds[1][1]
    (4, torch.Size([10, 3]), 1)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        if x.dim() != 3:
            raise ValueError(f"x: expected a (N, T, F) tensor, got shape {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y: expected shape ({x.shape[0]},), got {tuple(y.shape)}")
        self.x, self.y, self.n_classes = x, y.long(), int(n_classes)
        self.n_steps, self.n_features = int(x.shape[1]), int(x.shape[2])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def bin_events(times: np.ndarray, units: np.ndarray, dt: float, n_steps: int, n_units: int,
               pool: int = 1) -> torch.Tensor:
    """Count events into a dense ``(n_steps, n_units // pool)`` tensor.

    The event at time ``t`` goes to bin ``floor(t / dt)``; events at or after ``n_steps * dt``
    are dropped. Channels are pooled by summing ``pool`` adjacent units (700 -> 140 with 5).

    Examples
    --------
    >>> import numpy as np
    >>> bin_events(np.array([0.0, 0.011, 0.012, 0.5]), np.array([0, 3, 3, 1]), 0.01, 3, 4).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]
    """
    times = np.asarray(times, dtype=np.float64)
    units = np.asarray(units, dtype=np.int64)
    steps = np.floor(times / dt + 1e-9).astype(np.int64)
    keep = (steps >= 0) & (steps < n_steps) & (units >= 0) & (units < n_units)
    steps, ch = steps[keep], units[keep] // pool
    n_ch = n_units // pool
    out = np.zeros((n_steps, n_ch), dtype=np.float32)
    np.add.at(out, (steps, ch), 1.0)
    return torch.from_numpy(out)


def stratified_split(labels: Sequence[int], fractions: Sequence[float], seed: int) -> List[np.ndarray]:
    """Split indices per class into parts of the given fractions (fixed ``seed``).

    Examples
    --------
    >>> parts = stratified_split([0] * 10 + [1] * 10, (0.7, 0.1, 0.2), seed=0)
    >>> [len(p) for p in parts]
    [14, 2, 4]
    """
    labels = np.asarray(labels)
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions: expected fractions summing to 1, got {list(fractions)}")
    rng = np.random.RandomState(seed)
    parts: List[list] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        bounds = np.round(np.cumsum([0.0] + list(fractions)) * len(idx)).astype(int)
        for k in range(len(fractions)):
            parts[k].extend(idx[bounds[k]:bounds[k + 1]].tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                **kwargs) -> DataLoader:
    """A standard :class:`torch.utils.data.DataLoader` yielding ``(T, B, F)`` batches.

    Examples
    --------
    >>> import torch
    >>> ds = TensorSequenceDataset(torch.zeros(5, 7, 3), torch.zeros(5), 2)
    >>> x, y = next(iter(make_loader(ds, batch_size=4)))
    >>> x.shape
    torch.Size([7, 4, 3])
    """
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g,
                      collate_fn=time_first_collate, **kwargs)


def check_folder(name: str, path: PathLike, what: str, where: str) -> Path:
    """Return ``Path(path)`` if it exists, else raise ``FileNotFoundError`` saying where to get
    the data."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name}: expected a path (str or pathlib.Path), got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{name}: {what} not found at '{p}'. {where}")
    return p


def n_steps_for(duration: float, dt: float) -> int:
    return int(math.ceil(duration / dt - 1e-9))
