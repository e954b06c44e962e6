"""Baselines for the benchmarks: a DelRec-style recurrent delayed LIF and a delay-free LIF.

``delrec_style_recurrent_leaky`` follows the cost structure of the published DelRec code
(Queant et al. 2025) as its paper and code describe it: a buffer of *currents*
``(B, N, L)`` holds what every neuron will receive at the next ``L`` steps; each step the new
spikes are spread over their future arrival steps by the interpolation mask and multiplied by
the recurrent weights, ``buffer += W @ (spikes x mask)``, and the buffer shifts by one step.
That is ``O(B N^2 L)`` work per step and autograd keeps the ``(B, N, L)`` product of every step
(about ``4 T B N L`` bytes in float32). It is written here from that description, independently
of :mod:`snn_delays_ext.functional` (its own tap weights, its own membrane update), with the
same math, so its numbers can be checked against the reference and timings compared.

``plain_recurrent_leaky`` is the same layer without delays (every recurrent spike arrives one
step later, as in ``snntorch.RLeaky``), the "no delay" baseline.

Neuron model (snnTorch ``RLeaky``, subtract reset, reset applied one step after the spike)::

    r_t   = b + sum_j w_ij sum_{k>=1} h_k(l_ij) s_j(t - k)
    m_t   = clamp(beta, 0, 1) m_{t-1} + x_t + r_t - H(m_{t-1} - theta) theta
    s_t   = spike_grad(m_t - theta)

with triangle taps ``h_k(l) = max(0, s - |k - l|) / s^2``, ``s = 1 + sigma``, lags
``k = 1 .. K``, ``K = max_delay + ceil(s) - 1``, delays clamped to ``[1, max_delay]``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["delrec_style_recurrent_leaky", "plain_recurrent_leaky", "triangle_mask"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def triangle_mask(delays: torch.Tensor, max_delay: int, sigma: float = 0.0) -> torch.Tensor:
    """Interpolation mask of recurrent delays over the lags ``1 .. K``.

    Parameters
    ----------
    delays : torch.Tensor
        Delays in steps, any shape ``S``; clamped to ``[1, max_delay]``.
    max_delay : int
        Largest delay.
    sigma : float
        Extra triangle half-width (``s = 1 + sigma``).

    Returns
    -------
    torch.Tensor
        ``S + (K,)``; entry ``[..., m]`` is the weight of lag ``m + 1``.

    Examples
    --------
    >>> triangle_mask(torch.tensor([1.5]), max_delay=3)
    tensor([[0.5000, 0.5000, 0.0000]])
    """
    s = 1.0 + float(sigma)
    K = int(max_delay) + int(math.ceil(s)) - 1
    lags = torch.arange(1, K + 1, dtype=delays.dtype, device=delays.device)
    d = delays.clamp(1.0, float(max_delay)).unsqueeze(-1)
    return (s - (lags - d).abs()).clamp_min(0.0) / (s * s)


def _check(x: torch.Tensor, weight: torch.Tensor) -> Tuple[int, int, int]:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected a (T, B, N) tensor, got {getattr(x, 'shape', type(x))}")
    T, B, N = x.shape
    if tuple(weight.shape) != (N, N):
        raise ValueError(f"weight: expected shape {(N, N)}, got {tuple(weight.shape)}")
    return T, B, N


def _lif_update(
    x: torch.Tensor, r: torch.Tensor, mem: torch.Tensor, beta: torch.Tensor,
    threshold: torch.Tensor, spike_grad: SpikeFn,
) -> Tuple[torch.Tensor, torch.Tensor]:
    reset = spike_grad(mem - threshold).detach()
    mem = beta.clamp(0, 1) * mem + x + r - reset * threshold
    return spike_grad(mem - threshold), mem


def delrec_style_recurrent_leaky(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    delays: torch.Tensor,
    beta: torch.Tensor,
    threshold: torch.Tensor,
    spike_grad: SpikeFn,
    max_delay: int,
    delay_type: str = "axonal",
    sigma: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Recurrent delayed LIF over a sequence, DelRec-style (current buffer ``(B, N, L)``).

    Parameters
    ----------
    x : torch.Tensor
        Input current ``(T, B, N)``.
    weight, bias : torch.Tensor
        Recurrent weights ``(N, N)`` (row = postsynaptic) and bias ``(N,)`` or ``None``.
    delays : torch.Tensor
        ``(N,)`` axonal or ``(N, N)`` synaptic delays in steps.
    beta, threshold : torch.Tensor
        Membrane decay and threshold (scalars or ``(N,)``).
    spike_grad : callable
        Spike function with a surrogate gradient, e.g. ``snntorch.surrogate.atan()``.
    max_delay : int
        Largest delay.
    delay_type : {"axonal", "synaptic"}
    sigma : float
        Extra triangle half-width.

    Returns
    -------
    spk, mem : torch.Tensor
        ``(T, B, N)`` spikes and membrane potentials, from a zero state.

    Examples
    --------
    >>> import torch, snntorch.surrogate as sg
    >>> x = torch.rand(20, 2, 8)
    >>> spk, mem = delrec_style_recurrent_leaky(
    ...     x, torch.randn(8, 8) * 0.3, None, torch.full((8,), 3.0), torch.tensor(0.5),
    ...     torch.tensor(1.0), sg.atan(), max_delay=5)
    >>> spk.shape
    torch.Size([20, 2, 8])
    """
    T, B, N = _check(x, weight)
    mask = triangle_mask(delays, max_delay, sigma)
    K = mask.shape[-1]
    if delay_type == "axonal":
        if tuple(delays.shape) != (N,):
            raise ValueError(f"delays: expected shape {(N,)} for axonal delays, got {tuple(delays.shape)}")

        def push(spk: torch.Tensor) -> torch.Tensor:
            # DelRec: W @ (spikes x mask) -> (B, N, K) currents of the next K steps
            return torch.matmul(weight, spk.unsqueeze(-1) * mask)
    elif delay_type == "synaptic":
        if tuple(delays.shape) != (N, N):
            raise ValueError(f"delays: expected shape {(N, N)} for synaptic delays, got {tuple(delays.shape)}")
        wm = (weight.unsqueeze(-1) * mask).permute(1, 0, 2).reshape(N, N * K)  # (pre, post*K)

        def push(spk: torch.Tensor) -> torch.Tensor:
            return (spk @ wm).view(B, N, K)
    else:
        raise ValueError(f"delay_type: expected 'axonal' or 'synaptic', got {delay_type!r}")
    beta = torch.as_tensor(beta, dtype=x.dtype, device=x.device)
    threshold = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    buf = x.new_zeros(B, N, K)  # buf[:, :, m] = current arriving m steps from now
    mem = x.new_zeros(B, N)
    spikes, mems = [], []
    for t in range(T):
        r = buf[:, :, 0] if bias is None else buf[:, :, 0] + bias
        spk, mem = _lif_update(x[t], r, mem, beta, threshold, spike_grad)
        spk = spk.to(x.dtype)
        spikes.append(spk)
        mems.append(mem)
        buf = F.pad(buf[:, :, 1:], (0, 1)) + push(spk)
    return torch.stack(spikes), torch.stack(mems)


def plain_recurrent_leaky(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    beta: torch.Tensor,
    threshold: torch.Tensor,
    spike_grad: SpikeFn,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Recurrent LIF without delays (recurrent spikes arrive at the next step).

    Same neuron as :func:`delrec_style_recurrent_leaky`; equals ``snntorch.RLeaky`` with
    ``reset_mechanism="subtract"`` and a dense recurrent ``nn.Linear``.

    Examples
    --------
    >>> import torch, snntorch.surrogate as sg
    >>> spk, mem = plain_recurrent_leaky(torch.rand(5, 2, 3), torch.zeros(3, 3), None,
    ...                                  torch.tensor(0.5), torch.tensor(1.0), sg.atan())
    >>> mem.shape
    torch.Size([5, 2, 3])
    """
    T, B, N = _check(x, weight)
    beta = torch.as_tensor(beta, dtype=x.dtype, device=x.device)
    threshold = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    mem = x.new_zeros(B, N)
    spk = x.new_zeros(B, N)
    spikes, mems = [], []
    for t in range(T):
        r = F.linear(spk, weight, bias)
        spk, mem = _lif_update(x[t], r, mem, beta, threshold, spike_grad)
        spk = spk.to(x.dtype)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)
