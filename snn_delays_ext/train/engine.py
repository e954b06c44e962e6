"""The training engine: data, model, optimiser with separate delay learning rate, width
schedule, per-epoch checkpoints with exact resume, validation-based model selection,
DistributedDataParallel, and the final test with delays before and after rounding."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, DataLoader, Dataset, DistributedSampler, Subset

from ..data import (SHD, SSC, Braille, PermutedSequentialMNIST, SequenceDetection, YinYang, random_blend,
                    random_drop_event, random_time_shift, random_time_stretch, stratified_split, time_first_collate)
from ..schedule import SigmaScheduler
from ..utils import clamp_delays_, delay_layers, delay_parameters, quantize_delays, set_sigma, weight_parameters
from .config import TrainConfig
from .ema import ParameterEMA
from .models import build_model, learned_thresholds, sigmoid_beta_logits

__all__ = ["train", "make_datasets", "evaluate", "CHECKPOINT", "METRICS"]

CHECKPOINT = "checkpoint.pt"
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
    if cfg.data_dir is not None:
        return Path(cfg.data_dir).expanduser()
    env = os.environ.get("SNN_DELAYS_DATA")
    if env and cfg.dataset in _ENV_SUBDIR and (Path(env) / _ENV_SUBDIR[cfg.dataset]).is_dir():
        return Path(env) / _ENV_SUBDIR[cfg.dataset]
    if cfg.dataset in _DATA_HELP:
        raise ValueError(f"data_dir: dataset {cfg.dataset!r} needs --data-dir (or data_dir in the config, or "
                         f"$SNN_DELAYS_DATA/{_ENV_SUBDIR[cfg.dataset]}): {_DATA_HELP[cfg.dataset]}")
    return None


def _limit(ds: Dataset, n: Optional[int], seed: int) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    idx = np.random.RandomState(seed).permutation(len(ds))[:n]
    return Subset(ds, np.sort(idx).tolist())


def make_datasets(cfg: TrainConfig) -> Tuple[Dataset, Dataset, Dataset, int, int]:
    """Train, validation and test sets of ``cfg.dataset``, with input size and class count.

    Validation never comes from the test set: SHD holds out 10% of its training file
    (stratified, fixed seed), PS-MNIST the last 5000 training images.
    """
    d = cfg.dataset
    root = _data_dir(cfg)
    if d == "sequence":
        kw = dict(gap=cfg.gap, n_steps=cfg.n_steps or 4 * cfg.gap, max_lag=max(cfg.gap, cfg.max_delay))
        kw["n_steps"] = max(kw["n_steps"], cfg.gap + kw["max_lag"] + 1)
        tr, va, te = (SequenceDetection(s, size=n, **kw) for s, n in (("train", 1000), ("val", 200), ("test", 200)))
    elif d == "yinyang":
        kw = dict(n_steps=cfg.n_steps or 30, n_steps_enc=min(20, cfg.n_steps or 30))
        tr, va, te = (YinYang(s, root=root, **kw) for s in ("train", "validation", "test"))
    elif d == "braille":
        kw = dict(dt=cfg.dt or 0.01)
        tr, va, te = (Braille(root, s, **kw) for s in ("train", "val", "test"))
    elif d == "psmnist":
        tr, va, te = (PermutedSequentialMNIST(root, s) for s in ("train", "val", "test"))
    elif d == "shd":
        kw = dict(dt=cfg.dt or 0.01, n_steps=cfg.n_steps, pool=cfg.pool)
        full, te = SHD(root, "train", **kw), SHD(root, "test", **kw)
        tr_idx, va_idx = stratified_split(full.labels, (0.9, 0.1), seed=0)
        tr, va = Subset(full, tr_idx.tolist()), Subset(full, va_idx.tolist())
        tr.n_classes = va.n_classes = full.n_classes  # type: ignore[attr-defined]
    elif d == "ssc":
        kw = dict(dt=cfg.dt or 0.004, n_steps=cfg.n_steps, pool=cfg.pool)
        tr, va, te = (SSC(root, s, **kw) for s in ("train", "valid", "test"))
    else:  # pragma: no cover - validated before
        raise ValueError(f"dataset: unknown {d!r}")
    n_in = int(te.n_features)  # type: ignore[attr-defined]
    n_classes = int(te.n_classes)  # type: ignore[attr-defined]
    tr = _limit(tr, cfg.train_limit, cfg.seed)
    va, te = _limit(va, cfg.eval_limit, cfg.seed + 1), _limit(te, cfg.eval_limit, cfg.seed + 2)
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
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {cfg.device!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {cfg.device!r} requested but CUDA is not available; use --device cpu")
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
    return Path("runs") / f"{cfg.dataset}-{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"


# -- training ----------------------------------------------------------------------------------
def _param_groups(model: nn.Module, cfg: TrainConfig) -> List[Dict[str, Any]]:
    """Optimiser groups: weights (``cfg.lr``, ``cfg.weight_decay``: weights, biases and clipped
    decays; with ``cfg.weight_decay_scope == "matrices"`` the one-dimensional ones, biases,
    decays, thresholds and norm parameters, form a group ``"weights_no_decay"`` at the same
    learning rate without it), learnable thresholds (``cfg.lr``, never weight decay), decay
    logits (``cfg.beta_lr``, else ``cfg.lr``; no weight decay) and delays (``cfg.delay_lr``, no
    weight decay); empty groups are left out."""
    logits = sigmoid_beta_logits(model)
    thresholds = learned_thresholds(model)
    ids = {id(p) for p in logits + thresholds}
    weights = [p for p in weight_parameters(model) if id(p) not in ids]
    no_decay: List[nn.Parameter] = []
    if getattr(cfg, "weight_decay_scope", "all") == "matrices":
        no_decay = [p for p in weights if p.dim() < 2]
        weights = [p for p in weights if p.dim() >= 2]
    groups = [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay, "name": "weights"}]
    if no_decay:
        groups.append({"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0, "name": "weights_no_decay"})
    if thresholds:
        groups.append({"params": thresholds, "lr": cfg.lr, "weight_decay": 0.0, "name": "thresholds"})
    if logits:
        lr = cfg.lr if getattr(cfg, "beta_lr", None) is None else cfg.beta_lr
        groups.append({"params": logits, "lr": lr, "weight_decay": 0.0, "name": "decay_logits"})
    if delay_parameters(model):
        groups.append({"params": delay_parameters(model), "lr": cfg.delay_lr, "weight_decay": 0.0, "name": "delays"})
    return groups


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` or ``AdamW`` (``cfg.optimizer``) over :func:`_param_groups`."""
    cls = torch.optim.AdamW if getattr(cfg, "optimizer", "adam") == "adamw" else torch.optim.Adam
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
    or with ``selection="last"`` it is the final epoch's; ``train_on_val=True`` (which needs
    ``selection="last"``) trains on the training and validation samples together and validates
    nothing (``NaN`` in the CSV, ``None`` in the results). The test set is used once at the end,
    with the learned delays and with them rounded to integers
    (:func:`snn_delays_ext.quantize_delays` on a copy). With ``ema > 0`` a
    :class:`~snn_delays_ext.train.ParameterEMA` of the weights is updated after every
    optimiser step, and validation, model selection and the test use the average instead of
    the live weights (training continues from the live weights).

    A model with an ``on_train_epoch_end()`` method has it called after each epoch's training
    batches, before validation and the checkpoint (EventProp models bump silent neurons there).

    Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
    :class:`torch.nn.parallel.DistributedDataParallel` (NCCL on GPU, gloo on CPU);
    ``batch_size`` is the global batch, split evenly over the processes, and only rank 0
    writes files.

    With ``flush_denormal`` (the default) denormal floats are flushed to zero during the run
    (:func:`torch.set_flush_denormal`, CPUs with SSE3; switched back off at the end): learned
    membrane decays near 0 make the surrogate-gradient backward multiply gradients by ``beta``
    step after step into the denormal range, where x86 CPUs compute up to ~100x slower (a
    Braille epoch went from 20 s to 170 s over 20 epochs). Flushing changes values below
    1.2e-38 only.
    """
    cfg = copy.deepcopy(cfg).validate()
    flushed = bool(cfg.flush_denormal) and torch.set_flush_denormal(True)
    try:
        return _train_run(cfg, run_dir, resume, on_epoch_end, verbose)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _train_run(cfg: TrainConfig, run_dir: Optional[os.PathLike], resume: bool,
               on_epoch_end: Optional[Callable[[int, Dict[str, float]], None]],
               verbose: bool) -> Dict[str, Any]:
    """The body of :func:`train` (``cfg`` already validated)."""
    rank, world, local_rank = _dist_info()
    device = _device(cfg, local_rank)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size: expected a multiple of the number of processes ({world}), got {cfg.batch_size}")
    run_dir = Path(run_dir) if run_dir is not None else (Path(cfg.out) if cfg.out else default_run_dir(cfg))
    is_main = rank == 0
    ckpt_path = run_dir / CHECKPOINT
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"resume: no '{CHECKPOINT}' in '{run_dir}' to resume from")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    train_ds, val_ds, test_ds, n_in, n_classes = make_datasets(cfg)
    if cfg.train_on_val:  # the validation samples become training samples; nothing is validated
        train_ds, val_ds = ConcatDataset([train_ds, val_ds]), None
    model = build_model(cfg.model, n_in, n_classes, cfg).to(device)
    has_delays = bool(delay_layers(model))
    if is_main and not resume:
        torch.save(_delay_snapshot(model), run_dir / "delays_init.pt")

    opt = _optimizer(model, cfg)
    lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs) if cfg.lr_schedule == "cosine" else None
    sigma_sched = SigmaScheduler(model, cfg.epochs, cfg.sigma0, cfg.sigma_decay) if has_delays and cfg.sigma0 > 0 else None
    if has_delays and sigma_sched is None:
        set_sigma(model, 0.0)
    ema = ParameterEMA(model, cfg.ema) if cfg.ema > 0 else None

    start_epoch, history, best = 0, [], {"val_acc": -1.0, "epoch": -1, "state": None}
    if resume:
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if lr_sched is not None:
            lr_sched.load_state_dict(ck["lr_scheduler"])
        if sigma_sched is not None:
            sigma_sched.load_state_dict(ck["sigma_scheduler"])
        if ema is not None:
            if ck.get("ema") is None:
                raise ValueError(f"resume: '{ckpt_path}' holds no weight average but the config asks for ema={cfg.ema}")
            ema.load_state_dict(ck["ema"])
        start_epoch, history, best = ck["epoch"], ck["history"], ck["best"]
        _set_rng_state(ck["rng"])
        if verbose and is_main:
            print(f"resuming {run_dir} after epoch {start_epoch}")

    net: nn.Module = model
    if world > 1 and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        # per-process batch statistics would make N processes differ from one on the same global batch
        if device.type != "cuda":
            raise ValueError("batch_norm: under torchrun the batch statistics must be synchronised "
                             "(torch.nn.SyncBatchNorm), which needs CUDA devices; got device "
                             f"{device.type!r}. Train on one process or on GPUs")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if dist.is_initialized():  # under torchrun, one process too
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False)
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size // world, sampler=sampler,
                        collate_fn=time_first_collate, num_workers=cfg.num_workers)
    writer = None
    if is_main and cfg.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(run_dir / "tensorboard"))
        except Exception:  # tensorboard not installed: CSV only
            writer = None
    if is_main and not resume:
        with open(run_dir / METRICS, "w", newline="") as f:
            csv.writer(f).writerow(_FIELDS)

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None  # type: ignore[assignment]

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        net.train()
        sigma = float(delay_layers(model)[0].sigma) if has_delays else 0.0
        it = loader
        if tqdm is not None and is_main and cfg.progress:
            it = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, dynamic_ncols=True)
        loss_sum, correct, n = 0.0, 0.0, 0.0
        for x, y in it:
            x = random_blend(x, y, cfg.blend)
            x = random_time_stretch(random_time_shift(x, cfg.time_shift), cfg.time_stretch)
            x = random_drop_event(x, cfg.drop_event)
            x, y = x.to(device), y.to(device)
            logits = net(x)
            loss = nn.functional.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            clamp_delays_(model)
            if ema is not None:
                ema.update(model)
            loss_sum += float(loss.detach()) * len(y)
            correct += float((logits.detach().argmax(1) == y).sum())
            n += len(y)
            if hasattr(it, "set_postfix"):
                it.set_postfix(loss=f"{float(loss.detach()):.3f}")
        loss_sum, correct, n = _all_sum([loss_sum, correct, n], device)
        epoch_hook = getattr(model, "on_train_epoch_end", None)  # e.g. EventProp's silent-neuron bump
        if callable(epoch_hook):
            epoch_hook()
        with ema.swapped(model) if ema is not None else contextlib.nullcontext():
            # validation (and the saved best state) use the weight average when there is one
            val_loss, val_acc = (evaluate(model, val_ds, cfg.batch_size, device) if val_ds is not None
                                 else (math.nan, math.nan))
            if cfg.selection == "last" or val_acc > best["val_acc"]:
                best = {"val_acc": val_acc, "epoch": epoch + 1,
                        "state": copy.deepcopy(model.state_dict())}
        lrs = {g["name"]: g["lr"] for g in opt.param_groups}
        if lr_sched is not None:
            lr_sched.step()
        if sigma_sched is not None:
            sigma_sched.step()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / n, "train_acc": correct / n, "val_loss": val_loss,
               "val_acc": val_acc, "sigma": sigma, "lr": lrs["weights"], "delay_lr": lrs.get("delays", 0.0),
               "epoch_time_s": time.perf_counter() - t0}
        history.append(row)
        if is_main:
            with open(run_dir / METRICS, "a", newline="") as f:
                csv.writer(f).writerow([row[k] for k in _FIELDS])
            if writer is not None:
                for k in _FIELDS[1:]:
                    writer.add_scalar(k, row[k], epoch + 1)
            _atomic_save({
                "epoch": epoch + 1, "config": cfg.to_dict(), "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "lr_scheduler": lr_sched.state_dict() if lr_sched is not None else None,
                "sigma_scheduler": sigma_sched.state_dict() if sigma_sched is not None else None,
                "history": history, "best": best, "rng": _rng_state(), "world_size": world,
                "ema": ema.state_dict() if ema is not None else None,
            }, ckpt_path)
            if verbose:
                print(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {row['train_loss']:.4f}  train {100 * row['train_acc']:.2f}%"
                      f"  val {'-' if val_ds is None else f'{100 * val_acc:.2f}%'}  sigma {sigma:.2f}  {row['epoch_time_s']:.1f}s", flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    if writer is not None:
        writer.close()

    # final: the selected model (best on validation, or the last epoch's), test with real-valued and
    # with rounded delays
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    test_loss, test_acc = evaluate(model, test_ds, cfg.batch_size, device)
    rounded = copy.deepcopy(model)
    if has_delays:
        quantize_delays(rounded)
    test_loss_r, test_acc_r = evaluate(rounded, test_ds, cfg.batch_size, device)
    val_acc_r = evaluate(rounded, val_ds, cfg.batch_size, device)[1] if val_ds is not None else None
    times = [h["epoch_time_s"] for h in history]
    results = {
        "dataset": cfg.dataset, "model": cfg.model, "epochs": cfg.epochs, "selection": cfg.selection,
        "best_epoch": best["epoch"], "best_val_acc": best["val_acc"] if val_ds is not None else None,
        "val_acc_rounded": val_acc_r, "train_on_val": cfg.train_on_val,
        "test_acc": test_acc, "test_acc_rounded": test_acc_r, "test_loss": test_loss,
        "test_loss_rounded": test_loss_r, "mean_epoch_time_s": float(np.mean(times)) if times else 0.0,
        "n_parameters": sum(p.numel() for p in model.parameters()), "world_size": world,
        "distributed_backend": dist.get_backend() if dist.is_initialized() else None,
        "n_train": len(train_ds), "n_val": len(val_ds) if val_ds is not None else 0, "n_test": len(test_ds),
        "n_inputs": n_in, "n_classes": n_classes,
    }
    if is_main:
        torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "n_inputs": n_in,
                    "n_classes": n_classes}, run_dir / "model_best.pt")
        torch.save(_delay_snapshot(model), run_dir / "delays_final.pt")
        with torch.no_grad():
            x, y = time_first_collate([test_ds[0]])
            model.eval()
            logits, spikes = model(x.to(device), record=True)
        torch.save({"input": x[:, 0].cpu(), "hidden": [s[:, 0].cpu() for s in spikes], "label": int(y[0]),
                    "prediction": int(logits.argmax(1)[0])}, run_dir / "raster.pt")
        (run_dir / "results.json").write_text(json.dumps(results, indent=2))
        if verbose:
            if val_ds is None:
                print(f"model of the final epoch ({best['epoch']}; trained on training + validation samples)")
            elif cfg.selection == "last":
                print(f"model of the final epoch ({best['epoch']}, validation {100 * best['val_acc']:.2f}%)")
            else:
                print(f"best epoch {best['epoch']} (validation {100 * best['val_acc']:.2f}%)")
            if has_delays:
                print(f"test accuracy: {100 * test_acc:.2f}% (learned delays), "
                      f"{100 * test_acc_r:.2f}% (delays rounded to integers)")
            else:
                print(f"test accuracy: {100 * test_acc:.2f}%")
            print(f"run folder: {run_dir}")
    return results
