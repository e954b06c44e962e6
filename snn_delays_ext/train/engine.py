"""The training engine: data, model, optimiser with separate delay learning rate, width
schedule, per-epoch checkpoints with exact resume, validation-based model selection,
DistributedDataParallel, and the final test with delays before and after rounding."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import random
import time
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Subset

from ..data import (SHD, SSC, Braille, PermutedSequentialMNIST, SequenceDetection, YinYang, random_blend,
                    random_channel_shift, random_time_shift, stratified_split, time_first_collate)
from ..schedule import SigmaScheduler
from ..utils import clamp_delays_, delay_layers, delay_parameters, quantize_delays, set_sigma, weight_parameters
from .config import TrainConfig
from .models import build_model
from .schedules import EpochSchedules

__all__ = ["train", "make_datasets", "evaluate", "CHECKPOINT", "METRICS"]

CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
METRICS = "metrics.csv"
_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "sigma", "lr", "delay_lr", "epoch_time_s"]

_DATA_HELP = {
    "braille": "the folder with data_braille_letters_th10.pkl (Zenodo 6556273)",
    "psmnist": "the folder with the MNIST IDX files (train-images-idx3-ubyte.gz, ...)",
    "shd": "the folder with shd_train.h5 / shd_test.h5 (https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/)",
    "ssc": "the folder with ssc_train.h5 / ssc_valid.h5 / ssc_test.h5 (https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/)",
}
_ENV_SUBDIR = {"braille": "braille", "psmnist": "mnist", "shd": "shd", "ssc": "ssc", "yinyang": "yin_yang"}


# -- data --------------------------------------------------------------------------------------
def _data_dir(cfg: TrainConfig) -> Optional[Path]:
    d = cfg.data
    if d.data_dir is not None:
        return Path(d.data_dir).expanduser()
    env = os.environ.get("SNN_DELAYS_DATA")
    if env and d.dataset in _ENV_SUBDIR and (Path(env) / _ENV_SUBDIR[d.dataset]).is_dir():
        return Path(env) / _ENV_SUBDIR[d.dataset]
    if d.dataset in _DATA_HELP:
        raise ValueError(f"data.data_dir: dataset {d.dataset!r} needs --data-dir (or data.data_dir in the config, "
                         f"or $SNN_DELAYS_DATA/{_ENV_SUBDIR[d.dataset]}): {_DATA_HELP[d.dataset]}")
    return None


def _limit(ds: Dataset, n: Optional[int], seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    idx = np.random.RandomState(seed).permutation(len(ds))[:n]
    return Subset(ds, np.sort(idx).tolist())


def make_datasets(cfg: TrainConfig) -> Tuple[Dataset, Dataset, Dataset, int, int]:
    """Train, validation and test sets of ``cfg.data.dataset``, with input size and class count.

    Validation never comes from the test set: SHD holds out 10% of its training file
    (stratified, fixed seed), PS-MNIST the last 5000 training images (``data.val_fraction``
    changes both). With ``augment.repeat = k`` the training set is the training samples ``k``
    times over (each pass augmented afresh).
    """
    c = cfg.data
    d = c.dataset
    root = _data_dir(cfg)
    if d == "sequence":
        kw = dict(gap=c.gap, n_steps=c.n_steps or 4 * c.gap, max_lag=max(c.gap, cfg.model.max_delay))
        kw["n_steps"] = max(kw["n_steps"], c.gap + kw["max_lag"] + 1)
        tr, va, te = (SequenceDetection(s, size=n, **kw) for s, n in (("train", 1000), ("val", 200), ("test", 200)))
    elif d == "yinyang":
        kw = dict(n_steps=c.n_steps or 30, n_steps_enc=min(20, c.n_steps or 30))
        tr, va, te = (YinYang(s, root=root, **kw) for s in ("train", "validation", "test"))
    elif d == "braille":
        kw = dict(dt=c.dt or 0.01)
        tr, va, te = (Braille(root, s, **kw) for s in ("train", "val", "test"))
    elif d == "psmnist":
        n_val = 5000 if c.val_fraction is None else int(round(60000 * c.val_fraction))
        tr, va, te = (PermutedSequentialMNIST(root, s, n_val=n_val) for s in ("train", "val", "test"))
    elif d == "shd":
        kw = dict(dt=c.dt or 0.01, n_steps=c.n_steps, pool=c.pool, duration=c.duration)
        full, te = SHD(root, "train", **kw), SHD(root, "test", **kw)
        f = 0.1 if c.val_fraction is None else c.val_fraction
        tr_idx, va_idx = stratified_split(full.labels, (1.0 - f, f), seed=0)
        tr, va = Subset(full, tr_idx.tolist()), Subset(full, va_idx.tolist())
        tr.n_classes = va.n_classes = full.n_classes  # type: ignore[attr-defined]
    elif d == "ssc":
        kw = dict(dt=c.dt or 0.004, n_steps=c.n_steps, pool=c.pool, duration=c.duration)
        tr, va, te = (SSC(root, s, **kw) for s in ("train", "valid", "test"))
    else:  # pragma: no cover - validated before
        raise ValueError(f"dataset: unknown {d!r}")
    n_in = int(te.n_features)  # type: ignore[attr-defined]
    n_classes = int(te.n_classes)  # type: ignore[attr-defined]
    seed = cfg.run.seed
    tr = _limit(tr, c.train_limit, seed)
    if cfg.augment.repeat > 1:
        tr = ConcatDataset([tr] * cfg.augment.repeat)
    va, te = _limit(va, c.eval_limit, seed + 1), _limit(te, c.eval_limit, seed + 2)
    return tr, va, te, n_in, n_classes


# -- distributed -------------------------------------------------------------------------------
def _dist_info() -> Tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # under torchrun (it sets RANK and MASTER_ADDR), even with one process: the same code path
    # as several (DistributedDataParallel, NCCL on GPU), which a one-GPU machine can then test
    launched = "RANK" in os.environ and "MASTER_ADDR" in os.environ
    if (world > 1 or launched) and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    name = cfg.run.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"run.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg.run.device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"run.device: {cfg.run.device!r} requested but CUDA is not available; use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


def _all_sum(values: List[float], device: torch.device) -> List[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


# -- evaluation --------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (sharded over processes
    under DistributedDataParallel, results summed over all of them)."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    shard = Subset(dataset, list(range(rank, len(dataset), world)))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=time_first_collate)
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0.0, 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(1) == y).sum())
        n += len(y)
    model.train(was_training)
    loss_sum, correct, n = _all_sum([loss_sum, correct, n], device)
    return loss_sum / max(n, 1), correct / max(n, 1)


# -- checkpoints -------------------------------------------------------------------------------
def _rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_rng_state(s: Dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _delay_snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {n: m.effective_delays().cpu() for n, m in model.named_modules() if m in set(delay_layers(model))}


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<dataset>-<model>-<time>``."""
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- training ----------------------------------------------------------------------------------
def _width_parameters(model: nn.Module) -> List[nn.Parameter]:
    """The learnable triangle widths (``width_logit``, DelRec's ``p_spread``) of the delay layers."""
    return [p for m in delay_layers(model) for n, p in m.named_parameters(recurse=False)
            if n == "width_logit" and p.requires_grad]


