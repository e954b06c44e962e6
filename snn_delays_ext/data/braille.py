"""Tactile Braille reading (Müller-Cleve et al. 2022), spike-encoded, 27 classes."""

from __future__ import annotations

import pickle
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice
from ._common import PathLike, bin_events, check_folder, n_steps_for, stratified_split

__all__ = ["Braille", "BRAILLE_CLASSES"]

#: Class order: Space, then A-Z.
BRAILLE_CLASSES = ("Space",) + tuple(chr(ord("A") + i) for i in range(26))
_FILE = "data_braille_letters_th10.pkl"
_WHERE = ("Get 'data_braille_letters_th10.pkl' from Zenodo record 6556273 "
          "(https://zenodo.org/records/6556273, Müller-Cleve et al. 2022) and point `root` at its folder.")


class Braille(Dataset):
    """Spike-encoded tactile Braille letters: 12 taxels x (ON, OFF) = 24 input channels.

    Reads ``data_braille_letters_th10.pkl`` (a list of ``{"letter", "events"}`` dicts, events
    as 12 taxels x [ON, OFF] lists of spike times in seconds, <= 1.3 s) from ``root`` and splits
    it per class 70/10/20 (train/validation/test) with a fixed ``split_seed``.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder holding the pickle (or the pickle itself).
    split : {"train", "val", "test"}
    dt : float
        Bin width in seconds (default 0.01).
    duration : float
        Seconds kept (default 1.31, so that a spike at 1.3 s is kept with 10 ms bins).
    split_seed : int
        Seed of the stratified split.

    Examples
    --------
    >>> Braille.n_features, Braille.n_classes
    (24, 27)
    """

    n_features = 24
    n_classes = 27

    def __init__(self, root: PathLike, split: str = "train", dt: float = 0.01,
                 duration: float = 1.31, split_seed: int = 0) -> None:
        p = check_folder("root", root, "Braille data folder", _WHERE)
        path = p / _FILE if p.is_dir() else p
        if not path.is_file():
            raise FileNotFoundError(f"root: '{_FILE}' not found in '{p}'. {_WHERE}")
        self.split = check_choice("split", split, ("train", "val", "test"))
        if not float(dt) > 0:
            raise ValueError(f"dt: expected a positive bin width in seconds, got {dt}")
        self.dt, self.duration = float(dt), float(duration)
        self.n_steps = n_steps_for(self.duration, self.dt)
        with open(path, "rb") as f:
            records = pickle.load(f)
        labels = np.array([BRAILLE_CLASSES.index(r["letter"]) for r in records], dtype=np.int64)
        idx = stratified_split(labels, (0.7, 0.1, 0.2), split_seed)[("train", "val", "test").index(split)]
        self.indices = idx  # positions in the pickle
        self.labels = labels[idx]
        xs = []
        for i in idx:
            times, units = [], []
            for taxel, pair in enumerate(records[i]["events"]):
                for pol, spikes in enumerate(pair):
                    times.extend(spikes)
                    units.extend([2 * taxel + pol] * len(spikes))
            xs.append(bin_events(np.array(times), np.array(units), self.dt, self.n_steps, 24))
        self.x = torch.stack(xs) if xs else torch.zeros(0, self.n_steps, 24)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        return self.x[i], int(self.labels[i])
