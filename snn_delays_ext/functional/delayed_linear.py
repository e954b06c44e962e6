"""Feed-forward delayed linear map over a time-first sequence (plain PyTorch).

.. math:: y_o(t) = b_o + \\sum_i w_{oi} \\sum_k h_k(l_{oi})\\, x_i(t - k)

for synaptic delays ``l`` of shape ``(out, in)``; axonal delays ``(in,)`` delay each input
channel before the weights; dendritic delays ``(out,)`` delay each output's weighted sum
``W x`` (the bias is not delayed). The past the sequence needs (``k_max`` earlier steps) is
passed in and the updated past is returned, so a step-by-step loop and one call on the whole
sequence give the same numbers.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_finite, check_operand
from ..dispatch import delayed_linear_backend
from .delay_line import DelayLine
from .interpolation import (
    INTERPOLATIONS,
    _check_delays_tensor,
    _check_range,
    _delay_taps,
    tap_range_unchecked,
    banded_taps,
    tap_range,
)

__all__ = ["DELAY_TYPES_FF", "delayed_linear", "fit_history", "history_length", "zero_history"]

#: Feed-forward delay kinds.
DELAY_TYPES_FF = ("synaptic", "axonal", "dendritic")


def history_length(max_delay: int, sigma: float) -> int:
    """Number of past steps a feed-forward delay buffer holds (``k_max`` of :func:`tap_range`).

    Examples
    --------
    >>> history_length(10, 0.0), history_length(10, 2.5)
    (10, 13)
    """
    return tap_range(max_delay, sigma, 0)[1]


def delay_shape(delay_type: str, in_features: int, out_features: int) -> Tuple[int, ...]:
    """Shape of the delay tensor of a feed-forward delay kind.

    Examples
    --------
    >>> delay_shape("synaptic", 3, 2), delay_shape("axonal", 3, 2), delay_shape("dendritic", 3, 2)
    ((2, 3), (3,), (2,))
    """
    return {
        "synaptic": (out_features, in_features),
        "axonal": (in_features,),
        "dendritic": (out_features,),
    }[delay_type]


def check_delayed_linear_args(
    x: object, weight: object, bias: object, delays: object, max_delay: object, delay_type: object,
    sigma: object, interpolation: object, past: object = None, *, ranks: Tuple[int, ...] = (3,),
) -> Tuple[int, float]:
    """Validate the arguments of :func:`delayed_linear` (and the compiled counterpart).

    Shapes, dtypes (all equal to ``x``'s), devices and the scalar arguments are always checked;
    the finiteness of ``x`` and ``delays`` as :func:`snn_delays_ext.set_validation` says.
    Returns ``(max_delay, sigma)`` as ``int`` and ``float``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in ranks:
        raise ValueError(
            f"x: expected a time-first sequence (T, B, in) of rank 3, got rank {x.dim()} with shape "
            f"{tuple(x.shape)} (add a time dimension with x.unsqueeze(0) for one step)"
        )
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    delay_type = check_choice("delay_type", delay_type, DELAY_TYPES_FF)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    max_delay, sigma, _ = _check_range(max_delay, sigma, 0)
    n_in = x.shape[-1]
    check_operand("weight", weight, (None, n_in), x, f"(out, in) with in = {n_in}, the last dimension of x")
    n_out = weight.shape[0]
    if bias is not None:
        check_operand("bias", bias, (n_out,), x, "(out,)")
    _check_delays_tensor("delays", delays)
    check_operand("delays", delays, delay_shape(delay_type, n_in, n_out), x, f"{delay_type} delays")
    if past is not None:
        f = n_out if delay_type == "dendritic" else n_in
        batch = x.shape[-2]
        side = " = out for dendritic delays" if delay_type == "dendritic" else " = in"
        check_operand("past", past, (None, batch, f), x, f"(P, B, F) with B = {batch} and F = {f}{side}")
    check_finite("x", x)  # type: ignore[arg-type]
    check_finite("delays", delays)  # type: ignore[arg-type]
    return max_delay, sigma


def zero_history(
    delay_type: str, batch: int, in_features: int, out_features: int, length: int,
    dtype: torch.dtype, device: torch.device,
) -> torch.Tensor:
    """An empty (all-zero) past of ``length`` steps, chronological, shape ``(length, B, F)``.

    ``F`` is ``out_features`` for dendritic delays (the buffer holds ``W x``), else
    ``in_features``.

    Examples
    --------
    >>> zero_history("dendritic", 2, 3, 5, 4, torch.float32, torch.device("cpu")).shape
    torch.Size([4, 2, 5])
    """
    f = out_features if delay_type == "dendritic" else in_features
    return torch.zeros(length, batch, f, dtype=dtype, device=device)


def fit_history(past: torch.Tensor, length: int) -> torch.Tensor:
    """Trim or zero-pad a chronological past ``(P, ...)`` to exactly ``length`` steps (oldest
    first: the oldest steps are dropped, or zeros are put before them).

    Examples
    --------
    >>> fit_history(torch.arange(3.0).view(3, 1), 5).flatten().tolist()
    [0.0, 0.0, 0.0, 1.0, 2.0]
    """
    have = past.shape[0]
    if have == length:
        return past
    if have > length:
        return past[have - length:]
    pad = past.new_zeros((length - have,) + tuple(past.shape[1:]))
    return torch.cat([pad, past], 0)


def _depthwise(seq: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Delay each channel of a padded sequence ``(L, B, C)`` by its own taps ``(C, K)``.

    Returns ``(L - K + 1, B, C)``: output step ``t`` is ``sum_k taps[c, k] * seq[t + K - 1 - k]``.
    """
    L, B, C = seq.shape
    inp = seq.permute(1, 2, 0)  # (B, C, L)
    w = taps.flip(-1).unsqueeze(1)  # (C, 1, K), flipped: conv1d correlates
    out = F.conv1d(inp, w.to(inp.dtype), groups=C)
    return out.permute(2, 0, 1)


def delayed_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    max_delay: int,
    delay_type: str = "synaptic",
    sigma: float = 0.0,
    interpolation: str = "triangle",
    past: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Apply a delayed linear map to a sequence.

    Parameters
    ----------
    x : torch.Tensor
        Input ``(T, B, in)``.
    weight : torch.Tensor
        ``(out, in)``.
    bias : torch.Tensor or None
        ``(out,)``.
    delays : torch.Tensor
        ``(out, in)`` synaptic, ``(in,)`` axonal or ``(out,)`` dendritic, in time steps.
    max_delay : int
        Largest delay; delays are clamped to ``[0, max_delay]``.
    delay_type : {"synaptic", "axonal", "dendritic"}
        Which kind ``delays`` holds.
    sigma : float
        Extra triangle half-width (``s = 1 + sigma``).
    interpolation : {"triangle", "round"}
        See :func:`~snn_delays_ext.functional.delay_taps`.
    past : torch.Tensor, optional
        The previous steps ``(P, B, F)``, oldest first (``F = out`` for dendritic delays, else
        ``in``); ``None`` means silence before ``t = 0``. Trimmed or zero-padded on the old end
        to the length the current ``sigma`` needs.
    backend : {"auto", "compiled", "reference"}
        Which implementation runs (:func:`snn_delays_ext.dispatch.delayed_linear_backend`):
        the compiled kernels where they exist for the input (``"auto"``), the kernels or an
        error (``"compiled"``), or plain PyTorch (``"reference"``, the oracle of the tests).
        Same numbers and gradients.

    Returns
    -------
    y : torch.Tensor
        ``(T, B, out)``.
    new_past : torch.Tensor
        The last :func:`history_length` steps of the (delayed-side) input, oldest first, to pass
        as ``past`` with the next chunk of the sequence.

    Raises
    ------
    TypeError, ValueError
        An argument of the wrong type, shape (``delays`` must have the shape of
        ``delay_type``; no broadcasting), dtype (all tensors must share ``x``'s), device or
        value (``max_delay`` an int >= 1, ``sigma`` a finite float >= 0, finite ``x`` and
        ``delays`` unless :func:`snn_delays_ext.set_validation` turned that off).

    Examples
    --------
    >>> x = torch.zeros(5, 1, 1); x[0, 0, 0] = 1.0
    >>> y, _ = delayed_linear(x, torch.ones(1, 1), None, torch.tensor([[2.0]]), max_delay=4)
    >>> y.flatten()
    tensor([0., 0., 1., 0., 0.])
    """
    max_delay, sigma = check_delayed_linear_args(
        x, weight, bias, delays, max_delay, delay_type, sigma, interpolation, past)
    return run_delayed_linear(x, weight, bias, delays, max_delay, delay_type, sigma, interpolation, past, backend)


def run_delayed_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
    past: Optional[torch.Tensor] = None,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`delayed_linear` without argument checks (for callers that validated them): the
    one place where the delayed linear map chooses its implementation."""
    choice = delayed_linear_backend(x, delay_type, max_delay, sigma, interpolation, weight, bias, delays,
                                    backend=backend)
    if choice.backend == "compiled":
        from ._compiled import delayed_linear_compiled

        return delayed_linear_compiled(x, weight, bias, delays, max_delay, delay_type, sigma, interpolation, past)
    return _delayed_linear_reference(x, weight, bias, delays, max_delay, delay_type, sigma, interpolation, past)


def _delayed_linear_reference(
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
    """The plain-PyTorch delayed linear map (arguments not checked)."""
    T, B, _ = x.shape
    K = tap_range_unchecked(max_delay, sigma, 0)[1]
    taps = _delay_taps(delays, max_delay, sigma, 0, interpolation)  # (..., K + 1), lags 0..K
    if delay_type == "dendritic":
        z = F.linear(x, weight)  # (T, B, out): the dendrite carries W x
    else:
        z = x
    if past is None:
        past = z.new_zeros((K, B, z.shape[-1]))
    else:
        past = fit_history(past, K)
    seq = torch.cat([past, z], 0) if K > 0 else z
    new_past = seq[seq.shape[0] - K:] if K > 0 else seq[:0]
    if T == 0:
        # no output step: run the maps on one extra leading zero step (keeps the graph, so
        # gradients are zeros rather than missing) and drop its output
        seq = torch.cat([seq.new_zeros((1,) + tuple(seq.shape[1:])), seq], 0)
    if delay_type == "axonal":
        xd = _depthwise(seq, taps)
        y = F.linear(xd, weight, bias)
    elif delay_type == "dendritic":
        y = _depthwise(seq, taps)
        if bias is not None:
            y = y + bias
    elif delay_type == "synaptic":
        kernel = (weight.unsqueeze(-1) * taps).flip(-1)  # (out, in, K + 1)
        y = F.conv1d(seq.permute(1, 2, 0), kernel, bias).permute(2, 0, 1)
    else:
        raise ValueError(f"delay_type: expected one of {list(DELAY_TYPES_FF)}, got {delay_type!r}")
    if T == 0:
        y = y[:0]
    return y, new_past


# ----------------------------------------------------------------------------------------------
# one step from a buffer: only the non-zero band of taps (2 ceil(s) lags per delay)
# ----------------------------------------------------------------------------------------------
#: Elements of the gathered ``(out, in, W, B)`` block the synaptic step builds at once.
_STEP_CHUNK = 1 << 22


def history_rows(start: torch.Tensor, width: int, n_rows: int, first_lag: int) -> torch.Tensor:
    """Rows of a history buffer (``n_rows`` steps, oldest first, the last one ``first_lag``
    steps ago) holding the band lags ``start + w``, ``w < width``: ``row = n_rows - 1 -
    (lag - first_lag)``. Lags outside the buffer carry zero taps; they read any row (clamped)."""
    with torch.no_grad():
        lags = start.unsqueeze(-1) + torch.arange(width, device=start.device)
        return (n_rows - 1 + first_lag - lags).clamp_(0, n_rows - 1)


def _synaptic_gather(rows: torch.Tensor, flat: torch.Tensor, o0: int, o1: int) -> torch.Tensor:
    """``G[o, i, w, b] = seq[idx[o, i, w], b, i]`` for outputs ``o0 <= o < o1``, from the
    buffer as rows ``rows[i * L + l] = seq[l, :, i]`` and ``flat = i * L + idx``."""
    part = flat[o0:o1]
    return rows.index_select(0, part.reshape(-1)).view(tuple(part.shape) + (rows.shape[1],))


def _flat_index(seq: torch.Tensor, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The buffer as contiguous rows ``(in * L, B)`` and the band's row indices ``(out, in, W)``."""
    L, B, n_in = seq.shape
    rows = seq.permute(2, 0, 1).reshape(n_in * L, B)
    offset = torch.arange(n_in, device=seq.device).view(1, n_in, 1) * L
    return rows, idx + offset


def _out_chunk(seq: torch.Tensor, idx: torch.Tensor) -> int:
    per_out = max(1, idx.shape[1] * idx.shape[2] * seq.shape[1])
    return max(1, _STEP_CHUNK // per_out)


def _use_gather(seq: torch.Tensor, idx: torch.Tensor) -> bool:
    """Gather the band per batch element (``B * W`` reads per synapse) or scatter it into a
    dense ``(out, K + 1, in)`` kernel for one matrix product (``K + 1`` entries per synapse, but
    matrix-product speed): the first wins for small batches and long delays."""
    return 3 * seq.shape[1] * idx.shape[2] <= seq.shape[0]


def _dense_kernel(idx: torch.Tensor, coef: torch.Tensor, length: int) -> torch.Tensor:
    """``kern[o, l, i] = sum_w coef[o, i, w] [idx[o, i, w] == l]``, shape ``(out, L, in)``."""
    n_out, n_in, _ = idx.shape
    kern = coef.new_zeros((n_out, length, n_in))
    return kern.scatter_add(1, idx.permute(0, 2, 1), coef.permute(0, 2, 1))


class SynapticStep(torch.autograd.Function):
    """``y[b, o] = sum_{i, w} coef[o, i, w] * seq[idx[o, i, w], b, i]`` (one step of synaptic
    delays from the buffer ``seq`` of shape ``(L, B, in)``).

    Saves only its inputs (the buffer, the band's indices and coefficients), neither the
    gathered ``(out, in, W, B)`` block nor a dense kernel; the backward rebuilds what it needs
    and is written with differentiable operations, so double backward works.
    """

    @staticmethod
    def forward(seq: torch.Tensor, idx: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        L, B, n_in = seq.shape
        n_out = idx.shape[0]
        if B == 0:  # an empty batch: an empty output (the gather's reshape cannot infer B)
            return seq.new_zeros((0, n_out))
        if not _use_gather(seq, idx):
            kern = _dense_kernel(idx, coef, L).reshape(n_out, L * n_in)
            return seq.transpose(0, 1).reshape(B, L * n_in) @ kern.t()
        rows, flat = _flat_index(seq, idx)
        step = _out_chunk(seq, idx)
        parts = []
        for o0 in range(0, n_out, step):
            g = _synaptic_gather(rows, flat, o0, o0 + step)  # (o, in, W, B)
            c = coef[o0:o0 + step]
            o = c.shape[0]
            parts.append(torch.bmm(c.reshape(o, 1, -1), g.view(o, -1, B)).view(o, B))
        y = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
        return y.t()

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        seq, idx, coef = inputs
        ctx.save_for_backward(seq, idx, coef)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):  # type: ignore[override]
        seq, idx, coef = ctx.saved_tensors
        L, B, n_in = seq.shape
        n_out = idx.shape[0]
        grad_seq = grad_coef = None
        if not _use_gather(seq, idx):
            if ctx.needs_input_grad[0]:
                kern = _dense_kernel(idx, coef, L).reshape(n_out, L * n_in)
                grad_seq = (grad_y @ kern).view(B, L, n_in).transpose(0, 1)
            if ctx.needs_input_grad[2]:
                gk = (grad_y.t() @ seq.transpose(0, 1).reshape(B, L * n_in)).view(n_out, L, n_in)
                grad_coef = gk.gather(1, idx.permute(0, 2, 1)).permute(0, 2, 1)
            return grad_seq, None, grad_coef
        rows, flat = _flat_index(seq, idx)
        if ctx.needs_input_grad[0]:
            # grad_seq[idx[o, i, w], b, i] += coef[o, i, w] * grad_y[b, o]
            contrib = coef.unsqueeze(-1) * grad_y.t().reshape(-1, 1, 1, B)  # (out, in, W, B)
            g = seq.new_zeros((n_in * L, B)).index_add(0, flat.reshape(-1), contrib.reshape(-1, B))
            grad_seq = g.view(n_in, L, B).permute(1, 2, 0)
        if ctx.needs_input_grad[2]:
            step = _out_chunk(seq, idx)
            gy = grad_y.t().contiguous()  # (out, B)
            parts = []
            for o0 in range(0, n_out, step):
                g = _synaptic_gather(rows, flat, o0, o0 + step)  # (o, in, W, B)
                o = g.shape[0]
                parts.append(torch.bmm(g.view(o, -1, B), gy[o0:o0 + step].unsqueeze(-1)))
            grad_coef = (parts[0] if len(parts) == 1 else torch.cat(parts, 0)).view(coef.shape)
        return grad_seq, None, grad_coef


def delayed_linear_step(
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
    """One step ``(B, in)`` of :func:`delayed_linear` (same numbers and gradients as a ``T = 1``
    call). Only the ``W = 2 ceil(s)`` non-zero taps of each delay are computed (the full tap
    vectors over ``max_delay + 1`` lags, with their autograd graph, made a step cost
    ``O(out * in * max_delay)`` elementwise work). Axonal and dendritic delays gather their band
    from the buffer; synaptic ones gather it (``O(B * out * in * W)``) or, for larger batches,
    scatter it into a dense kernel for one matrix product. Arguments are not checked. Returns
    ``y (B, out)`` and the new past.
    """
    B = x.shape[0]
    K = tap_range_unchecked(max_delay, sigma, 0)[1]
    start, vals = banded_taps(delays, max_delay, sigma, 0, interpolation)
    vals = vals.to(x.dtype)
    z = F.linear(x, weight) if delay_type == "dendritic" else x
    if past is None:
        past = z.new_zeros((K, B, z.shape[-1]))
    else:
        past = fit_history(past, K)
    seq = torch.cat([past, z.unsqueeze(0)], 0)  # (K + 1, B, F): seq[K - k] is k steps ago
    new_past = seq[1:]
    idx = history_rows(start, vals.shape[-1], K + 1, 0)
    if delay_type == "synaptic":
        y = SynapticStep.apply(seq, idx, weight.unsqueeze(-1) * vals)
        return (y + bias if bias is not None else y), new_past
    # axonal / dendritic: one delay per channel c; gathered[b, c, w] = seq[idx[c, w], b, c]
    gathered = torch.gather(seq.permute(1, 2, 0), 2, idx.unsqueeze(0).expand(B, -1, -1))
    delayed = (gathered * vals).sum(-1)
    if delay_type == "axonal":
        return F.linear(delayed, weight, bias), new_past
    return (delayed + bias if bias is not None else delayed), new_past


def delayed_linear_line_step(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    max_delay: int,
    delay_type: str,
    sigma: float,
    interpolation: str,
    line: DelayLine,
) -> torch.Tensor:
    """:func:`delayed_linear_step` on a :class:`~snn_delays_ext.functional.delay_line.DelayLine`
    that holds the past of the delayed side: the step pushes its row and reads the band of every
    delay, in ``O(B F W)`` (axonal, dendritic) or ``O(B out in W)`` (synaptic) whatever
    ``max_delay`` is. Same numbers and gradients as the history-buffer step. Arguments are not
    checked; returns ``y (B, out)``."""
    start, vals = banded_taps(delays, max_delay, sigma, 0, interpolation)
    vals = vals.to(x.dtype)
    line.push(F.linear(x, weight) if delay_type == "dendritic" else x)
    if delay_type == "synaptic":
        y = line.read_connections(start, weight.unsqueeze(-1) * vals, 0)
        return y + bias if bias is not None else y
    delayed = line.read_channels(start, vals, 0)
    if delay_type == "axonal":
        return F.linear(delayed, weight, bias)
    return delayed + bias if bias is not None else delayed