def _param_groups(model: nn.Module, cfg: TrainConfig) -> List[Dict[str, Any]]:
    """Optimiser groups: the weights (every non-delay parameter: weights, biases, learnable
    decays; ``optim.lr``, ``optim.weight_decay``) and the delays with the learnable triangle
    widths (``optim.delay_lr``, no weight decay, as DelRec's ``p_spread``); an empty group is
    left out."""
    o = cfg.optim
    delays = list(delay_parameters(model))
    ids = {id(p) for p in delays}
    delays += [p for p in _width_parameters(model) if id(p) not in ids]
    ids = {id(p) for p in delays}
    weights = [p for p in weight_parameters(model) if id(p) not in ids]
    groups = [{"params": weights, "lr": o.lr, "weight_decay": o.weight_decay, "name": "weights"}]
    if delays:
        groups.append({"params": delays, "lr": o.delay_lr, "weight_decay": 0.0, "name": "delays"})
    return groups


def _lr_schedules(opt: torch.optim.Optimizer, cfg: TrainConfig) -> Optional[EpochSchedules]:
    """The per-epoch schedules of the groups (``optim.lr_schedule``, ``optim.delay_lr_schedule``);
    ``None`` when every group keeps its rate."""
    o = cfg.optim
    kinds = {"weights": o.lr_schedule,
             "delays": o.lr_schedule if o.delay_lr_schedule == "same" else o.delay_lr_schedule}
    kinds = {g["name"]: kinds[g["name"]] for g in opt.param_groups}
    if all(k == "none" for k in kinds.values()):
        return None
    return EpochSchedules(opt, kinds, o.epochs)


