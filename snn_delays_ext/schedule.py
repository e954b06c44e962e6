"""``SigmaScheduler``: shrink the interpolation width of a network's delays per epoch."""

from __future__ import annotations

from torch import nn

from ._checks import check_int, check_nonneg_float
from .functional.schedule import delrec_sigma
from .utils import delay_layers, set_sigma

__all__ = ["SigmaScheduler"]


class SigmaScheduler:
    """DelRec's per-epoch width schedule applied to every delay layer of a network.

    ``sigma = sigma0 * decay ** (100 * epoch / epochs)``; call :meth:`step` once per epoch,
    like a learning-rate scheduler. The constructor sets epoch 0's width.

    Parameters
    ----------
    net : torch.nn.Module
        Network whose delay layers get the width.
    epochs : int
        Total number of epochs.
    sigma0 : float
        Initial extra half-width (DelRec: 10).
    decay : float
        Factor per percent of training (DelRec: 0.95).
    final_sigma : float or None
        Width set after the last epoch (default 0, linear interpolation). ``None`` keeps the
        schedule's value.

    Examples
    --------
    >>> import snn_delays_ext as sde, torch
    >>> net = torch.nn.Sequential(sde.DelayedLinear(2, 2, max_delay=20))
    >>> sched = sde.SigmaScheduler(net, epochs=10, sigma0=5.0)
    >>> net[0].sigma
    5.0
    >>> _ = sched.step(); round(net[0].sigma, 3)
    2.994
    """

    def __init__(
        self, net: nn.Module, epochs: int, sigma0: float = 10.0, decay: float = 0.95,
        final_sigma: float | None = 0.0,
    ) -> None:
        self.net = net
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.sigma0 = check_nonneg_float("sigma0", sigma0)
        self.decay = float(decay)
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay: expected a float in (0, 1], got {decay}")
        self.final_sigma = None if final_sigma is None else check_nonneg_float("final_sigma", final_sigma)
        if not delay_layers(net):
            raise ValueError("net: expected a network with at least one delay layer, found none")
        self.epoch = 0
        set_sigma(net, self.current())

    def current(self) -> float:
        """The width for the current epoch."""
        if self.epoch >= self.epochs and self.final_sigma is not None:
            return self.final_sigma
        return delrec_sigma(min(self.epoch, self.epochs), self.epochs, self.sigma0, self.decay)

    def step(self) -> float:
        """Advance one epoch and set the new width; returns it."""
        self.epoch += 1
        s = self.current()
        set_sigma(self.net, s)
        return s

    def state_dict(self) -> dict:
        """For checkpoints."""
        return {"epoch": self.epoch, "epochs": self.epochs, "sigma0": self.sigma0, "decay": self.decay,
                "final_sigma": self.final_sigma}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict` and set the width."""
        self.epoch = int(state["epoch"])
        self.epochs, self.sigma0, self.decay = int(state["epochs"]), float(state["sigma0"]), float(state["decay"])
        self.final_sigma = state["final_sigma"]
        set_sigma(self.net, self.current())
