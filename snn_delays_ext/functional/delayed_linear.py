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

from .interpolation import delay_taps, tap_range

__all__ = ["DELAY_TYPES_FF", "delayed_linear", "history_length", "zero_history"]

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


def _fit_history(past: torch.Tensor, length: int) -> torch.Tensor:
    """Trim or zero-pad a chronological past to exactly ``length`` steps (oldest first)."""
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

    Returns
    -------
    y : torch.Tensor
        ``(T, B, out)``.
    new_past : torch.Tensor
        The last :func:`history_length` steps of the (delayed-side) input, oldest first, to pass
        as ``past`` with the next chunk of the sequence.

    Examples
    --------
    >>> x = torch.zeros(5, 1, 1); x[0, 0, 0] = 1.0
    >>> y, _ = delayed_linear(x, torch.ones(1, 1), None, torch.tensor([[2.0]]), max_delay=4)
    >>> y.flatten()
    tensor([0., 0., 1., 0., 0.])
    """
    T, B, _ = x.shape
    K = history_length(max_delay, sigma)
    taps = delay_taps(delays, max_delay, sigma, 0, interpolation)  # (..., K + 1), lags 0..K
    if delay_type == "dendritic":
        z = F.linear(x, weight)  # (T, B, out): the dendrite carries W x
    else:
        z = x
    if past is None:
        past = z.new_zeros((K, B, z.shape[-1]))
    else:
        past = _fit_history(past, K)
    seq = torch.cat([past, z], 0) if K > 0 else z
    new_past = seq[seq.shape[0] - K:] if K > 0 else seq[:0]
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
    return y, new_past
