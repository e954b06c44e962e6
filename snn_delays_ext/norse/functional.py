"""Norse-style functional steps of LIF neurons with learnable delays.

The neuron is Norse's current-based LIF (:func:`norse.torch.functional.lif.lif_step`), one
explicit Euler step of length ``dt``:

.. math::

    i^+ &= i + W_{in} x_t + r_t \\\\
    \\tilde v &= v + dt\\, \\tau_{mem}^{-1} (v_{leak} - v + i^+) \\\\
    i' &= i^+ - dt\\, \\tau_{syn}^{-1} i^+ \\\\
    z_t &= \\Theta(\\tilde v - v_{th}), \\quad v' = (1 - z_t) \\tilde v + z_t v_{reset}

where Norse reads the recurrent input ``r_t = W_{rec} z_{t-1}`` from the previous spikes; here
it reads every connection through its delay ``l`` (in time steps, ``>= 1``) with the shared tap
weights of :func:`snn_delays_ext.functional.delay_taps`:

.. math:: r_t = \\sum_j w_{ij} \\sum_{k \\ge 1} h_k(l_{ij})\\, z_j(t - k).

With every lag 1 and ``sigma = 0`` the taps are exactly ``[1, 0, ...]`` and the step is Norse's
``lif_step``. The feed-forward variant replaces ``W_{in} x_t`` by the delayed linear map of
:func:`snn_delays_ext.functional.delayed_linear` (synaptic, axonal or dendritic delays) and has
no recurrence.

The reset follows Norse in both variants, gradients included: the recurrent step (Norse's
``lif_step``) detaches ``z_t`` in the reset, so no surrogate gradient flows through it, while
the feed-forward step (Norse's ``lif_feed_forward_step``) keeps it.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from norse.torch.functional.lif import LIFParameters
from norse.torch.functional.threshold import threshold

from ..functional.delayed_linear import (
    _dense_kernel,
    fit_history,
    _use_gather,
    delayed_linear,
)
from ..functional.interpolation import _check_tap_args, tap_range_unchecked
from ..functional.recurrent_leaky import (
    _current_from_band,
    _RecurrentBand,
    banded_recurrent_current,
    recurrent_current,
)

__all__ = [
    "DelayedLIFState",
    "DelayedLIFFeedForwardState",
    "delayed_recurrent_input",
    "delayed_lif_step",
    "delayed_lif_feed_forward_step",
]


class DelayedLIFState(NamedTuple):
    """State of a delayed recurrent LIF layer (Norse's ``LIFState`` plus the delay buffer).

    Parameters
    ----------
    z : torch.Tensor
        Spikes of the previous step ``(B, N)``.
    v : torch.Tensor
        Membrane potential ``(B, N)``.
    i : torch.Tensor
        Synaptic current ``(B, N)``.
    past : torch.Tensor
        The last ``K`` spike vectors ``(K, B, N)``, oldest first (``past[-1]`` equals ``z``),
        ``K = max_delay + ceil(1 + sigma) - 1``.
    """

    z: torch.Tensor
    v: torch.Tensor
    i: torch.Tensor
    past: torch.Tensor


class DelayedLIFFeedForwardState(NamedTuple):
    """State of a delayed feed-forward LIF layer (Norse's ``LIFFeedForwardState`` plus the
    past inputs of the delayed linear map).

    Parameters
    ----------
    v : torch.Tensor
        Membrane potential ``(B, N)``.
    i : torch.Tensor
        Synaptic current ``(B, N)``.
    past : torch.Tensor
        Past inputs of the delayed map ``(P, B, F)``, oldest first (``F`` = inputs, or outputs
        for dendritic delays); see :func:`snn_delays_ext.functional.delayed_linear`.
    """

    v: torch.Tensor
    i: torch.Tensor
    past: torch.Tensor


def delayed_recurrent_input(
    past: torch.Tensor,
    weight: torch.Tensor,
    delays: torch.Tensor,
    max_delay: int,
    delay_type: str = "axonal",
    sigma: float = 0.0,
    interpolation: str = "triangle",
) -> torch.Tensor:
    """Recurrent current ``r_t`` read from the spike history through the delays.

    Parameters
    ----------
    past : torch.Tensor
        ``(K, B, N)`` spike history, oldest first.
    weight : torch.Tensor
        ``(N, N)`` recurrent weights (row = postsynaptic).
    delays : torch.Tensor
        ``(N,)`` axonal (per presynaptic neuron) or ``(N, N)`` synaptic delays in steps,
        clamped to ``[1, max_delay]``.
    max_delay : int
    delay_type : {"axonal", "synaptic"}
    sigma : float
    interpolation : {"triangle", "round"}

    Returns
    -------
    torch.Tensor
        ``(B, N)``.

    Examples
    --------
    >>> past = torch.zeros(3, 1, 2); past[-2, 0, 0] = 1.0   # neuron 0 spiked 2 steps ago
    >>> w = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    >>> delayed_recurrent_input(past, w, torch.tensor([2.0, 1.0]), max_delay=3)
    tensor([[0., 1.]])
    """
    return _banded_current(past, weight, delays, max_delay, delay_type, sigma, interpolation)


def _banded_current(
    past: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor, max_delay: int,
    delay_type: str, sigma: float, interpolation: str,
) -> torch.Tensor:
    """``r_t`` from the non-zero band of the delays' taps (lags 1..K; same numbers and
    gradients as the full taps of :func:`~snn_delays_ext.functional.delay_taps`, and the same
    argument checks)."""
    max_delay, sigma, _ = _check_tap_args(delays, max_delay, sigma, 1, interpolation)
    K = tap_range_unchecked(max_delay, sigma, 1)[1]
    return banded_recurrent_current(
        fit_history(past, K), weight, None, delays, max_delay, delay_type, sigma, interpolation)


def _recurrent_from_taps(
    past: torch.Tensor, weight: torch.Tensor, taps: torch.Tensor, delay_type: str
) -> torch.Tensor:
    """``r_t`` from precomputed taps (``(N, K)`` axonal or ``(N, N, K)`` weighted synaptic)."""
    return recurrent_current(fit_history(past, taps.shape[-1]), weight, None, taps, delay_type)


def _with_sequence_kernel(
    band: _RecurrentBand, past: torch.Tensor, steps: int, delay_type: str
) -> _RecurrentBand:
    """For a synaptic sequence of ``steps`` steps from the ``(K, B, N)`` history ``past``: the
    band plus its dense kernel, built once (differentiably) for all steps, where a step would
    take :class:`SynapticStep`'s dense path (``3 B W > K``: a matrix product beats gathering
    ``B W`` entries per synapse) and the kernel is no larger than the histories autograd keeps
    anyway (``N <= steps * B``). Otherwise the band unchanged (each step gathers it, or
    rebuilds the small dense kernel). Same numbers as the per-step path; measured for ``N = 128,
    B = 8, T = 50, max_delay = 10``: forward and backward 51 ms -> 26 ms."""
    if delay_type != "synaptic" or _use_gather(past, band.idx):
        return band
    n = band.idx.shape[0]
    if n > steps * past.shape[1]:
        return band
    kern = _dense_kernel(band.idx, band.coef, band.K).reshape(n, band.K * n)
    return band._replace(kern=kern)


def _lif_update(
    i_jump: torch.Tensor, v: torch.Tensor, p: LIFParameters, dt: float, detach_reset: bool
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Norse's Euler step given the jumped current: returns ``(z, v_new, i_decayed)``.

    ``detach_reset`` selects Norse's two resets: ``lif_step`` (recurrent) detaches the spike
    in ``v' = (1 - z) v + z v_reset``, ``lif_feed_forward_step`` keeps its surrogate gradient.
    """
    dv = dt * p.tau_mem_inv * ((p.v_leak - v) + i_jump)
    v_decayed = v + dv
    di = -dt * p.tau_syn_inv * i_jump
    i_decayed = i_jump + di
    z_new = threshold(v_decayed - p.v_th, p.method, p.alpha)
    z_reset = z_new.detach() if detach_reset else z_new
    v_new = (1 - z_reset) * v_decayed + z_reset * p.v_reset
    return z_new, v_new, i_decayed


