"""Exponential moving average of a model's parameters, for evaluation and model selection."""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, List

import torch
from torch import nn

from .._checks import check_fraction, check_module

__all__ = ["ParameterEMA"]


def _same_shapes(xs: List[torch.Tensor], ys: List[torch.Tensor]) -> bool:
    return len(xs) == len(ys) and all(x.shape == y.shape for x, y in zip(xs, ys))


class ParameterEMA:
    r"""Keep ``a <- decay * a + (1 - decay) * p`` for every parameter ``p`` of ``model``.

    Call :meth:`update` after each optimiser step (and after any in-place change such as
    delay clamping); evaluate the averaged weights inside :meth:`swapped`, which puts them into
    ``model`` and restores the live weights on exit. Only parameters are averaged; buffers and
    settings such as a delay layer's ``sigma`` stay those of the live model. An average of
    clamped delays stays inside the clamp range (it is a convex combination).

    This is the fixed-decay rule of :func:`torch.optim.swa_utils.get_ema_multi_avg_fn`, kept
    here as copies of the parameters rather than a second module, so that the model's width
    schedule and device placement apply to the average unchanged.

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained; its parameters at construction are the initial average.
    decay : float
        Weight of the old average per update, in ``[0, 1)``; the average's memory is about
        ``1 / (1 - decay)`` updates.

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(1, 1, bias=False)
    >>> with torch.no_grad():
    ...     _ = lin.weight.fill_(0.0)
    >>> ema = ParameterEMA(lin, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = lin.weight.fill_(1.0)
    >>> ema.update(lin)
    >>> with ema.swapped(lin):
    ...     print(lin.weight.item())
    0.5
    >>> lin.weight.item()
    1.0
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        check_module("model", model)
        self.decay = check_fraction("decay", decay, "an averaging decay")
        self.average: List[torch.Tensor] = [p.detach().clone() for p in model.parameters()]
        self.n_updates = 0

    def _params(self, model: nn.Module) -> List[torch.Tensor]:
        params = list(model.parameters())
        if not _same_shapes(params, self.average):
            raise ValueError("model: expected the model this average was made for (same parameters and shapes)")
        return params

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current parameters."""
        for a, p in zip(self.average, self._params(model)):
            a.lerp_(p.detach(), 1.0 - self.decay)
        self.n_updates += 1

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Context in which ``model`` holds the averaged parameters; live ones restored after."""
        params = self._params(model)
        with torch.no_grad():
            live = [p.detach().clone() for p in params]
            for p, a in zip(params, self.average):
                p.copy_(a)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, v in zip(params, live):
                    p.copy_(v)

    def state_dict(self) -> Dict[str, Any]:
        """The average, the decay and the update count (for checkpoints)."""
        return {"decay": self.decay, "n_updates": self.n_updates, "average": [a.clone() for a in self.average]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        average = state["average"]
        if not _same_shapes(average, self.average):
            raise ValueError("state: expected an average of the same parameters and shapes")
        self.decay = check_fraction("decay", state["decay"], "an averaging decay")
        self.n_updates = int(state["n_updates"])
        for a, b in zip(self.average, average):
            a.copy_(b)
