"""Interpolated delays: tap weights of a real-valued lag over integer lags.

A real lag ``l`` (in time steps) reads its input through a triangle of half-width
``s = 1 + sigma`` centred on ``l``: the weight of integer lag ``k`` is

.. math:: h_k(l) = \\max(0, s - |k - l|) / s^2 .

With ``sigma = 0`` (``s = 1``) this is linear interpolation between ``floor(l)`` and
``ceil(l)``; a wider triangle spreads the lag over more taps (the DelRec schedule shrinks it
during training). The ``"round"`` mode reads the single integer lag ``round(l)`` in the forward
pass and passes the gradient of the triangle at that integer lag straight through to ``l``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

from .._checks import check_max_delay, check_choice, check_int, check_nonneg_float

__all__ = ["INTERPOLATIONS", "tap_range", "delay_taps", "banded_taps", "half_width", "round_half_up", "triangle"]

#: Interpolation modes understood by every delay layer.
INTERPOLATIONS = ("triangle", "round")


def tap_range(max_delay: int, sigma: float, min_delay: int = 0) -> Tuple[int, int]:
    """Return the smallest and largest integer lag a delay can read.

    Parameters
    ----------
    max_delay : int
        Largest allowed (real-valued) delay, in time steps.
    sigma : float
        Extra half-width of the triangle (``s = 1 + sigma``).
    min_delay : int, optional
        Smallest allowed delay: 0 for feed-forward, 1 for recurrent delays.

    Returns
    -------
    (k_min, k_max) : tuple of int
        ``k_min = min_delay`` and ``k_max = max_delay + ceil(s) - 1``: a triangle centred on
        ``max_delay`` is non-zero up to ``max_delay + s`` (exclusive). Taps below ``min_delay``
        are never read (a recurrent spike cannot arrive in the step it is emitted).

    Raises
    ------
    TypeError, ValueError
        ``max_delay`` not an int >= 1, ``sigma`` not a finite float >= 0, ``min_delay`` not an
        int in ``[0, max_delay]``.

    Examples
    --------
    >>> tap_range(10, 0.0)
    (0, 10)
    >>> tap_range(10, 2.5, min_delay=1)
    (1, 13)
    """
    max_delay, sigma, min_delay = _check_range(max_delay, sigma, min_delay)
    return tap_range_unchecked(max_delay, sigma, min_delay)


def _check_range(max_delay: int, sigma: float, min_delay: int) -> Tuple[int, float, int]:
    max_delay = check_max_delay(max_delay)
    sigma = check_nonneg_float("sigma", sigma)
    min_delay = check_int("min_delay", min_delay, minimum=0)
    if min_delay > max_delay:
        raise ValueError(f"min_delay: expected an int <= max_delay ({max_delay}), got {min_delay}")
    return max_delay, sigma, min_delay


def tap_range_unchecked(max_delay: int, sigma: float, min_delay: int = 0) -> Tuple[int, int]:
    """:func:`tap_range` without argument checks (for callers that validated them)."""
    s = 1.0 + float(sigma)
    return int(min_delay), int(max_delay) + int(math.ceil(s)) - 1


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, halves upward (``floor(x + 0.5)``), keeping the dtype.

    Unlike :func:`torch.round` (halves to even) this never maps 2.5 to 2, and unlike a cast to
    int it never truncates.

    Examples
    --------
    >>> round_half_up(torch.tensor([0.4, 0.5, 1.5, 2.5, 2.6]))
    tensor([0., 1., 2., 3., 3.])
    """
    return torch.floor(x + 0.5)