def delayed_lif_step(
    input_spikes: torch.Tensor,
    state: DelayedLIFState,
    input_weights: torch.Tensor,
    recurrent_weights: torch.Tensor,
    delays: torch.Tensor,
    p: LIFParameters,
    dt: float = 0.001,
    max_delay: int = 1,
    delay_type: str = "axonal",
    sigma: float = 0.0,
    interpolation: str = "triangle",
) -> Tuple[torch.Tensor, DelayedLIFState]:
    """One Euler step of a LIF layer whose recurrent connections carry delays.

    The argument order follows :func:`norse.torch.functional.lif.lif_step`, with the delay
    arguments appended.

    Parameters
    ----------
    input_spikes : torch.Tensor
        ``(B, I)``.
    state : DelayedLIFState
        ``state.past`` must hold at least ``max_delay + ceil(1 + sigma) - 1`` steps.
    input_weights : torch.Tensor
        ``(N, I)``.
    recurrent_weights : torch.Tensor
        ``(N, N)``.
    delays : torch.Tensor
        ``(N,)`` axonal or ``(N, N)`` synaptic recurrent delays in steps.
    p : norse.torch.LIFParameters
    dt : float
        Integration step (s).
    max_delay : int
    delay_type : {"axonal", "synaptic"}
    sigma : float
    interpolation : {"triangle", "round"}

    Returns
    -------
    z : torch.Tensor
        ``(B, N)`` spikes.
    state : DelayedLIFState

    Examples
    --------
    >>> from norse.torch import LIFParameters
    >>> st = DelayedLIFState(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2),
    ...                      torch.zeros(3, 1, 2))
    >>> z, st = delayed_lif_step(torch.ones(1, 1), st, torch.full((2, 1), 20.0),
    ...                          torch.zeros(2, 2), torch.ones(2), LIFParameters(), max_delay=3)
    >>> z
    tensor([[1., 1.]])
    """
    if delay_type not in ("axonal", "synaptic"):
        raise ValueError(f"delay_type: expected one of ['axonal', 'synaptic'], got {delay_type!r}")
    r = _banded_current(state.past, recurrent_weights, delays, max_delay, delay_type, sigma,
                        interpolation)
    K = tap_range_unchecked(max_delay, float(sigma), 1)[1]
    return _step_with_current(input_spikes, state, input_weights, r, p, dt, K)