@torch.no_grad()
def _round_delays_(model: nn.Module) -> None:
    """Round every delay to whole steps in place, keeping each layer's width (DelRec rounds at
    each validation and trains on from the rounded delays)."""
    for m in delay_layers(model):
        sigma = m.sigma  # type: ignore[attr-defined]
        m.quantize_delays()  # type: ignore[attr-defined]
        m.sigma = sigma  # type: ignore[attr-defined]


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` or ``AdamW`` (``optim.optimizer``) over :func:`_param_groups`."""
    cls = torch.optim.AdamW if cfg.optim.optimizer == "adamw" else torch.optim.Adam
    return cls(_param_groups(model, cfg))


def train(cfg: TrainConfig, run_dir: Optional[os.PathLike] = None, resume: bool = False,
          on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]] = None,
          verbose: bool = True) -> Dict[str, Any]:
    """Train ``cfg`` and return the results (also written to ``RUN_DIR/results.json``).

    Writes ``config.json``, ``metrics.csv`` (one row per epoch), ``checkpoint.pt`` (after every
    epoch: model, optimiser, schedulers, RNG states, history, best model so far),
    ``delays_init.pt``, ``model_best.pt`` (the selected model's state dict, config and input
    and class counts: :func:`~snn_delays_ext.train.load_run_model` rebuilds it),
    ``raster.pt`` (one test sample's spikes) and
    TensorBoard events if ``tensorboard`` is installed. With ``resume=True`` it continues from
    ``checkpoint.pt`` and ends with the same weights as an uninterrupted run.

    The model is selected on the validation set (best validation accuracy, earliest on ties),
    or with ``optim.selection="last"`` it is the final epoch's; ``optim.train_on_val=True``
    (which needs ``selection="last"``) trains on the training and validation samples together
    and validates nothing (``NaN`` in the CSV, ``None`` in the results). The test set is used
    once at the end, with the learned delays and with them rounded to integers
    (:func:`snn_delays_ext.quantize_delays` on a copy).

    A model with an ``on_train_epoch_end()`` method has it called after each epoch's training
    batches, before validation and the checkpoint (EventProp models bump silent neurons there).
    With ``optim.round_delays`` the delays are then rounded to whole steps in place (DelRec's
    training); with ``optim.patience = N`` the run stops after ``N`` epochs without a better
    validation accuracy. The learning rates follow ``optim.lr_schedule`` (weights) and
    ``optim.delay_lr_schedule`` (delays and learnable widths), stepped once per epoch.

    Under ``torchrun`` (one process too) the model is wrapped in
    :class:`torch.nn.parallel.DistributedDataParallel` (NCCL on GPU, gloo on CPU);
    ``batch_size`` is the global batch, split evenly over the processes, and only rank 0
    writes files.

    With ``run.flush_denormal`` (the default) denormal floats are flushed to zero during the run
    (:func:`torch.set_flush_denormal`, CPUs with SSE3; switched back off at the end): learned
    membrane decays near 0 make the surrogate-gradient backward multiply gradients by ``beta``
    step after step into the denormal range, where x86 CPUs compute up to ~100x slower (a
    Braille epoch went from 20 s to 170 s over 20 epochs). Flushing changes values below
    1.2e-38 only.
    """
    cfg = copy.deepcopy(cfg).validate()
    flushed = bool(cfg.run.flush_denormal) and torch.set_flush_denormal(True)
    try:
        return _train_run(cfg, run_dir, resume, on_epoch_end, verbose)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


@dataclass
class _Run:
    """What a training run holds once set up."""

    cfg: TrainConfig
    run_dir: Path
    rank: int
    world: int
    device: torch.device
    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    opt: torch.optim.Optimizer
    lr_sched: Optional[EpochSchedules]
    sigma_sched: Optional[SigmaScheduler]
    loader: DataLoader
    sampler: DistributedSampler
    train_ds: Dataset
    val_ds: Optional[Dataset]
    test_ds: Dataset
    n_in: int
    n_classes: int
    resume: bool  # a checkpoint is there to resume from

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def has_delays(self) -> bool:
        return bool(delay_layers(self.model))


def _setup(cfg: TrainConfig, run_dir: Optional[os.PathLike], resume: bool) -> _Run:
    """Processes, device, run folder, seeds, data, model, optimiser and schedulers."""
    rank, world, local_rank = _dist_info()
    device = _device(cfg, local_rank)
    o = cfg.optim
    if o.batch_size % world:
        raise ValueError(f"optim.batch_size: expected a multiple of the number of processes ({world}), "
                         f"got {o.batch_size}")
    run_dir = Path(run_dir) if run_dir is not None else (Path(cfg.run.out) if cfg.run.out else default_run_dir(cfg))
    if resume and not any((run_dir / name).is_file() for name in (CHECKPOINT, PREVIOUS_CHECKPOINT)):
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"resume: no '{CHECKPOINT}' in '{run_dir}' to resume from")
        # the run stopped before its first checkpoint: nothing is lost by starting it again
        warnings.warn(f"resume: '{run_dir}' has no checkpoint yet (the run stopped in its first epoch); "
                      "starting it again from epoch 1", UserWarning, stacklevel=3)
        resume = False
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    torch.manual_seed(cfg.run.seed)
    np.random.seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    train_ds, val_ds, test_ds, n_in, n_classes = make_datasets(cfg)
    if o.train_on_val:  # the validation samples become training samples; nothing is validated
        train_ds, val_ds = ConcatDataset([train_ds, val_ds]), None
    model = build_model(cfg.model.name, n_in, n_classes, cfg).to(device)
    has_delays = bool(delay_layers(model))
    if rank == 0 and not resume:
        torch.save(_delay_snapshot(model), run_dir / "delays_init.pt")
    opt = _optimizer(model, cfg)
    lr_sched = _lr_schedules(opt, cfg)
    # the width schedule spreads delays that learn; a network whose delays are all fixed (the
    # rec-nodelay control: every lag 1) keeps sigma 0, so it is RLeaky throughout training
    learns = any(m.delays.requires_grad for m in delay_layers(model))
    sigma_sched = SigmaScheduler(model, o.epochs, o.sigma0, o.sigma_decay) \
        if has_delays and learns and o.sigma0 > 0 else None
    if has_delays and sigma_sched is None:
        set_sigma(model, 0.0)

    net: nn.Module = model
    if world > 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        # per-process batch statistics would make N processes differ from one on the same global batch
        if device.type != "cuda":
            raise ValueError("surrogate.batch_norm: under torchrun the batch statistics must be synchronised "
                             "(torch.nn.SyncBatchNorm), which needs CUDA devices; got device "
                             f"{device.type!r}. Train on one process or on GPUs")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if dist.is_initialized():  # under torchrun, one process too
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.run.seed)
    loader = DataLoader(train_ds, batch_size=o.batch_size // world, sampler=sampler,
                        collate_fn=time_first_collate, num_workers=cfg.run.num_workers)
    return _Run(cfg, run_dir, rank, world, device, model, net, opt, lr_sched, sigma_sched, loader, sampler,
                train_ds, val_ds, test_ds, n_in, n_classes, resume)


#: The model selected so far, before the first epoch
_NO_BEST: Dict[str, Any] = {"val_acc": -1.0, "epoch": -1, "state": None}


class Checkpointer:
    """The run's ``checkpoint.pt``: after every epoch everything a resumed run needs to end with
    the weights of an uninterrupted one (model, optimiser, schedulers, RNG states, history, the
    model selected so far). Written atomically (a temporary file, then a rename), and the
    previous generation is kept as ``checkpoint.prev.pt``: a checkpoint that cannot be read
    (truncated, empty, overwritten) is reported with its file name and the run resumes from the
    previous one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = path.with_name(PREVIOUS_CHECKPOINT)

    def save(self, run: _Run, epoch: int, history: List[Dict[str, float]], best: Dict[str, Any]) -> None:
        state = {
            "epoch": epoch, "config": run.cfg.to_dict(), "model": run.model.state_dict(),
            "optimizer": run.opt.state_dict(),
            "lr_scheduler": run.lr_sched.state_dict() if run.lr_sched is not None else None,
            "sigma_scheduler": run.sigma_sched.state_dict() if run.sigma_sched is not None else None,
            "history": history, "best": best, "rng": _rng_state(), "world_size": run.world,
        }
        if self.path.is_file():
            os.replace(self.path, self.previous)  # the last good generation stays until the new one is in
        _atomic_save(state, self.path)

    def _read(self, path: Path, device: torch.device) -> Dict[str, Any]:
        try:
            ck = torch.load(path, map_location=device, weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable file: say which, and why
            raise ValueError(f"resume: cannot read the checkpoint '{path}' ({type(e).__name__}: {e})") from e
        missing = [k for k in ("epoch", "model", "optimizer", "history", "best", "rng") if not
                   (isinstance(ck, dict) and k in ck)]
        if missing:
            raise ValueError(f"resume: the checkpoint '{path}' is not a training checkpoint (missing {missing})")
        return ck

    def load(self, run: _Run) -> Tuple[int, List[Dict[str, float]], Dict[str, Any]]:
        """Restore ``run`` from the newest readable checkpoint; returns ``(epochs done, history,
        best)``."""
        try:
            ck = self._read(self.path, run.device)
        except (ValueError, FileNotFoundError) as e:
            if not self.previous.is_file():
                raise
            warnings.warn(f"{e}; resuming from the previous checkpoint '{self.previous}'", UserWarning,
                          stacklevel=2)
            ck = self._read(self.previous, run.device)
        run.model.load_state_dict(ck["model"])
        run.opt.load_state_dict(ck["optimizer"])
        if run.lr_sched is not None:
            run.lr_sched.load_state_dict(ck["lr_scheduler"])
        if run.sigma_sched is not None:
            run.sigma_sched.load_state_dict(ck["sigma_scheduler"])
        _set_rng_state(ck["rng"])
        return ck["epoch"], ck["history"], ck["best"]


class MetricsLogger:
    """One row per epoch in ``metrics.csv`` (and TensorBoard where installed); only the main
    process writes. A resumed run rewrites the CSV from the checkpoint's history first, so a
    kill between a row and its checkpoint leaves no duplicate row."""

    def __init__(self, run: _Run, history: Optional[List[Dict[str, float]]] = None) -> None:
        self.path = run.run_dir / METRICS
        self.active = run.is_main
        self.writer = None
        if not self.active:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(_FIELDS)
            for row in history or []:
                w.writerow([row[k] for k in _FIELDS])
        os.replace(tmp, self.path)
        if run.cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run.run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self.writer = None

    def log(self, row: Dict[str, float]) -> None:
        if not self.active:
            return
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in _FIELDS])
        if self.writer is not None:
            for k in _FIELDS[1:]:
                self.writer.add_scalar(k, row[k], int(row["epoch"]))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train_epoch(run: _Run, epoch: int) -> Tuple[float, float]:
    """One epoch of training batches (augmented, delays clamped after each step); returns the
    mean loss and the accuracy over every process's samples."""
    cfg = run.cfg
    run.sampler.set_epoch(epoch)
    run.net.train()
    it: Any = run.loader
    if run.is_main and cfg.run.progress:
        try:
            from tqdm.auto import tqdm

            it = tqdm(run.loader, desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", leave=False, dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            pass
    loss_sum, correct, n = 0.0, 0.0, 0.0
    a = cfg.augment
    for x, y in it:
        x = random_channel_shift(random_time_shift(random_blend(x, y, a.blend), a.time_shift), a.channel_shift)
        x, y = x.to(run.device), y.to(run.device)
        logits = run.net(x)
        loss = nn.functional.cross_entropy(logits, y)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        clamp_delays_(run.model)
        loss_sum += float(loss.detach()) * len(y)
        correct += float((logits.detach().argmax(1) == y).sum())
        n += len(y)
        if hasattr(it, "set_postfix"):
            it.set_postfix(loss=f"{float(loss.detach()):.3f}")
    loss_sum, correct, n = _all_sum([loss_sum, correct, n], run.device)
    epoch_hook = getattr(run.model, "on_train_epoch_end", None)  # e.g. EventProp's silent-neuron bump
    if callable(epoch_hook):
        epoch_hook()
    return loss_sum / n, correct / n


def _epoch(run: _Run, epoch: int, best: Dict[str, Any]) -> Tuple[Dict[str, float], Dict[str, Any]]:
    """Train one epoch, validate, keep the selected model, step the schedulers; returns the
    metrics row and the selection."""
    t0 = time.perf_counter()
    sigma = float(delay_layers(run.model)[0].sigma) if run.has_delays else 0.0
    train_loss, train_acc = train_epoch(run, epoch)
    if run.cfg.optim.round_delays and run.has_delays:
        _round_delays_(run.model)
    val_loss, val_acc = (evaluate(run.model, run.val_ds, run.cfg.optim.batch_size, run.device)
                         if run.val_ds is not None else (math.nan, math.nan))
    if run.cfg.optim.selection == "last" or val_acc > best["val_acc"]:
        best = {"val_acc": val_acc, "epoch": epoch + 1, "state": copy.deepcopy(run.model.state_dict())}
    lrs = {g["name"]: g["lr"] for g in run.opt.param_groups}
    if run.lr_sched is not None:
        run.lr_sched.step()
    if run.sigma_sched is not None:
        run.sigma_sched.step()
    row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
           "val_acc": val_acc, "sigma": sigma, "lr": lrs["weights"], "delay_lr": lrs.get("delays", 0.0),
           "epoch_time_s": time.perf_counter() - t0}
    return row, best


def _patience_over(cfg: TrainConfig, epochs_done: int, best: Dict[str, Any]) -> bool:
    """Whether ``optim.patience`` epochs have passed since the best validation accuracy."""
    p = cfg.optim.patience
    return p is not None and best["epoch"] > 0 and epochs_done - best["epoch"] >= p


def _train_run(cfg: TrainConfig, run_dir: Optional[os.PathLike], resume: bool,
               on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]],
               verbose: bool) -> Dict[str, Any]:
    """The body of :func:`train` (``cfg`` already validated)."""
    run = _setup(cfg, run_dir, resume)
    ckpt = Checkpointer(run.run_dir / CHECKPOINT)
    start, history, best = 0, [], dict(_NO_BEST)
    if run.resume:
        start, history, best = ckpt.load(run)
        if verbose and run.is_main:
            print(f"resuming {run.run_dir} after epoch {start}")
    log = MetricsLogger(run, history)
    if _patience_over(cfg, start, best):  # a run resumed after it stopped early
        start = cfg.optim.epochs
    for epoch in range(start, cfg.optim.epochs):
        row, best = _epoch(run, epoch, best)
        history.append(row)
        if run.is_main:
            log.log(row)
            ckpt.save(run, epoch + 1, history, best)
            if verbose:
                val = "-" if run.val_ds is None else f"{100 * row['val_acc']:.2f}%"
                print(f"epoch {epoch + 1:3d}/{cfg.optim.epochs}  loss {row['train_loss']:.4f}  train "
                      f"{100 * row['train_acc']:.2f}%  val {val}  sigma {row['sigma']:.2f}  "
                      f"{row['epoch_time_s']:.1f}s", flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
        if _patience_over(cfg, epoch + 1, best):
            if verbose and run.is_main:
                print(f"no better validation accuracy for {cfg.optim.patience} epochs: stopping after epoch "
                      f"{epoch + 1}", flush=True)
            break
    log.close()
    return _finish(run, history, best, verbose)


def _finish(run: _Run, history: List[Dict[str, float]], best: Dict[str, Any], verbose: bool) -> Dict[str, Any]:
    """The selected model (best on validation, or the last epoch's), tested with the learned and
    with rounded delays; writes ``model_best.pt``, ``delays_final.pt``, ``raster.pt`` and
    ``results.json``; returns the results."""
    cfg, model, device = run.cfg, run.model, run.device
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    bs = cfg.optim.batch_size
    test_loss, test_acc = evaluate(model, run.test_ds, bs, device)
    rounded = copy.deepcopy(model)
    if run.has_delays:
        quantize_delays(rounded)
    test_loss_r, test_acc_r = evaluate(rounded, run.test_ds, bs, device)
    val_acc_r = evaluate(rounded, run.val_ds, bs, device)[1] if run.val_ds is not None else None
    times = [h["epoch_time_s"] for h in history]
    results = {
        "dataset": cfg.data.dataset, "model": cfg.model.name, "epochs": cfg.optim.epochs,
        "selection": cfg.optim.selection, "best_epoch": best["epoch"], "epochs_run": len(history),
        "best_val_acc": best["val_acc"] if run.val_ds is not None else None,
        "val_acc_rounded": val_acc_r, "train_on_val": cfg.optim.train_on_val,
        "test_acc": test_acc, "test_acc_rounded": test_acc_r, "test_loss": test_loss,
        "test_loss_rounded": test_loss_r, "mean_epoch_time_s": float(np.mean(times)) if times else 0.0,
        "n_parameters": sum(p.numel() for p in model.parameters()), "world_size": run.world,
        "distributed_backend": dist.get_backend() if dist.is_initialized() else None,
        "n_train": len(run.train_ds), "n_val": len(run.val_ds) if run.val_ds is not None else 0,
        "n_test": len(run.test_ds), "n_inputs": run.n_in, "n_classes": run.n_classes,
    }
    if not run.is_main:
        return results
    run_dir = run.run_dir
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "n_inputs": run.n_in,
                "n_classes": run.n_classes}, run_dir / "model_best.pt")
    torch.save(_delay_snapshot(model), run_dir / "delays_final.pt")
    with torch.no_grad():
        x, y = time_first_collate([run.test_ds[0]])
        model.eval()
        logits, spikes = model(x.to(device), record=True)
    torch.save({"input": x[:, 0].cpu(), "hidden": [s[:, 0].cpu() for s in spikes], "label": int(y[0]),
                "prediction": int(logits.argmax(1)[0])}, run_dir / "raster.pt")
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if verbose:
        if run.val_ds is None:
            print(f"model of the final epoch ({best['epoch']}; trained on training + validation samples)")
        elif cfg.optim.selection == "last":
            print(f"model of the final epoch ({best['epoch']}, validation {100 * best['val_acc']:.2f}%)")
        else:
            print(f"best epoch {best['epoch']} (validation {100 * best['val_acc']:.2f}%)")
        if run.has_delays:
            print(f"test accuracy: {100 * test_acc:.2f}% (learned delays), "
                  f"{100 * test_acc_r:.2f}% (delays rounded to integers)")
        else:
            print(f"test accuracy: {100 * test_acc:.2f}%")
        print(f"run folder: {run_dir}")
    return results
