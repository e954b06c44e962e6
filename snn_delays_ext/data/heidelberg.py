"""SHD and SSC (Heidelberg spiking data sets) from a user's folder, binned time-first."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .._checks import check_choice, check_int
from ._common import PathLike, bin_events, n_steps_for

__all__ = ["SHD", "SSC", "HeidelbergDataset", "read_heidelberg_h5"]

_WHERE = (
    "Download the h5 files from https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/ "
    "(or let tonic fetch them: `tonic.datasets.{cls}(save_to=FOLDER)`, or pass download=True here) "
    "and point `root` at the folder holding {files}."
)


def read_heidelberg_h5(path: PathLike) -> Tuple[list, list, np.ndarray]:
    """Read an SHD/SSC h5 file in the published layout.

    The file holds ``spikes/times`` (ragged float arrays, seconds), ``spikes/units`` (ragged
    int arrays, channel 0..699) and ``labels``.

    Returns
    -------
    (list of numpy.ndarray, list of numpy.ndarray, numpy.ndarray)
        Spike times, spike units and labels per sample.
    """
    import h5py  # optional dependency (extra "tonic")

    with h5py.File(str(path), "r") as f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if key not in f:
                raise ValueError(f"path: '{path}' has no '{key}' entry; expected the SHD/SSC h5 layout "
                                 "(spikes/times, spikes/units, labels)")
        times = [np.asarray(t, dtype=np.float64) for t in f["spikes/times"][:]]
        units = [np.asarray(u, dtype=np.int64) for u in f["spikes/units"][:]]
        labels = np.asarray(f["labels"][:], dtype=np.int64)
    if not (len(times) == len(units) == len(labels)):
        raise ValueError(f"path: '{path}' has {len(times)} spike-time arrays, {len(units)} unit arrays "
                         f"and {len(labels)} labels; expected equal counts")
    return times, units, labels


class HeidelbergDataset(Dataset):
    """Base class of :class:`SHD` and :class:`SSC` (see there)."""

    name = ""
    splits: Tuple[str, ...] = ()
    n_classes = 0
    n_units = 700
    default_duration = 1.0

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        dt: Optional[float] = 0.01,
        n_steps: Optional[int] = None,
        duration: Optional[float] = None,
        pool: int = 1,
        download: bool = False,
    ) -> None:
        if not isinstance(root, (str, Path)):
            raise TypeError(f"root: expected a folder path (str or pathlib.Path), got {type(root).__name__}")
        self.split = check_choice("split", split, self.splits)
        self.pool = check_int("pool", pool, minimum=1)
        if self.n_units % self.pool:
            raise ValueError(f"pool: expected a divisor of {self.n_units} (e.g. 5 for 700 -> 140), got {pool}")
        self.duration = float(duration) if duration is not None else self.default_duration
        if not self.duration > 0:
            raise ValueError(f"duration: expected a positive number of seconds, got {duration}")
        if n_steps is not None:
            self.n_steps = check_int("n_steps", n_steps, minimum=1)
            self.dt = self.duration / self.n_steps
        else:
            if dt is None or not float(dt) > 0:
                raise ValueError(f"dt: expected a positive bin width in seconds (or give n_steps), got {dt}")
            self.dt = float(dt)
            self.n_steps = n_steps_for(self.duration, self.dt)
        self.path = self._locate(Path(root).expanduser(), download)
        self.times, self.units, self.labels = read_heidelberg_h5(self.path)
        self.n_features = self.n_units // self.pool

    @classmethod
    def filename(cls, split: str) -> str:
        return f"{cls.name.lower()}_{split}.h5"

    def _locate(self, root: Path, download: bool) -> Path:
        fname = self.filename(self.split)
        candidates = [root / fname, root / self.name / fname, root / self.name.lower() / fname]
        for c in candidates:
            if c.is_file():
                return c  # present: never download
        for c in candidates:
            gz = c.with_name(c.name + ".gz")
            if gz.is_file():  # the official release is gzipped: unpack once beside it
                return _gunzip_once(gz, c)
        if download:
            import tonic  # downloads into root/<NAME>/ (tonic's layout and cache)

            cls = getattr(tonic.datasets, self.name)
            kw = {"train": self.split == "train"} if self.name == "SHD" else {"split": self.split}
            cls(save_to=str(root), **kw)
            if candidates[1].is_file():
                return candidates[1]
        files = ", ".join(self.filename(s) for s in self.splits)
        raise FileNotFoundError(
            f"root: {self.name} file '{fname}' not found in '{root}' (nor in '{root / self.name}'). "
            + _WHERE.format(cls=self.name, files=files)
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        x = bin_events(self.times[i], self.units[i], self.dt, self.n_steps, self.n_units, self.pool)
        return x, int(self.labels[i])


class SHD(HeidelbergDataset):
    """Spiking Heidelberg Digits (Cramer et al. 2020): 700 channels, 20 classes.

    Reads ``shd_{train,test}.h5`` from ``root`` (or ``root/SHD/``, tonic's layout; a ``.h5.gz``
    is unpacked beside itself, or into ``~/.cache/snn_delays_ext`` where its folder is
    read-only). No download is attempted when the files are present; with
    ``download=True`` and the files absent, ``tonic.datasets.SHD`` fetches them.

    Each sample is a dense ``(n_steps, 700 // pool)`` count tensor: bins of ``dt`` seconds over
    ``duration`` (default 1 s, i.e. 100 steps of 10 ms), or ``n_steps`` equal bins; events after
    ``duration`` are dropped. ``pool=5`` sums adjacent channels (700 -> 140).

    Parameters
    ----------
    root : str or pathlib.Path
        Folder with the h5 files.
    split : {"train", "test"}
    dt : float, optional
        Bin width in seconds (default 0.01).
    n_steps : int, optional
        Number of bins over ``duration`` (overrides ``dt``).
    duration : float, optional
        Seconds kept per sample (default 1.0).
    pool : int
        Channels summed per output feature.
    download : bool
        Let tonic download the files if they are missing.

    Examples
    --------
    >>> try:
    ...     SHD("/nonexistent/folder")
    ... except FileNotFoundError as e:
    ...     print(str(e)[:45])
    root: SHD file 'shd_train.h5' not found in '/
    """

    name = "SHD"
    splits = ("train", "test")
    n_classes = 20


class SSC(HeidelbergDataset):
    """Spiking Speech Commands (Cramer et al. 2020): 700 channels, 35 classes.

    As :class:`SHD`, with splits ``"train"``, ``"valid"`` and ``"test"``
    (``ssc_{split}.h5``). DelRec uses 250 steps (``n_steps=250``) and ``pool=5``.

    Examples
    --------
    >>> SSC.filename("valid")
    'ssc_valid.h5'
    """

    name = "SSC"
    splits = ("train", "valid", "test")
    n_classes = 35


def _gunzip_once(gz: Path, target: Path) -> Path:
    """Unpack ``gz`` to ``target`` atomically and return the unpacked file's path.

    The data is written to a temporary file and renamed into place, so two runs started together
    never read a half-written file. When ``target``'s folder is read-only the file is unpacked
    into ``$XDG_CACHE_HOME/snn_delays_ext`` (default ``~/.cache/snn_delays_ext``) instead.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snn_delays_ext"
    for dest in (target, cache / f"{gz.stat().st_size}-{target.name}"):
        if dest.is_file():
            return dest
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        except OSError:
            continue  # not writable: try the cache
        try:
            with gzip.open(gz, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return dest
    raise OSError(f"root: cannot unpack '{gz}': neither its folder nor '{cache}' is writable")
