"""The compiled path of the functional ops: delays as banded taps, then the custom ops.

Called by the functional entries (:func:`~snn_delays_ext.functional.delayed_linear`,
:func:`~snn_delays_ext.functional.recurrent_leaky_sequence`,
:func:`~snn_delays_ext.functional.leaky_sequence`,
:func:`~snn_delays_ext.functional.synaptic_sequence`) when
:mod:`snn_delays_ext.dispatch` chooses the kernels; arguments are checked by the caller.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .. import ops  # noqa: F401  (loads the extension: registers torch.ops.snn_delays_ext)
from .delayed_linear import fit_history
from .interpolation import tap_range_unchecked, banded_taps

__all__ = ["delayed_linear_compiled", "leaky_sequence_compiled", "recurrent_leaky_compiled",
           "synaptic_sequence_compiled"]

#: Kernel codes of the reset mechanisms (keep in sync with csrc/common.h).
RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
#: Added to a subtract / zero code: the reset happens once per spike (spikingjelly's convention).
RESET_ONCE = 3


def delayed_linear_compiled(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
    past: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`~snn_delays_ext.functional.delayed_linear` on the compiled ops: the same
    ``(y, new_past)``. A given ``past`` (fitted to the history length) is prepended to the
    delayed side of the input and its outputs dropped."""
    K = tap_range_unchecked(max_delay, sigma, 0)[1]
    start, vals = banded_taps(delays, max_delay, sigma, 0, interpolation)
    vals = vals.to(x.dtype)
    z = F.linear(x, weight) if delay_type == "dendritic" else x  # the side that is delayed
    if past is None:
        seq, first = z, 0
    else:
        seq, first = torch.cat([fit_history(past, K), z], 0), K
    new_past = fit_history(seq, K)
    seq = seq.contiguous()
    kernels = torch.ops.snn_delays_ext
    if delay_type == "axonal":
        return F.linear(kernels.delay_channels(seq, start, vals)[first:], weight, bias), new_past
    weight = weight.to(x.dtype)
    if delay_type == "dendritic":
        y = kernels.delay_channels(seq, start, vals)[first:]
    elif delay_type == "synaptic":
        y = kernels.synaptic_delay(seq, weight, start, vals)[first:]
    else:
        raise ValueError(f"delay_type: expected 'synaptic', 'axonal' or 'dendritic', got {delay_type!r}")
    return (y + bias if bias is not None else y), new_past


