"""Datasets for training delay networks; every loader yields time-first ``(T, B, F)`` batches.

- :class:`SHD`, :class:`SSC`: Heidelberg spiking data sets from a user folder (h5 files, read
  directly; tonic downloads them only if asked and absent).
- :class:`Braille`: tactile Braille letters (Zenodo 6556273).
- :class:`YinYang`: the Yin-Yang data set (published generator and seeds, or the arrays).
- :class:`PermutedSequentialMNIST`: from the MNIST IDX files.
- :class:`SequenceDetection`: a generated two-neuron order task (no download).

Augment training batches with :func:`random_time_shift`, :func:`random_channel_shift`,
:func:`random_time_stretch`, :func:`random_drop_event` and :func:`random_blend`. Batch them with :func:`make_loader` (a :class:`torch.utils.data.DataLoader` with
:func:`time_first_collate`).
"""

from ._common import TensorSequenceDataset, bin_events, make_loader, stratified_split, time_first_collate
from .augment import random_blend, random_channel_shift, random_drop_event, random_time_shift, random_time_stretch
from .braille import BRAILLE_CLASSES, Braille
from .heidelberg import SHD, SSC, read_heidelberg_h5
from .psmnist import PermutedSequentialMNIST, read_idx
from .sequence import SequenceDetection
from .yin_yang import YIN_YANG_SEEDS, YinYang, yin_yang_points

__all__ = [
    "BRAILLE_CLASSES",
    "Braille",
    "PermutedSequentialMNIST",
    "SHD",
    "SSC",
    "SequenceDetection",
    "TensorSequenceDataset",
    "YIN_YANG_SEEDS",
    "YinYang",
    "bin_events",
    "make_loader",
    "read_heidelberg_h5",
    "random_blend",
    "random_channel_shift",
    "random_drop_event",
    "random_time_shift",
    "random_time_stretch",
    "read_idx",
    "stratified_split",
    "time_first_collate",
    "yin_yang_points",
]
