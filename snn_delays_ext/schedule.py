"""``SigmaScheduler``: shrink the interpolation width of a network's delays per epoch."""

from __future__ import annotations

from torch import nn

from ._checks import check_int, check_nonneg_float, check_positive_float
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
        self.epochs, self.sigma0, self.decay, self.final_sigma = _check_schedule(
            epochs, sigma0, decay, final_sigma)
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
        """Restore from :meth:`state_dict` and set the width.

        Raises
        ------
        TypeError, ValueError
            ``state`` is not such a dict (a key missing, or a value of the wrong type or out
            of range); nothing is changed then.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict from SigmaScheduler.state_dict(), got {type(state).__name__}")
        keys = ("epoch", "epochs", "sigma0", "decay", "final_sigma")
        missing = [k for k in keys if k not in state]
        if missing:
            raise ValueError(f"state: expected the keys {list(keys)}, missing {missing}")
        epoch = check_int("epoch", state["epoch"], minimum=0)
        schedule = _check_schedule(state["epochs"], state["sigma0"], state["decay"], state["final_sigma"])
        self.epoch = epoch
        self.epochs, self.sigma0, self.decay, self.final_sigma = schedule
        set_sigma(self.net, self.current())


def _check_schedule(epochs: object, sigma0: object, decay: object, final_sigma: object):
    """Validated ``(epochs, sigma0, decay, final_sigma)``."""
    epochs = check_int("epochs", epochs, minimum=1)
    sigma0 = check_nonneg_float("sigma0", sigma0)
    decay = check_positive_float("decay", decay)
    if decay > 1:
        raise ValueError(f"decay: expected a float in (0, 1], got {decay}")
    final = None if final_sigma is None else check_nonneg_float("final_sigma", final_sigma)
    return epochs, sigma0, decay, final