def _step_with_taps(
    input_spikes: torch.Tensor,
    state: DelayedLIFState,
    input_weights: torch.Tensor,
    recurrent_weights: torch.Tensor,
    taps: torch.Tensor,
    p: LIFParameters,
    dt: float,
    delay_type: str,
) -> Tuple[torch.Tensor, DelayedLIFState]:
    """:func:`delayed_lif_step` given the full ``(N, K)`` / ``(N, N, K)`` taps: the reference
    formula the banded steps are tested against (the modules read the band, see
    :func:`_step_with_band`)."""
    r = _recurrent_from_taps(state.past, recurrent_weights, taps, delay_type)
    return _step_with_current(input_spikes, state, input_weights, r, p, dt, taps.shape[-1])


def _step_with_band(
    input_spikes: torch.Tensor,
    state: DelayedLIFState,
    input_weights: torch.Tensor,
    recurrent_weights: torch.Tensor,
    band: _RecurrentBand,
    p: LIFParameters,
    dt: float,
    delay_type: str,
) -> Tuple[torch.Tensor, DelayedLIFState]:
    """:func:`delayed_lif_step` given the band of the taps (built once per call by the
    modules); same numbers and gradients."""
    state = state._replace(past=fit_history(state.past, band.K))
    r = _current_from_band(state.past, recurrent_weights, band, delay_type)
    return _step_with_current(input_spikes, state, input_weights, r, p, dt, band.K)


def _step_with_current(
    input_spikes: torch.Tensor,
    state: DelayedLIFState,
    input_weights: torch.Tensor,
    r: torch.Tensor,
    p: LIFParameters,
    dt: float,
    K: int,
) -> Tuple[torch.Tensor, DelayedLIFState]:
    """The LIF update of :func:`delayed_lif_step` given the recurrent current ``r``; the
    history is fitted to ``K`` steps."""
    i_jump = state.i + F.linear(input_spikes, input_weights) + r
    z_new, v_new, i_decayed = _lif_update(i_jump, state.v, p, dt, detach_reset=True)
    past = torch.cat([fit_history(state.past, K)[1:], z_new.to(state.past.dtype).unsqueeze(0)], 0)
    return z_new, DelayedLIFState(z_new, v_new, i_decayed, past)


def delayed_lif_feed_forward_step(
    input_tensor: torch.Tensor,
    state: DelayedLIFFeedForwardState,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    p: LIFParameters,
    dt: float = 0.001,
    max_delay: int = 1,
    delay_type: str = "synaptic",
    sigma: float = 0.0,
    interpolation: str = "triangle",
) -> Tuple[torch.Tensor, DelayedLIFFeedForwardState]:
    """One Euler step of a LIF layer fed through a delayed linear map.

    The current jump is ``delayed_linear(x)`` (see
    :func:`snn_delays_ext.functional.delayed_linear`), then the step is Norse's
    :func:`~norse.torch.functional.lif.lif_feed_forward_step`, whose reset, unlike
    :func:`delayed_lif_step`'s, passes the spike's surrogate gradient on.

    Parameters
    ----------
    input_tensor : torch.Tensor
        ``(B, I)``.
    state : DelayedLIFFeedForwardState
    weight, bias : torch.Tensor
        ``(N, I)`` and ``(N,)`` or ``None``.
    delays : torch.Tensor
        ``(N, I)`` synaptic, ``(I,)`` axonal or ``(N,)`` dendritic delays in steps.
    p : norse.torch.LIFParameters
    dt : float
    max_delay : int
    delay_type : {"synaptic", "axonal", "dendritic"}
    sigma : float
    interpolation : {"triangle", "round"}

    Returns
    -------
    z : torch.Tensor
        ``(B, N)``.
    state : DelayedLIFFeedForwardState

    Examples
    --------
    >>> from norse.torch import LIFParameters
    >>> st = DelayedLIFFeedForwardState(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(0, 1, 1))
    >>> z, st = delayed_lif_feed_forward_step(torch.ones(1, 1), st, torch.full((1, 1), 20.0),
    ...     None, torch.zeros(1, 1), LIFParameters(), max_delay=2)
    >>> z
    tensor([[1.]])
    """
    y, past = delayed_linear(
        input_tensor.unsqueeze(0), weight, bias, delays, max_delay, delay_type, sigma,
        interpolation, state.past,
    )
    i_jump = state.i + y[0]
    z_new, v_new, i_decayed = _lif_update(i_jump, state.v, p, dt, detach_reset=False)
    return z_new, DelayedLIFFeedForwardState(v_new, i_decayed, past)
