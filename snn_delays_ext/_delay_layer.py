"""Behaviour shared by every delay layer: delays, their width, clamping and rounding."""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Union

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._checks import check_choice, check_finite, check_int, check_nonneg_float, has_data
from .functional.interpolation import INTERPOLATIONS, round_half_up

__all__ = ["DelayLayerMixin", "DelayInit", "init_delays"]

#: What ``delay_init`` accepts: a name, a constant or a tensor of delays.
DelayInit = Union[str, float, int, torch.Tensor]


def init_delays(
    name: str,
    shape: tuple,
    max_delay: int,
    min_delay: int,
    init: DelayInit,
    std: Optional[float],
    dtype: Optional[torch.dtype],
    device: Optional[torch.device],
) -> torch.Tensor:
    """Initial delays of ``shape``, clamped to ``[min_delay, max_delay]``.

    ``init`` is ``"uniform"`` (uniform in the range), ``"half_normal"`` (``min_delay +
    |N(0, std)|``, DelRec's ``|N(0, 12)|`` for SSC; ``std`` defaults to ``max_delay / 2``), a
    number (every delay equal) or a tensor of the right shape.
    """
    kw = {"dtype": dtype if dtype is not None else torch.get_default_dtype(), "device": device}
    if isinstance(init, torch.Tensor):
        if tuple(init.shape) != tuple(shape):
            raise ValueError(f"{name}: expected a delay tensor of shape {tuple(shape)}, got {tuple(init.shape)}")
        d = init.detach().to(**kw).clone()
        check_finite(name, d)
    elif isinstance(init, bool):
        raise TypeError(f"{name}: expected a string, a number or a tensor, got bool")
    elif isinstance(init, (int, float)):
        if not math.isfinite(float(init)):
            raise ValueError(f"{name}: expected a finite number, got {init}")
        d = torch.full(shape, float(init), **kw)
    elif init == "uniform":
        d = torch.empty(shape, **kw).uniform_(float(min_delay), float(max_delay))
    elif init == "half_normal":
        s = max_delay / 2.0 if std is None else check_nonneg_float("delay_std", std)
        d = min_delay + torch.randn(shape, **kw).abs() * s
    else:
        raise ValueError(
            f"{name}: expected 'uniform', 'half_normal', a number or a tensor, got {init!r}"
        )
    return d.clamp_(float(min_delay), float(max_delay))


