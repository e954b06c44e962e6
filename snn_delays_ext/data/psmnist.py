"""Permuted sequential MNIST from the IDX files: 784 steps of one pixel."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_int
from ._common import PathLike, check_folder

__all__ = ["PermutedSequentialMNIST", "read_idx"]

_WHERE = ("Download the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) from "
          "https://yann.lecun.com/exdb/mnist/ (or any mirror, e.g. via torchvision) and point "
          "`root` at their folder.")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or plain) into a numpy array of its dtype and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"path: '{path}' is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"path: '{path}' has unknown IDX type code {data[2]:#x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"path: '{path}' holds {arr.size} values, header says shape {shape}")
    return arr.reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for cand in (root / (stem + ".gz"), root / stem, root / "MNIST" / "raw" / (stem + ".gz"),
                 root / "MNIST" / "raw" / stem):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"root: MNIST file '{stem}(.gz)' not found in '{root}'. {_WHERE}")


class PermutedSequentialMNIST(Dataset):
    """Permuted sequential MNIST: each image is 784 steps of one pixel intensity in ``[0, 1]``,
    in a fixed random order (the same permutation for every image).

    Parameters
    ----------
    root : str or pathlib.Path
        Folder with the IDX files (plain or ``.gz``; also ``root/MNIST/raw``).
    split : {"train", "val", "test"}
        ``"train"`` is the first ``60000 - n_val`` training images, ``"val"`` the last ``n_val``.
    n_val : int
        Validation images held out of the training file (default 5000).
    permutation_seed : int
        Seed of the pixel permutation (``numpy.random.RandomState(seed).permutation(784)``);
        ``None`` keeps raster order (sequential MNIST).
    limit : int, optional
        Keep only the first ``limit`` images (quick runs).

    Examples
    --------
    >>> PermutedSequentialMNIST.n_features, PermutedSequentialMNIST.n_steps
    (1, 784)
    """

    n_features = 1
    n_steps = 784
    n_classes = 10

    def __init__(self, root: PathLike, split: str = "train", n_val: int = 5000,
                 permutation_seed: Optional[int] = 0, limit: Optional[int] = None) -> None:
        p = check_folder("root", root, "MNIST folder", _WHERE)
        self.split = check_choice("split", split, ("train", "val", "test"))
        n_val = check_int("n_val", n_val, minimum=0)
        img_stem, lab_stem = _FILES["test" if split == "test" else "train"]
        images, labels = read_idx(_find(p, img_stem)), read_idx(_find(p, lab_stem))
        if split == "train":
            images, labels = images[: len(images) - n_val], labels[: len(labels) - n_val]
        elif split == "val":
            images, labels = images[len(images) - n_val:], labels[len(labels) - n_val:]
        if limit is not None:
            limit = check_int("limit", limit, minimum=1)
            images, labels = images[:limit], labels[:limit]
        self.permutation = (np.arange(784) if permutation_seed is None
                            else np.random.RandomState(permutation_seed).permutation(784))
        self.images = torch.from_numpy(np.array(images.reshape(len(images), 784), copy=True))
        self.labels = labels.astype(np.int64)
        self._perm = torch.from_numpy(self.permutation)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        x = self.images[i][self._perm].float().div_(255.0).unsqueeze(1)
        return x, int(self.labels[i])
