"""Leaky integrate-and-fire neurons with delayed recurrent connections (plain PyTorch).

snnTorch's ``RLeaky`` convention, with the recurrent spikes read through interpolated delays:

.. math::

    r_t &= b + \\sum_j w_{ij} \\sum_{k \\ge 1} h_k(l_{ij})\\, s_j(t - k) \\\\
    m_t &= \\beta m_{t-1} + x_t + r_t - R_t \\\\
    s_t &= \\Theta(m_t - \\vartheta)

where ``R_t`` is the reset (``reset_mechanism="subtract"``: ``H(m_{t-1} - theta) * theta``;
``"zero"``: ``H(m_{t-1} - theta) * (beta m_{t-1} + x_t + r_t)``; ``"none"``: 0) and ``Theta`` is
the spike function whose backward is a surrogate derivative. Axonal delays ``(N,)`` delay each
presynaptic neuron's spikes before the recurrent weights; synaptic delays ``(N, N)`` delay every
connection.

The state is a :class:`RecurrentLeakyState`: the membrane and the last ``K`` spike vectors
(``K = max_delay + ceil(1 + sigma) - 1``), oldest first, so ``past[-1]`` is the previous step's
spikes.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_finite, check_operand
from ..dispatch import Choice, recurrent_leaky_backend
from ..surrogate import surrogate_spec_constant
from .delay_line import DelayLine
from .delayed_linear import history_rows, SynapticStep
from .interpolation import INTERPOLATIONS, _check_delays_tensor, _check_range, _delay_taps, banded_taps, tap_range, \
    tap_range_unchecked

__all__ = [
    "DELAY_TYPES_RECURRENT",
    "RESET_CONVENTIONS",
    "RESET_MECHANISMS",
    "RecurrentLeakyParameters",
    "RecurrentLeakyState",
    "recurrent_history_length",
    "check_recurrent_leaky_args",
    "recurrent_leaky_choice",
    "recurrent_leaky_step",
    "recurrent_leaky_sequence",
    "run_recurrent_leaky_line_step",
    "run_recurrent_leaky_sequence",
    "run_recurrent_leaky_step",
]

DELAY_TYPES_RECURRENT = ("axonal", "synaptic")
RESET_MECHANISMS = ("subtract", "zero", "none")


def recurrent_delay_shape(delay_type: str, n: int) -> Tuple[int, ...]:
    """Shape of the delay tensor of a recurrent layer of ``n`` neurons.

    One delay per presynaptic neuron (``"axonal"``) or per connection (``"synaptic"``, indexed
    ``[post, pre]`` as the recurrent weight).

    Examples
    --------
    >>> recurrent_delay_shape("axonal", 3), recurrent_delay_shape("synaptic", 3)
    ((3,), (3, 3))
    """
    if delay_type not in DELAY_TYPES_RECURRENT:
        raise ValueError(f"delay_type: expected one of {list(DELAY_TYPES_RECURRENT)}, got {delay_type!r}")
    return (n,) if delay_type == "axonal" else (n, n)


class RecurrentLeakyParameters(NamedTuple):
    """Neuron parameters of :func:`recurrent_leaky_step` (snnTorch ``RLeaky`` semantics).

    Parameters
    ----------
    beta : torch.Tensor
        Membrane decay, clamped to ``[0, 1]`` when used (scalar or ``(N,)``).
    threshold : torch.Tensor
        Firing threshold (scalar or ``(N,)``).
    spike_grad : callable
        Spike function, e.g. ``snntorch.surrogate.atan()``: Heaviside forward, surrogate
        derivative backward.
    reset_mechanism : str
        ``"subtract"``, ``"zero"`` or ``"none"``.
    reset_delay : bool
        ``True`` (snnTorch's default): a spike resets the membrane at the next step;
        ``False``: in the same step.
    graded_spikes_factor : float or torch.Tensor
        Spikes are ``graded_spikes_factor`` instead of 1 (snnTorch's ``graded_spikes_factor``
        buffer): the layer's output and the recurrent input are scaled, the reset is not.
    state_quant : callable, optional
        Applied to the membrane after each update, before the spike (snnTorch's
        ``state_quant``, e.g. ``snntorch.functional.quant.state_quant``).
    inhibition : bool
        Only the neuron with the highest membrane of each sample may spike in a step
        (snnTorch's ``inhibition``).
    detach_reset : bool
        With ``reset_delay=False``: the same-step reset carries no gradient (``False``,
        snnTorch's: the membrane is reset with the spike and its surrogate derivative). The
        reset one step later (``reset_delay=True``) never carries one, as in snnTorch.
    reset_convention : {"snntorch", "spikingjelly"}
        With ``reset_delay=False``: ``"snntorch"`` (snnTorch's ``reset_delay=False``: a
        membrane still above threshold after its reset is reset again before the next
        threshold test) or ``"spikingjelly"`` (spikingjelly's LIF, DelRec's neuron: each spike
        resets once, and the test sees the charged membrane). The two differ only under a drive
        strong enough to leave a membrane above threshold after a subtractive reset.
    recurrent_scale : torch.Tensor, optional
        ``(B, N)`` factors on each neuron's recurrent synaptic input (not on the bias) for the
        whole sequence: DelRec's recurrent dropout mask (0 or ``1 / (1 - p)``). No gradient.
    width : torch.Tensor, optional
        ``(N,)`` fractions in ``[0, 1]``, one per presynaptic neuron: the triangle of that
        neuron's delays has half-width ``s_j = 1 + sigma * width_j`` (DelRec's learnable width,
        ``width = sigmoid(p)``); ``None``: ``s = 1 + sigma`` for all. Differentiable.

    Examples
    --------
    >>> from snntorch import surrogate
    >>> p = RecurrentLeakyParameters(torch.tensor(0.9), torch.tensor(1.0), surrogate.atan())
    >>> p.reset_mechanism
    'subtract'
    """

    beta: torch.Tensor
    threshold: torch.Tensor
    spike_grad: Callable[[torch.Tensor], torch.Tensor]
    reset_mechanism: str = "subtract"
    reset_delay: bool = True
    graded_spikes_factor: Union[float, torch.Tensor] = 1.0
    state_quant: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    inhibition: bool = False
    detach_reset: bool = False
    recurrent_scale: Optional[torch.Tensor] = None
    width: Optional[torch.Tensor] = None
    reset_convention: str = "snntorch"


#: ``RecurrentLeakyParameters.reset_convention`` values.
RESET_CONVENTIONS = ("snntorch", "spikingjelly")


class RecurrentLeakyState(NamedTuple):
    """State of a delayed recurrent LIF layer.

    Parameters
    ----------
    mem : torch.Tensor
        Membrane potential ``(B, N)``.
    past : torch.Tensor
        The last ``K`` spike vectors ``(K, B, N)``, oldest first; ``past[-1]`` is the previous
        step's spikes.

    Examples
    --------
    >>> K = recurrent_history_length(max_delay=5, sigma=0.0)
    >>> state = RecurrentLeakyState(torch.zeros(2, 3), torch.zeros(K, 2, 3))
    >>> state.past.shape
    torch.Size([5, 2, 3])
    """

    mem: torch.Tensor
    past: torch.Tensor


def recurrent_history_length(max_delay: int, sigma: float) -> int:
    """Number of past spike vectors the recurrent buffer holds (``k_max`` of :func:`tap_range`).

    Examples
    --------
    >>> recurrent_history_length(10, 0.0), recurrent_history_length(10, 1.5)
    (10, 12)
    """
    return tap_range(max_delay, sigma, 1)[1]


def _membrane_update(
    x: torch.Tensor, r: torch.Tensor, mem: torch.Tensor, p: RecurrentLeakyParameters
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One snnTorch ``RLeaky`` membrane update given the recurrent input ``r``."""
    thr = p.threshold
    base = p.beta.clamp(0, 1) * mem + x + r
    if p.reset_mechanism != "none":
        if p.reset_convention == "spikingjelly" and not p.reset_delay:
            reset = torch.zeros_like(mem)  # each spike reset its membrane once, in its own step
        else:
            reset = p.spike_grad(mem - thr).detach().to(mem.dtype)
    if p.reset_mechanism == "subtract":
        new_mem = base - reset * thr
    elif p.reset_mechanism == "zero":
        new_mem = base - reset * base
    else:
        new_mem = base
    if p.state_quant is not None:
        new_mem = p.state_quant(new_mem)
    graded = p.graded_spikes_factor
    unit = isinstance(graded, (int, float)) and graded == 1.0
    if p.inhibition:
        # snnTorch's fire_inhibition: only each sample's largest membrane may fire, and (as
        # there) that spike is not scaled by graded_spikes_factor
        winner = torch.argmax(new_mem - thr, dim=1, keepdim=True)
        spk = p.spike_grad(new_mem - thr).to(mem.dtype)
        spk = spk * torch.zeros_like(spk).scatter_(1, winner, 1.0)
    else:  # snnTorch's fire: state_quant again (idempotent for its quantisers), then scaled
        fire_mem = p.state_quant(new_mem) if p.state_quant is not None else new_mem
        spk = p.spike_grad(fire_mem - thr).to(mem.dtype)
        spk = spk if unit else spk * graded
    if not p.reset_delay and p.reset_mechanism != "none":
        fired = spk.detach() if p.detach_reset else spk
        do_reset = (fired if unit else fired / graded) - reset
        if p.reset_mechanism == "subtract":
            new_mem = new_mem - do_reset * thr
        else:
            new_mem = new_mem - do_reset * new_mem
    return spk, new_mem


def recurrent_current(
    past: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    taps: torch.Tensor,
    delay_type: str,
) -> torch.Tensor:
    """Recurrent input ``r_t`` read from a spike history through precomputed taps.

    ``past`` is ``(K, B, N)``, oldest first; ``taps`` is ``(N, K)`` (axonal) or ``(N, N, K)``
    (synaptic) over lags ``1..K``. Returns ``(B, N)``.
    """
    by_lag = past.flip(0)  # by_lag[k - 1] = spikes k steps ago
    if delay_type == "axonal":
        # contiguous: F.linear on the einsum's transposed layout takes another BLAS path,
        # whose sums differ from the no-delay layer's in the last bits
        delayed = torch.einsum("jk,kbj->bj", taps, by_lag).contiguous()
        return F.linear(delayed, weight, bias)
    if delay_type == "synaptic":
        r = torch.einsum("ijk,kbj->bi", weight.unsqueeze(-1) * taps, by_lag)
        return r + bias if bias is not None else r
    raise ValueError(
        f"delay_type: expected one of {list(DELAY_TYPES_RECURRENT)}, got {delay_type!r}"
    )


def _taps(delays, max_delay, sigma, interpolation, width=None):
    return _delay_taps(delays, max_delay, sigma, 1, interpolation, width)


def _scaled(r: torch.Tensor, scale: Optional[torch.Tensor]) -> torch.Tensor:
    """The recurrent synaptic input ``r`` times the recurrent-dropout factors, if any."""
    return r if scale is None else r * scale


class _LagGather(torch.autograd.Function):
    """``g[w, b, j] = past[idx[w, j], b, j]`` from a spike history ``past`` ``(K, B, N)`` and
    band indices ``idx`` ``(W, N)``.

    Saves only the indices (``torch.gather`` would keep the whole history alive for its
    backward); the backward scatters with differentiable operations, so double backward works.
    """

    @staticmethod
    def forward(past: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        W, (_, B, N) = idx.shape[0], past.shape
        return torch.gather(past, 0, idx.unsqueeze(1).expand(W, B, N))

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        past, idx = inputs
        ctx.save_for_backward(idx)
        ctx.past_shape = tuple(past.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (idx,) = ctx.saved_tensors
        K, B, N = ctx.past_shape
        index = idx.unsqueeze(1).expand(idx.shape[0], B, N)
        return grad.new_zeros((K, B, N)).scatter_add(0, index, grad), None


class _RecurrentBand(NamedTuple):
    """The non-zero band of the recurrent taps, ready to read from a ``(K, B, N)`` history
    (built once per module call, then read every step by :func:`_current_from_band`).

    Axonal: ``idx`` ``(W, N)`` history rows and ``coef`` ``(W, 1, N)`` tap weights; synaptic:
    ``idx`` ``(N, N, W)`` history rows and ``coef`` ``(N, N, W)`` = weights times tap weights.
    ``K`` is the history length the rows index. ``kern``, synaptic only and optional (see the Norse
    module's ``_with_sequence_kernel``), is the band scattered into a dense ``(N, K N)`` kernel once
    for a whole sequence.
    """

    idx: torch.Tensor
    coef: torch.Tensor
    K: int
    kern: Optional[torch.Tensor] = None


def _recurrent_band(
    weight: torch.Tensor, delays: torch.Tensor, max_delay: int, delay_type: str, sigma: float,
    interpolation: str, dtype: torch.dtype, width: Optional[torch.Tensor] = None,
) -> _RecurrentBand:
    """The non-zero band of the recurrent taps of ``delays`` (see :class:`_RecurrentBand`);
    arguments unchecked."""
    K = tap_range_unchecked(max_delay, sigma, 1)[1]
    start, vals = banded_taps(delays, max_delay, sigma, 1, interpolation, width)
    vals = vals.to(dtype)
    idx = history_rows(start, vals.shape[-1], K, 1)  # past[K - k] is k steps ago
    if delay_type == "axonal":
        return _RecurrentBand(idx.t().contiguous(), vals.t().unsqueeze(1), K)
    return _RecurrentBand(idx, weight.unsqueeze(-1) * vals, K)


def _current_from_band(
    past: torch.Tensor, weight: torch.Tensor, band: _RecurrentBand, delay_type: str
) -> torch.Tensor:
    """``r_t`` ``(B, N)`` from a ``(K, B, N)`` history through a precomputed band: ``O(B N W)``
    plus a matrix product (axonal) or ``O(B N^2 W)`` (synaptic) per step, and autograd keeps
    the band (``(N, N, W)``, shared by all steps), no per-step ``(N, N, K)`` tensor (the
    optional sequence kernel of the Norse module's ``_with_sequence_kernel`` is one, shared by
    all steps)."""
    if delay_type == "axonal":
        delayed = (_LagGather.apply(past, band.idx) * band.coef).sum(0)
        return F.linear(delayed, weight)
    if band.kern is not None:  # the product SynapticStep's dense path computes, kernel reused
        K, B, N = past.shape
        return past.transpose(0, 1).reshape(B, K * N) @ band.kern.t()
    return SynapticStep.apply(past, band.idx, band.coef)


def banded_recurrent_current(
    past: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
    width: Optional[torch.Tensor] = None,
    scale: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """:func:`recurrent_current` with the taps of ``delays``, reading only their non-zero band.

    Same values (to float rounding) and gradients as building :func:`delay_taps` over lags
    ``1..K`` and summing over all of them, but a step costs ``O(B N W)`` (axonal) or
    ``O(N^2 W)`` plus ``O(B N^2 W)`` / one matrix product (synaptic) with ``W = 2 ceil(s)``,
    independent of ``max_delay``, and autograd keeps no ``(N, N, K)`` tensor. ``past`` must hold
    exactly ``K`` = :func:`recurrent_history_length` steps, oldest first. Arguments are not
    checked otherwise. ``width`` and ``scale`` are
    :class:`RecurrentLeakyParameters`' ``width`` and ``recurrent_scale``. Returns ``(B, N)``.
    """
    if delay_type not in DELAY_TYPES_RECURRENT:
        raise ValueError(
            f"delay_type: expected one of {list(DELAY_TYPES_RECURRENT)}, got {delay_type!r}"
        )
    K = tap_range_unchecked(max_delay, sigma, 1)[1]
    if past.dim() != 3 or past.shape[0] != K:
        raise ValueError(
            f"past: expected the last {K} spike vectors (K, B, N) for max_delay={max_delay} and "
            f"sigma={sigma}, got shape {tuple(past.shape)}"
        )
    band = _recurrent_band(weight, delays, max_delay, delay_type, sigma, interpolation, past.dtype, width)
    r = _scaled(_current_from_band(past, weight, band, delay_type), scale)
    return r + bias if bias is not None else r


def check_recurrent_leaky_args(
    x: object, state: object, weight: object, bias: object, delays: object, params: object, max_delay: object,
    delay_type: object, sigma: object, interpolation: object, *, step: bool,
) -> None:
    """Validate the arguments of :func:`recurrent_leaky_step` (``step=True``, ``x`` of shape
    ``(B, N)``) or :func:`recurrent_leaky_sequence` (``(T, B, N)``).

    Shapes, dtypes (those of ``x``; ``params.beta`` and ``params.threshold`` may be any floating
    dtype), devices, the state and the scalar arguments are always checked; the finiteness of
    ``x``, ``delays``, ``beta`` and ``threshold`` as :func:`snn_delays_ext.set_validation` says.
    Raises ``TypeError`` or ``ValueError`` naming the argument.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    rank, layout = (2, "(B, N) for one step") if step else (3, "a time-first sequence (T, B, N)")
    if x.dim() != rank:
        raise ValueError(f"x: expected {layout} of rank {rank}, got rank {x.dim()} with shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    delay_type = check_choice("delay_type", delay_type, DELAY_TYPES_RECURRENT)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    max_delay, sigma, _ = _check_range(max_delay, sigma, 1)  # type: ignore[arg-type]
    batch, n = x.shape[-2], x.shape[-1]
    check_operand("weight", weight, (n, n), x, f"(N, N) with N = {n}, the last dimension of x")
    if bias is not None:
        check_operand("bias", bias, (n,), x, "(N,)")
    _check_delays_tensor("delays", delays)
    check_operand("delays", delays, recurrent_delay_shape(delay_type, n), x, f"{delay_type} delays")
    if not isinstance(params, RecurrentLeakyParameters):
        raise TypeError(f"params: expected a RecurrentLeakyParameters, got {type(params).__name__}")
    _check_neuron_tensors(params, x, n)
    check_choice("params.reset_mechanism", params.reset_mechanism, RESET_MECHANISMS)
    check_choice("params.reset_convention", params.reset_convention, RESET_CONVENTIONS)
    if params.reset_convention == "spikingjelly" and params.reset_delay:
        raise ValueError("params.reset_convention: 'spikingjelly' resets in the spike's own step, which needs "
                         "reset_delay=False; got reset_delay=True")
    if params.recurrent_scale is not None:
        check_operand("params.recurrent_scale", params.recurrent_scale, (batch, n), x,
                      f"(B, N) = ({batch}, {n}), one factor per sample and neuron")
    if params.width is not None:
        check_operand("params.width", params.width, (n,), x, f"(N,) = ({n},), one per presynaptic neuron")
    if not callable(params.spike_grad):
        raise TypeError(f"params.spike_grad: expected a callable spike function, got "
                        f"{type(params.spike_grad).__name__}")
    if state is not None or step:
        if not isinstance(state, RecurrentLeakyState):
            raise TypeError(f"state: expected a RecurrentLeakyState, got {type(state).__name__}")
        K = recurrent_history_length(max_delay, sigma)
        check_operand("state.mem", state.mem, (batch, n), x, f"(B, N) = ({batch}, {n})")
        check_operand("state.past", state.past, (K, batch, n), x,
                      f"the last K = recurrent_history_length(max_delay, sigma) = {K} spike vectors")
    check_finite("x", x)
    check_finite("delays", delays)
    check_finite("params.beta", params.beta)
    check_finite("params.threshold", params.threshold)
    if params.width is not None:
        check_finite("params.width", params.width)


def recurrent_leaky_step(
    x: torch.Tensor,
    state: RecurrentLeakyState,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    params: RecurrentLeakyParameters,
    max_delay: int,
    delay_type: str = "axonal",
    sigma: float = 0.0,
    interpolation: str = "triangle",
) -> Tuple[torch.Tensor, RecurrentLeakyState]:
    """Advance a delayed recurrent LIF layer by one time step.

    The recurrent current reads only the non-zero band of each delay's taps (``2 ceil(s)``
    lags, see :func:`banded_taps`), so a step's cost and the tensors autograd keeps do not grow
    with ``max_delay`` (the numbers and gradients are those of the full :func:`delay_taps`).

    Parameters
    ----------
    x : torch.Tensor
        Input current ``(B, N)``.
    state : RecurrentLeakyState
        Membrane and spike history; ``state.past`` must hold
        :func:`recurrent_history_length` steps.
    weight, bias : torch.Tensor
        Recurrent weights ``(N, N)`` (row = postsynaptic) and bias ``(N,)`` or ``None``.
    delays : torch.Tensor
        ``(N,)`` axonal or ``(N, N)`` synaptic recurrent delays in steps, clamped to
        ``[1, max_delay]``.
    params : RecurrentLeakyParameters
        Neuron parameters.
    max_delay : int
        Largest delay.
    delay_type : {"axonal", "synaptic"}
    sigma : float
        Extra triangle half-width.
    interpolation : {"triangle", "round"}

    Returns
    -------
    spk : torch.Tensor
        Spikes ``(B, N)`` in the dtype of ``x``.
    state : RecurrentLeakyState
        The new state.

    Examples
    --------
    >>> from snntorch import surrogate
    >>> p = RecurrentLeakyParameters(torch.tensor(0.9), torch.tensor(1.0), surrogate.atan())
    >>> K = recurrent_history_length(4, 0.0)
    >>> state = RecurrentLeakyState(torch.zeros(1, 2), torch.zeros(K, 1, 2))
    >>> w, d = torch.eye(2), torch.tensor([1.0, 3.0])
    >>> spk, state = recurrent_leaky_step(torch.tensor([[1.5, 0.0]]), state, w, None, d, p, 4)
    >>> spk
    tensor([[1., 0.]])
    """
    check_recurrent_leaky_args(x, state, weight, bias, delays, params, max_delay, delay_type, sigma,
                               interpolation, step=True)
    return run_recurrent_leaky_step(x, state, weight, bias, delays, params, max_delay, delay_type, sigma,
                                    interpolation)


def run_recurrent_leaky_step(
    x: torch.Tensor,
    state: RecurrentLeakyState,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    params: RecurrentLeakyParameters,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
) -> Tuple[torch.Tensor, RecurrentLeakyState]:
    """:func:`recurrent_leaky_step` without argument checks (for callers that validated them,
    such as :class:`~snn_delays_ext.DelayedRecurrentLeaky`)."""
    # only the non-zero band of each delay's taps (lags 1..K, K = recurrent_history_length)
    r = banded_recurrent_current(
        state.past, weight, bias, delays, max_delay, delay_type, sigma, interpolation, params.width,
        params.recurrent_scale)
    spk, mem = _membrane_update(x, r, state.mem, params)
    past = torch.cat([state.past[1:], spk.unsqueeze(0)], 0)
    return spk, RecurrentLeakyState(mem, past)


def run_recurrent_leaky_line_step(
    x: torch.Tensor,
    mem: torch.Tensor,
    line: DelayLine,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    params: RecurrentLeakyParameters,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`recurrent_leaky_step` with the spike history in a
    :class:`~snn_delays_ext.functional.delay_line.DelayLine`: the recurrent current reads the
    band of every delay (lags >= 1) from the ring, then the step's spikes are pushed, so a step
    costs ``O(B N W)`` plus the weight product (axonal) or ``O(B N^2 W)`` (synaptic) whatever
    ``max_delay`` is. Same numbers and gradients as the history-buffer step. Arguments are not
    checked; returns ``(spk, mem)``."""
    start, vals = banded_taps(delays, max_delay, sigma, 1, interpolation, params.width)
    vals = vals.to(x.dtype)
    if delay_type == "axonal":
        r = F.linear(line.read_channels(start, vals, 1), weight)
    else:
        r = line.read_connections(start, weight.unsqueeze(-1) * vals, 1)
    r = _scaled(r, params.recurrent_scale)
    if bias is not None:
        r = r + bias
    spk, new_mem = _membrane_update(x, r, mem, params)
    line.push(spk)
    return spk, new_mem


def recurrent_leaky_sequence(
    x: torch.Tensor,
    state: Optional[RecurrentLeakyState],
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    params: RecurrentLeakyParameters,
    max_delay: int,
    delay_type: str = "axonal",
    sigma: float = 0.0,
    interpolation: str = "triangle",
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor, RecurrentLeakyState]:
    """Run a delayed recurrent LIF layer over a whole sequence ``x`` of shape ``(T, B, N)``.

    Same arguments as :func:`recurrent_leaky_step`; ``state=None`` starts from a zero membrane
    and a silent history. ``backend`` (``"auto"``, ``"compiled"`` or ``"reference"``) chooses
    the implementation (:func:`snn_delays_ext.dispatch.recurrent_leaky_backend`: the compiled
    op runs from a zero state with snnTorch's plain neuron and a known surrogate). The
    reference does not gather ``K`` past spike vectors every step: each new spike vector is
    pushed once into a buffer of the delayed presynaptic activity (axonal) or of the recurrent
    currents (synaptic) of the next ``K`` steps, so autograd keeps only ``O(T B N)`` tensors.

    Returns
    -------
    spk : torch.Tensor
        ``(T, B, N)`` spikes.
    mem : torch.Tensor
        ``(T, B, N)`` membrane potentials.
    state : RecurrentLeakyState
        State after the last step.

    Examples
    --------
    >>> from snntorch import surrogate
    >>> p = RecurrentLeakyParameters(torch.tensor(0.0), torch.tensor(0.5), surrogate.atan(), "zero")
    >>> K = recurrent_history_length(4, 0.0)
    >>> state = RecurrentLeakyState(torch.zeros(1, 1), torch.zeros(K, 1, 1))
    >>> x = torch.zeros(8, 1, 1); x[0] = 1.0
    >>> spk, mem, _ = recurrent_leaky_sequence(x, state, torch.ones(1, 1), None, torch.tensor([3.0]), p, 4)
    >>> spk.flatten()   # the self-connection re-excites the neuron every 3 steps
    tensor([1., 0., 0., 1., 0., 0., 1., 0.])
    """
    check_recurrent_leaky_args(x, state, weight, bias, delays, params, max_delay, delay_type, sigma,
                               interpolation, step=False)
    return run_recurrent_leaky_sequence(x, state, weight, bias, delays, params, max_delay, delay_type, sigma,
                                        interpolation, backend)


def run_recurrent_leaky_sequence(
    x: torch.Tensor,
    state: Optional[RecurrentLeakyState],
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    params: RecurrentLeakyParameters,
    max_delay: int,
    delay_type: str = "axonal",
    sigma: float = 0.0,
    interpolation: str = "triangle",
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor, RecurrentLeakyState]:
    """:func:`recurrent_leaky_sequence` without argument checks (for callers that validated
    them, such as :class:`~snn_delays_ext.DelayedRecurrentLeaky`)."""
    choice, spec = recurrent_leaky_choice(x, state, weight, bias, delays, params, backend)
    K = recurrent_history_length(max_delay, sigma)
    if choice.backend == "compiled":
        from ._compiled import recurrent_leaky_compiled

        spk_seq, mem_seq = recurrent_leaky_compiled(
            x, weight, bias, delays, params.beta, params.threshold, max_delay, delay_type, sigma,
            interpolation, params.reset_mechanism, spec, params.reset_delay, params.detach_reset, params.width,
            params.recurrent_scale, params.reset_convention)
        T, B, n = x.shape
        mem = mem_seq[-1] if T else x.new_zeros(B, n)
        past = torch.cat([x.new_zeros((K, B, n)), spk_seq], 0)[-K:] if K > 0 else x.new_zeros((0, B, n))
        return spk_seq, mem_seq, RecurrentLeakyState(mem, past)
    if state is None:
        state = RecurrentLeakyState(x.new_zeros(x.shape[1:]), x.new_zeros((K,) + tuple(x.shape[1:])))
    return _recurrent_leaky_reference(x, state, weight, bias, delays, params, max_delay, delay_type, sigma,
                                      interpolation)


def recurrent_leaky_choice(x: torch.Tensor, state: Optional[RecurrentLeakyState], weight: torch.Tensor,
                           bias: Optional[torch.Tensor], delays: torch.Tensor, params: RecurrentLeakyParameters,
                           backend: str = "auto") -> Tuple[Choice, Optional[Tuple[int, float]]]:
    """What :func:`recurrent_leaky_sequence` runs for these arguments (the
    :class:`~snn_delays_ext.dispatch.Choice`), and the kernel's surrogate ``(kind, param)``."""
    n = x.shape[-1]
    spec = surrogate_spec_constant(params.spike_grad)
    graded = params.graded_spikes_factor
    shapes_ok = all(isinstance(t, torch.Tensor) and t.numel() in (1, n) and t.dim() <= 1
                    for t in (params.beta, params.threshold))
    choice = recurrent_leaky_backend(
        x, zero_state=state is None,
        plain_neuron=not params.inhibition and params.state_quant is None and isinstance(graded, float)
        and graded == 1.0,
        surrogate_known=spec is not None, neuron_shapes_ok=shapes_ok,
        params=(weight, bias, delays) + tuple(t for t in (params.beta, params.threshold, params.width,
                                                          params.recurrent_scale) if isinstance(t, torch.Tensor)),
        backend=backend)
    return choice, spec


def _recurrent_leaky_reference(
    x: torch.Tensor,
    state: RecurrentLeakyState,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    params: RecurrentLeakyParameters,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
) -> Tuple[torch.Tensor, torch.Tensor, RecurrentLeakyState]:
    """The plain-PyTorch :func:`recurrent_leaky_sequence` from ``state``."""
    T = x.shape[0]
    taps = _taps(delays, max_delay, sigma, interpolation, params.width)
    scale = params.recurrent_scale
    K = taps.shape[-1]
    past = state.past
    by_lag = past.flip(0)
    if delay_type == "axonal":
        tapT = taps.transpose(0, 1)  # (K, N): row k - 1 = weight of lag k

        def contribution(s: torch.Tensor, first_lag: int) -> torch.Tensor:
            # what spikes s, emitted first_lag steps before "now", add to now + m, m = 0..
            return tapT[first_lag - 1:].unsqueeze(1) * s.unsqueeze(0)
    elif delay_type == "synaptic":
        wt = weight.unsqueeze(-1) * taps  # (N, N, K)

        def contribution(s: torch.Tensor, first_lag: int) -> torch.Tensor:
            return torch.einsum("ijm,bj->mbi", wt[..., first_lag - 1:], s)
    else:
        raise ValueError(
            f"delay_type: expected one of {list(DELAY_TYPES_RECURRENT)}, got {delay_type!r}"
        )
    # future[m] = delayed input (axonal) / current (synaptic) at step t + m from spikes before t
    batch = past.shape[1]
    width = weight.shape[0] if delay_type == "synaptic" else past.shape[2]
    future = x.new_zeros((K, batch, width))
    for p in range(1, K + 1):
        c = contribution(by_lag[p - 1], p)
        future = future + F.pad(c, (0, 0, 0, 0, 0, K - c.shape[0]))
    mem = state.mem
    spikes, mems = [], []
    zero_row = future.new_zeros((1,) + tuple(future.shape[1:]))
    for t in range(T):
        if delay_type == "axonal":
            # clone: a view of future[0] would keep the whole (K, B, N) buffer alive for backward
            if scale is None:
                r = F.linear(future[0].clone(), weight, bias)
            else:
                r = F.linear(future[0].clone(), weight) * scale
                r = r + bias if bias is not None else r
        else:
            r = _scaled(future[0], scale)
            r = r + bias if bias is not None else r
        spk, mem = _membrane_update(x[t], r, mem, params)
        spikes.append(spk)
        mems.append(mem)
        future = torch.cat([future[1:], zero_row], 0) + contribution(spk, 1)
    spk_seq = torch.stack(spikes, 0)
    mem_seq = torch.stack(mems, 0)
    new_past = torch.cat([past, spk_seq], 0)[-K:] if K > 0 else past
    return spk_seq, mem_seq, RecurrentLeakyState(mem, new_past)


def _check_neuron_tensors(params: NamedTuple, x: torch.Tensor, n: int,
                          names: Tuple[str, ...] = ("beta", "threshold")) -> None:
    """Check the fields ``names`` of ``params`` (``beta`` and ``threshold`` by default):
    floating-point tensors on ``x``'s device, each a scalar or one value per neuron (``(n,)``);
    raise a ``TypeError``/``ValueError`` naming the field otherwise."""
    for name in names:
        t = getattr(params, name)
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            got = f"dtype {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise TypeError(f"params.{name}: expected a floating-point torch.Tensor, got {got}")
        if t.dim() > 1 or t.numel() not in (1, n):
            raise ValueError(f"params.{name}: expected a scalar or a ({n},) tensor (one per neuron), "
                             f"got shape {tuple(t.shape)}")
        if t.device != x.device:
            raise ValueError(f"params.{name}: expected a tensor on {x.device} (the device of x), "
                             f"got one on {t.device}")