class DelayLayerMixin:
    """Mixin for modules holding a ``delays`` parameter in time steps.

    The host module sets ``max_delay``, ``min_delay``, ``delay_type``, ``interpolation`` and
    ``_sigma`` and registers ``delays``.

    ``sigma``, ``interpolation``, ``max_delay`` and ``delay_type`` travel with the
    ``state_dict`` (as extra state). Loading checks that ``max_delay`` and ``delay_type``
    match this layer's (``ValueError`` before anything is copied: delays trained up to a larger
    ``max_delay`` would be clamped silently, and axonal and dendritic delays of a square layer
    have the same shape) and restores ``sigma`` and ``interpolation``, so the loaded layer
    computes what the saved one did; a :class:`UserWarning` says when that replaces the
    ``interpolation`` this layer was built with (set ``layer.interpolation`` after loading to
    evaluate in another mode). Checkpoints without the newer fields load as before.
    """

    delays: nn.Parameter
    max_delay: int
    min_delay: int
    interpolation: str
    _sigma: float

    # -- dtype ------------------------------------------------------------------------------
    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """``Module._apply`` (``.to``, ``.half``, ...), warning when a conversion to a 16-bit
        float moves the delays: bfloat16 keeps 8 bits, so a delay of 17.37 steps becomes 17.375
        (a lag moved by up to 0.06 steps near ``max_delay = 20``)."""
        half = (torch.float16, torch.bfloat16)
        watch = {id(p): n for n, p in self.named_parameters(recurse=False)
                 if "delays" in n and p.is_floating_point() and p.dtype not in half}
        moved: Dict[str, float] = {}

        def convert(t: torch.Tensor) -> torch.Tensor:
            new = fn(t)
            n = watch.get(id(t))
            # only a conversion to 16 bits reads the values (a plain .to(device) runs nothing more)
            if n is not None and new.dtype in half and t.numel() and has_data(t) and has_data(new):
                moved[n] = float((new.detach().to(torch.float64).cpu() - t.detach().to(torch.float64).cpu())
                                 .abs().max())
            return new

        out = super()._apply(convert, recurse)  # type: ignore[misc]
        for n, dist in moved.items():
            if dist > 1e-3:
                warnings.warn(
                    f"{type(self).__name__}.{n}: converting the delays to {getattr(self, n).dtype} moved them "
                    f"by up to {dist:.3g} steps (a 16-bit float holds too few bits for delays up to "
                    f"{self.max_delay}); keep delay layers in float32 (torch.autocast runs them in "
                    "float32 and returns the autocast dtype)", UserWarning, stacklevel=3)
        return out

    # -- width ------------------------------------------------------------------------------
    @property
    def sigma(self) -> float:
        """Extra half-width of the interpolation triangle (``s = 1 + sigma``), >= 0."""
        return self._sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self._sigma = check_nonneg_float("sigma", value)

    def get_extra_state(self) -> Dict[str, Any]:
        return {
            "sigma": self._sigma,
            "interpolation": self.interpolation,
            "max_delay": self.max_delay,
            "delay_type": getattr(self, "delay_type", None),
        }

    def _check_extra_state(self, state: Any) -> None:
        """Raise if a checkpoint's extra state does not fit this layer (nothing is changed)."""
        if not isinstance(state, dict):
            raise TypeError(f"extra state: expected a dict, got {type(state).__name__}")
        if "sigma" in state:
            check_nonneg_float("sigma", state["sigma"])
        if "interpolation" in state:
            check_choice("interpolation", state["interpolation"], INTERPOLATIONS)
        saved = state.get("max_delay")
        if saved is not None and check_int("max_delay", saved) != self.max_delay:
            raise ValueError(
                f"max_delay: the checkpoint was saved from a layer with max_delay={saved}, this "
                f"{type(self).__name__} has max_delay={self.max_delay} (its delays would be "
                f"clamped to [{self.min_delay}, {self.max_delay}]); build the layer with "
                f"max_delay={saved}"
            )
        saved = state.get("delay_type")
        mine = getattr(self, "delay_type", None)
        if saved is not None and mine is not None and saved != mine:
            raise ValueError(
                f"delay_type: the checkpoint was saved from a layer with delay_type={saved!r}, "
                f"this {type(self).__name__} has delay_type={mine!r}; build the layer with "
                f"delay_type={saved!r}"
            )

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self._check_extra_state(state)
        interpolation = state.get("interpolation", self.interpolation)
        if interpolation != self.interpolation:
            warnings.warn(
                f"interpolation: the checkpoint's {interpolation!r} replaces this layer's "
                f"{self.interpolation!r} (the loaded layer computes what the saved one did); set "
                "layer.interpolation after loading to use another mode",
                UserWarning,
                stacklevel=2,
            )
        if "sigma" in state:
            self.sigma = state["sigma"]
        self.interpolation = interpolation

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):  # type: ignore[no-untyped-def]
        # check the extra state before nn.Module copies the parameters
        key = prefix + "_extra_state"
        if key in state_dict:
            self._check_extra_state(state_dict[key])
        super()._load_from_state_dict(  # type: ignore[misc]
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    # -- delays ------------------------------------------------------------------------------
    def effective_delays(self) -> torch.Tensor:
        """The delays the forward pass uses, in time steps (a detached copy).

        Clamped to ``[min_delay, max_delay]``; rounded (halves up) in ``"round"`` mode.
        """
        d = self.delays.detach().clamp(float(self.min_delay), float(self.max_delay))
        if self.interpolation == "round":
            d = round_half_up(d)
        return d

    @torch.no_grad()
    def clamp_delays_(self) -> None:
        """Clamp the stored delays in place to ``[min_delay, max_delay]`` (call after each
        optimiser step, as DelRec and EventProp do)."""
        if parametrize.is_parametrized(self, "delays"):  # type: ignore[arg-type]
            d = self.delays
            lo, hi = float(self.min_delay), float(self.max_delay)
            if bool(((d < lo) | (d > hi)).any()):
                self._write_delays_(d.clamp(lo, hi))
            return
        self.delays.clamp_(float(self.min_delay), float(self.max_delay))

    @torch.no_grad()
    def _write_delays_(self, value: torch.Tensor) -> None:
        """Set the delays' values in place (through ``right_inverse`` for a parametrization
        registered with :func:`torch.nn.utils.parametrize.register_parametrization`)."""
        if parametrize.is_parametrized(self, "delays"):  # type: ignore[arg-type]
            self.delays = value  # the parametrization's right_inverse sets the original
        else:
            self.delays.copy_(value)

    def _delay_leaves(self) -> List[nn.Parameter]:
        """The parameters the delays are computed from: ``delays`` itself, or for a
        parametrized ``delays`` the original(s) and the parametrization's own parameters."""
        if parametrize.is_parametrized(self, "delays"):  # type: ignore[arg-type]
            return list(self.parametrizations["delays"].parameters())  # type: ignore[attr-defined]
        return [self.delays]

    @torch.no_grad()
    def quantize_delays(self, max_hardware_delay: Optional[int] = None) -> torch.Tensor:
        """Round the delays in place to whole time steps for inference or hardware.

        Rounds to nearest (halves up, never truncation) after clamping, sets ``sigma = 0``,
        so the layer then computes exactly integer delays in either interpolation mode.

        Parameters
        ----------
        max_hardware_delay : int, optional
            Largest delay the target supports, in steps; a ``ValueError`` reports how many
            rounded delays exceed it (nothing is changed in that case).

        Returns
        -------
        torch.Tensor
            The rounded delays (a detached copy).
        """
        d = round_half_up(self.delays.clamp(float(self.min_delay), float(self.max_delay)))
        if max_hardware_delay is not None:
            limit = check_int("max_hardware_delay", max_hardware_delay, minimum=0)
            over = int((d > limit).sum())
            if over:
                raise ValueError(
                    f"max_hardware_delay: {over} of {d.numel()} rounded delays exceed the hardware "
                    f"limit {limit} (largest {int(d.max())}); train with max_delay={limit}"
                )
        self._write_delays_(d)
        self._sigma = 0.0
        return d.clone()

    def delay_parameters(self) -> List[nn.Parameter]:
        """The learnable delay tensors (give them their own optimiser / learning rate).

        With a parametrization on ``delays`` (``torch.nn.utils.parametrize``) these are the
        leaf tensors it computes the delays from (``parametrizations.delays.original``, and
        the parametrization's own parameters, if any).
        """
        return [p for p in self._delay_leaves() if p.requires_grad]

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every learnable parameter except the delays (weights, bias, beta, threshold)."""
        delays = {id(p) for p in self._delay_leaves()}
        return [p for p in self.parameters() if id(p) not in delays and p.requires_grad]  # type: ignore[attr-defined]

    def _delay_repr(self) -> str:
        return (
            f"max_delay={self.max_delay}, delay_type={self.delay_type!r}, "  # type: ignore[attr-defined]
            f"sigma={self._sigma:g}, interpolation={self.interpolation!r}"
        )
