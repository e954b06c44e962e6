"""Per-epoch learning-rate schedules, one per optimiser group.

DelRec's SHD configuration steps a one-cycle schedule on the weights and a cosine schedule on
the delays, both once per epoch; a single ``torch.optim.lr_scheduler`` acts on every group of
its optimiser, so :class:`EpochSchedules` computes each group's rate (and, for the one-cycle
schedule, Adam's ``beta1``) from the epoch in closed form, with the formulas of
``torch.optim.lr_scheduler.CosineAnnealingLR`` (``eta_min = 0``) and ``OneCycleLR``
(``total_steps = epochs``, torch's defaults).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch

from .config import LR_SCHEDULES

__all__ = ["EpochSchedules", "cosine_lr", "onecycle_lr"]


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """``CosineAnnealingLR(T_max=epochs, eta_min=0)`` at ``epoch``: ``base (1 + cos(pi e / E)) / 2``.

    Examples
    --------
    >>> cosine_lr(1.0, 0, 10), cosine_lr(1.0, 5, 10), round(cosine_lr(1.0, 10, 10), 12)
    (1.0, 0.5, 0.0)
    """
    return base_lr * (1.0 + math.cos(math.pi * epoch / epochs)) / 2.0


def _anneal(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def onecycle_lr(max_lr: float, epoch: int, epochs: int, pct_start: float = 0.3, div_factor: float = 25.0,
                final_div_factor: float = 1e4, base_momentum: float = 0.85,
                max_momentum: float = 0.95) -> Tuple[float, float]:
    """``OneCycleLR(max_lr, total_steps=epochs)`` (cosine annealing, two phases) at ``epoch``:
    ``(lr, momentum)``.

    The rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of
    the steps and falls to ``max_lr / div_factor / final_div_factor`` at the last; the momentum
    (Adam's ``beta1``) moves the other way between ``max_momentum`` and ``base_momentum``.

    Examples
    --------
    >>> lr, m = onecycle_lr(1.0, 0, 10)
    >>> round(lr, 12), m
    (0.04, 0.95)
    >>> onecycle_lr(1.0, 2, 10)
    (1.0, 0.85)
    """
    initial = max_lr / div_factor
    phases = ((float(pct_start * epochs) - 1.0, initial, max_lr, max_momentum, base_momentum),
              (float(epochs - 1), max_lr, initial / final_div_factor, base_momentum, max_momentum))
    start_step = 0.0
    for i, (end_step, lr0, lr1, m0, m1) in enumerate(phases):
        if epoch <= end_step or i == len(phases) - 1:
            pct = (epoch - start_step) / (end_step - start_step)
            return _anneal(lr0, lr1, pct), _anneal(m0, m1, pct)
        start_step = end_step
    raise AssertionError("unreachable")  # pragma: no cover


class EpochSchedules:
    """A learning-rate schedule per optimiser group, stepped once per epoch.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its groups carry a ``"name"`` (the engine's ``"weights"``, ``"delays"``); each group's
        ``lr`` at construction is its base (cosine, constant) or peak (one cycle) rate.
    kinds : dict
        Group name -> a schedule in :data:`~snn_delays_ext.train.config.LR_SCHEDULES`
        (``"cosine"``, ``"none"``, ``"onecycle"``).
    epochs : int
        Length of the schedules.

    Examples
    --------
    >>> import torch
    >>> p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    >>> opt = torch.optim.Adam([{"params": [p], "lr": 1.0, "name": "weights"},
    ...                         {"params": [q], "lr": 0.5, "name": "delays"}])
    >>> s = EpochSchedules(opt, {"weights": "onecycle", "delays": "cosine"}, epochs=4)
    >>> [round(g["lr"], 12) for g in opt.param_groups]
    [0.04, 0.5]
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kinds: Dict[str, str], epochs: int) -> None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
        names = [g.get("name") for g in optimizer.param_groups]
        for name, kind in kinds.items():
            if kind not in LR_SCHEDULES:
                raise ValueError(f"kinds: expected schedules in {list(LR_SCHEDULES)}, got {kind!r} for {name!r}")
        missing = [n for n in names if n not in kinds]
        if missing:
            raise ValueError(f"kinds: expected a schedule for every optimiser group, missing {missing}")
        self.optimizer, self.kinds, self.epochs = optimizer, dict(kinds), epochs
        self.base = {g["name"]: float(g["lr"]) for g in optimizer.param_groups}
        self.epoch = 0
        self._apply()

    def rate(self, name: str, epoch: Optional[int] = None) -> Tuple[float, Optional[float]]:
        """``(lr, beta1 or None)`` of group ``name`` at ``epoch`` (default: the current one)."""
        e = self.epoch if epoch is None else epoch
        kind, base = self.kinds[name], self.base[name]
        if kind == "cosine":
            return cosine_lr(base, e, self.epochs), None
        if kind == "onecycle":
            return onecycle_lr(base, e, self.epochs)
        return base, None

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            lr, momentum = self.rate(g["name"])
            g["lr"] = lr
            if momentum is not None and "betas" in g:
                g["betas"] = (momentum, *tuple(g["betas"])[1:])

    def step(self) -> None:
        """Advance one epoch and set every group's rate."""
        self.epoch += 1
        self._apply()

    def state_dict(self) -> Dict[str, Any]:
        """For checkpoints."""
        return {"epoch": self.epoch, "epochs": self.epochs, "kinds": dict(self.kinds), "base": dict(self.base)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the epoch from :meth:`state_dict` (or from the ``CosineAnnealingLR`` state an
        older run folder's checkpoint holds) and set the rates."""
        if not isinstance(state, dict) or not ("epoch" in state or "last_epoch" in state):
            raise ValueError("state: expected EpochSchedules.state_dict() (or a torch scheduler's state), got "
                             f"{type(state).__name__}")
        self.epoch = int(state["epoch"] if "epoch" in state else state["last_epoch"])
        self._apply()