def triangle(lags: torch.Tensor, delays: torch.Tensor, s: Union[float, torch.Tensor]) -> torch.Tensor:
    """Triangle tap weights ``max(0, s - |k - l|) / s^2`` with one-sided (right) slopes.

    ``lags`` has shape ``S + (K,)`` or ``(K,)``, ``delays`` shape ``S``; the half-width ``s`` is
    a float or a tensor that broadcasts to ``S`` (one width per delay, differentiable). The value is the plain
    triangle. Its derivative with respect to the delay is the slope for increasing ``l``
    (``+1/s^2`` for ``0 < k - l <= s``, ``-1/s^2`` for ``-s < k - l <= 0``), also at the
    corners, where autograd's ``abs``/``relu`` would give 0. So a delay at a whole step (an
    integer initial value, or after :meth:`quantize_delays`) still gets the gradient of the
    linear segment it starts on, instead of none.

    Examples
    --------
    >>> d = torch.tensor([2.0], requires_grad=True)
    >>> h = triangle(torch.arange(5.0), d, 1.0)
    >>> h.detach()
    tensor([[0., 0., 1., 0., 0.]])
    >>> (h * torch.tensor([0.0, 0.0, 1.0, 3.0, 0.0])).sum().backward()
    >>> d.grad   # moving the delay from 2 towards 3 reads 1 -> 3
    tensor([2.])
    """
    if isinstance(s, torch.Tensor):
        s = s.unsqueeze(-1)
    u = lags - delays.unsqueeze(-1)
    h = torch.relu(s - u.abs()) / (s * s)
    with torch.no_grad():
        # right slope minus autograd's slope: differs only at u == 0 (-1) and u == s (+1)
        fix = ((u == s).to(h.dtype) - (u == 0).to(h.dtype)) / (s * s)
    return h + (delays - delays.detach()).unsqueeze(-1) * fix


class _RoundTaps(torch.autograd.Function):
    """One-hot taps at the rounded lag; straight-through triangle gradient."""

    @staticmethod
    def forward(ctx, delays: torch.Tensor, lags: torch.Tensor, s) -> torch.Tensor:  # type: ignore[override]
        if isinstance(s, torch.Tensor):  # one width per delay: no gradient (the forward is one-hot)
            s = s.detach().unsqueeze(-1)
        r = round_half_up(delays).unsqueeze(-1)
        ctx.save_for_backward(r, lags)
        ctx.s = s
        return (lags == r).to(delays.dtype)

    @staticmethod
    def backward(ctx, grad_taps: torch.Tensor):  # type: ignore[override]
        r, lags = ctx.saved_tensors
        s = ctx.s
        diff = lags - r
        dist = diff.abs()
        # derivative of the triangle evaluated at the integer lag r; at its corners the
        # two one-sided derivatives are averaged (central difference for s = 1)
        slope = torch.sign(diff) / (s * s)
        slope = torch.where(dist < s, slope, torch.where(dist == s, 0.5 * slope, torch.zeros_like(slope)))
        return (grad_taps * slope).sum(-1), None, None


def delay_taps(
    delays: torch.Tensor,
    max_delay: int,
    sigma: float = 0.0,
    min_delay: int = 0,
    interpolation: str = "triangle",
) -> torch.Tensor:
    """Tap weights ``h_k(l)`` of each delay over the integer lags of :func:`tap_range`.

    Parameters
    ----------
    delays : torch.Tensor
        Real-valued delays in time steps, any shape ``S``. They are clamped to
        ``[min_delay, max_delay]`` (the gradient passes inside the range, as for
        :func:`torch.clamp`).
    max_delay : int
        Largest delay.
    sigma : float, optional
        Extra half-width of the triangle, ``s = 1 + sigma`` (default 0: linear interpolation).
    min_delay : int, optional
        0 for feed-forward, 1 for recurrent delays.
    interpolation : {"triangle", "round"}
        ``"triangle"`` as in the module docstring; ``"round"`` a one-hot tap at
        ``floor(l + 0.5)`` with the straight-through triangle gradient.

    Returns
    -------
    torch.Tensor
        Shape ``S + (K,)`` with ``K = k_max - k_min + 1``; entry ``[..., j]`` is the weight of
        integer lag ``k_min + j``.

    Raises
    ------
    TypeError, ValueError
        ``delays`` not a floating-point tensor, or a bad ``max_delay``, ``sigma``,
        ``min_delay`` (see :func:`tap_range`) or ``interpolation``. The values of ``delays``
        are not read (that would cost a device synchronisation per call): a NaN delay gives NaN
        taps. :func:`~snn_delays_ext.functional.delayed_linear` and the layers reject
        non-finite delays.

    Examples
    --------
    >>> delay_taps(torch.tensor([1.25]), max_delay=3)
    tensor([[0.0000, 0.7500, 0.2500, 0.0000]])
    """
    max_delay, sigma, min_delay = _check_tap_args(delays, max_delay, sigma, min_delay, interpolation)
    return _delay_taps(delays, max_delay, sigma, min_delay, interpolation)


def _check_tap_args(
    delays: object, max_delay: object, sigma: object, min_delay: object, interpolation: object,
) -> Tuple[int, float, int]:
    """The argument checks of :func:`delay_taps`; returns ``(max_delay, sigma, min_delay)``."""
    _check_delays_tensor("delays", delays)
    max_delay, sigma, min_delay = _check_range(max_delay, sigma, min_delay)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    return max_delay, sigma, min_delay