def recurrent_leaky_compiled(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    max_delay: int,
    delay_type: str = "axonal",
    sigma: float = 0.0,
    interpolation: str = "triangle",
    reset_mechanism: str = "subtract",
    surrogate: Tuple[int, float] = (0, 2.0),
    reset_delay: bool = True,
    detach_reset: bool = False,
    width: Optional[torch.Tensor] = None,
    recurrent_scale: Optional[torch.Tensor] = None,
    reset_convention: str = "snntorch",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """A delayed recurrent LIF layer over a whole sequence on the compiled op, from a zero
    state, with snnTorch's reset (``reset_delay=True``: one step after the spike; ``False``: in
    the spike's own step, the reset carrying the spike's surrogate gradient unless
    ``detach_reset``); ``surrogate`` is the ``(kind, param)`` pair of
    :func:`snn_delays_ext.surrogate.surrogate_spec`; ``width``, ``recurrent_scale`` and
    ``reset_convention`` as in
    :class:`~snn_delays_ext.functional.RecurrentLeakyParameters`. Returns the ``(T, B, N)``
    spikes and membranes (``beta`` is clamped to ``[0, 1]`` as in snnTorch)."""
    n = x.shape[-1]
    start, vals = banded_taps(delays, max_delay, sigma, 1, interpolation, width)
    beta_v = beta.to(x.dtype).clamp(0, 1).expand(n).contiguous()
    thr_v = threshold.to(x.dtype).expand(n).contiguous()
    code = RESET_CODES[reset_mechanism]
    if reset_convention == "spikingjelly" and not reset_delay and reset_mechanism != "none":
        code += RESET_ONCE  # reset once per spike, test on the charged membrane
    spk, mem, _, _ = torch.ops.snn_delays_ext.recurrent_lif(
        x.contiguous(), weight.to(x.dtype), None if bias is None else bias.to(x.dtype), start, vals.to(x.dtype),
        beta_v, thr_v, code, int(surrogate[0]), float(surrogate[1]),
        delay_type == "synaptic", bool(reset_delay), bool(detach_reset),
        None if recurrent_scale is None else recurrent_scale.detach().to(x.dtype).contiguous(),
    )
    return spk, mem


def reset_code(reset_mechanism: str, reset_delay: bool, reset_convention: str) -> int:
    """The kernels' reset code: :data:`RESET_CODES`, plus :data:`RESET_ONCE` for spikingjelly's
    reset once per spike (``reset_delay=False`` only; ``"none"`` stays ``"none"``)."""
    code = RESET_CODES[reset_mechanism]
    if reset_convention == "spikingjelly" and not reset_delay and reset_mechanism != "none":
        code += RESET_ONCE
    return code


def leaky_sequence_compiled(
    x: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    reset_mechanism: str = "subtract",
    surrogate: Tuple[int, float] = (0, 2.0),
    reset_delay: bool = True,
    detach_reset: bool = False,
    reset_convention: str = "snntorch",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's ``Leaky`` over a whole ``(T, B, N)`` sequence on the compiled op, from a zero
    membrane: :func:`~snn_delays_ext.functional.leaky_sequence`'s compiled path. ``surrogate``
    is the ``(kind, param)`` pair of :func:`snn_delays_ext.surrogate.surrogate_spec`; ``beta``
    (clamped to ``[0, 1]`` here, as snnTorch does) and ``threshold`` are scalars or ``(N,)``.
    Returns the ``(T, B, N)`` spikes and membranes in ``x``'s dtype."""
    n = x.shape[-1]
    beta_v = beta.to(x.dtype).clamp(0, 1).expand(n).contiguous()
    thr_v = threshold.to(x.dtype).expand(n).contiguous()
    spk, mem, _ = torch.ops.snn_delays_ext.leaky_sequence(
        x.contiguous(), beta_v, thr_v, reset_code(reset_mechanism, reset_delay, reset_convention),
        int(surrogate[0]), float(surrogate[1]), bool(reset_delay), bool(detach_reset))
    return spk, mem


def synaptic_sequence_compiled(
    x: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    reset_mechanism: str = "subtract",
    surrogate: Tuple[int, float] = (0, 2.0),
    reset_delay: bool = True,
    detach_reset: bool = False,
    reset_convention: str = "snntorch",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """snnTorch's ``Synaptic`` over a whole ``(T, B, N)`` sequence on the compiled op, from zero
    current and membrane: :func:`~snn_delays_ext.functional.synaptic_sequence`'s compiled path.
    ``surrogate`` as :func:`leaky_sequence_compiled`; ``alpha`` and ``beta`` (clamped to
    ``[0, 1]`` here, as snnTorch does) and ``threshold`` are scalars or ``(N,)``. Returns the
    ``(T, B, N)`` spikes, synaptic currents and membranes in ``x``'s dtype."""
    n = x.shape[-1]
    alpha_v, beta_v = (p.to(x.dtype).clamp(0, 1).expand(n).contiguous() for p in (alpha, beta))
    thr_v = threshold.to(x.dtype).expand(n).contiguous()
    spk, syn, mem, _ = torch.ops.snn_delays_ext.synaptic_sequence(
        x.contiguous(), alpha_v, beta_v, thr_v, reset_code(reset_mechanism, reset_delay, reset_convention),
        int(surrogate[0]), float(surrogate[1]), bool(reset_delay), bool(detach_reset))
    return spk, syn, mem