def _check_delays_tensor(name: str, delays: object) -> None:
    if not isinstance(delays, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(delays).__name__}")
    if not delays.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor (delays are real numbers of time steps), "
            f"got dtype {delays.dtype}"
        )


def half_width(sigma: float, spread: Optional[torch.Tensor]) -> Union[float, torch.Tensor]:
    """The triangle's half-width ``s``: ``1 + sigma``, or ``1 + sigma * spread`` with a tensor
    ``spread`` of fractions in ``[0, 1]`` (one width per delay or per presynaptic neuron:
    DelRec's learnable width, ``spread = sigmoid(p)`` with ``sigma`` twice its schedule's). The
    tap range is always that of the widest triangle, ``1 + sigma``.

    Examples
    --------
    >>> half_width(2.0, None)
    3.0
    >>> half_width(2.0, torch.tensor([0.0, 0.5, 1.0]))
    tensor([1., 2., 3.])
    """
    if spread is None:
        return 1.0 + float(sigma)
    return 1.0 + float(sigma) * spread


def _delay_taps(
    delays: torch.Tensor, max_delay: int, sigma: float, min_delay: int, interpolation: str,
    spread: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`delay_taps` without argument checks (for callers that validated them)."""
    k_min, k_max = tap_range_unchecked(max_delay, sigma, min_delay)
    s = half_width(sigma, spread)
    lags = torch.arange(k_min, k_max + 1, device=delays.device, dtype=delays.dtype)
    d = delays.clamp(float(min_delay), float(max_delay))
    if interpolation == "triangle":
        return triangle(lags, d, s)
    if interpolation == "round":
        return _RoundTaps.apply(d, lags, s)
    raise ValueError(f"interpolation: expected one of {list(INTERPOLATIONS)}, got {interpolation!r}")


def banded_taps(
    delays: torch.Tensor,
    max_delay: int,
    sigma: float,
    min_delay: int,
    interpolation: str,
    spread: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The non-zero band of :func:`delay_taps`: a first lag and ``W`` tap weights per delay.

    The compiled kernels and the step mode of the layers read delays this way, so their cost
    does not grow with ``max_delay``. Arguments are not checked (internal building block).

    Parameters
    ----------
    delays : torch.Tensor
        Delays of any shape ``S`` (clamped to ``[min_delay, max_delay]``).
    max_delay, sigma, min_delay, interpolation
        As for :func:`delay_taps`.
    spread : torch.Tensor, optional
        Per-delay fractions of ``sigma`` (see :func:`half_width`), broadcast to ``S``.

    Returns
    -------
    start : torch.Tensor
        ``int64`` of shape ``S``: the first integer lag of the band.
    vals : torch.Tensor
        Shape ``S + (W,)`` with ``W = 2 ceil(s)`` (``2 ceil(s) + 1`` for ``"round"``): the tap
        weights of lags ``start + w`` (differentiable w.r.t. ``delays``); zero outside
        ``[min_delay, k_max]``. Every lag where the full tap vector or its gradient is non-zero
        lies in the band.

    Examples
    --------
    >>> start, vals = banded_taps(torch.tensor([1.25]), 3, 0.0, 0, "triangle")
    >>> start.tolist(), vals.tolist()
    ([1], [[0.75, 0.25]])
    """
    k_min, k_max = tap_range_unchecked(max_delay, sigma, min_delay)
    cs = int(math.ceil(1.0 + float(sigma)))  # the widest triangle's band
    s = half_width(sigma, spread)
    d = delays.clamp(float(min_delay), float(max_delay))
    with torch.no_grad():
        if interpolation == "triangle":
            start = torch.floor(d).to(torch.int64) - cs + 1
            width = 2 * cs
        elif interpolation == "round":
            start = torch.floor(d + 0.5).to(torch.int64) - cs
            width = 2 * cs + 1
        else:
            raise ValueError(f"interpolation: expected 'triangle' or 'round', got {interpolation!r}")
        lags_i = start.unsqueeze(-1) + torch.arange(width, device=d.device)
        valid = ((lags_i >= k_min) & (lags_i <= k_max)).to(d.dtype)
        lags = lags_i.to(d.dtype)
    if interpolation == "triangle":
        vals = triangle(lags, d, s)  # same values and slopes as delay_taps
    else:
        vals = _RoundTaps.apply(d, lags, s)
    return start, vals * valid
