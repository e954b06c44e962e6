"""Leaky integrate-and-fire neurons with an adaptive threshold (ALIF, Bellec et al. 2018).

snnTorch has no adaptive neuron, so the feed-forward training models get this one. It follows
snnTorch's ``Leaky`` step for step (subtractive reset by the detached spike of the previous
step, spike from the surrogate of ``mem - threshold``) and adds a threshold that rises with
every spike and decays back to 1::

    a[t]   = rho * a[t-1] + (1 - rho) * s[t-1]
    thr[t] = 1 + b * a[t]
    mem[t] = beta * mem[t-1] + I[t] - s[t-1] * thr[t-1]
    s[t]   = H(mem[t] - thr[t])

(the adaptation variable ``a`` is Bellec et al.'s ``(1 - rho)``-normalised trace, so ``b`` is the
threshold rise of a neuron that fires at every step). With ``b = 0`` it is snnTorch's ``Leaky``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .._checks import as_real, check_bool, check_int, check_nonneg_float

__all__ = ["AdaptiveLeaky"]


class AdaptiveLeaky(nn.Module):
    """A layer of adaptive-threshold LIF neurons run over a whole ``(T, B, H)`` input current.

    Parameters
    ----------
    size : int
        Number of neurons ``H``.
    beta : float or torch.Tensor
        Membrane decay, one number or one per neuron (shape ``(H,)``); clipped to ``[0, 1]`` in
        the forward pass, as snnTorch's ``Leaky``.
    adapt_decay : float
        Decay ``rho`` of the adaptation trace per step, in ``[0, 1]`` (``exp(-dt / tau_a)``).
    adapt_strength : float
        ``b`` >= 0: the threshold is ``1 + b a``.
    spike_grad : callable
        Spike function with a surrogate gradient, called on ``mem - thr`` (an snnTorch
        surrogate such as ``snntorch.surrogate.atan()``).
    learn_beta : bool
        Learn the decays (a parameter of shape ``(H,)``); otherwise they are a buffer.

    Examples
    --------
    >>> import torch
    >>> from snntorch import surrogate
    >>> alif = AdaptiveLeaky(1, beta=1.0, adapt_decay=0.5, adapt_strength=2.0,
    ...                      spike_grad=surrogate.atan())
    >>> spk, thr = alif(torch.full((6, 1, 1), 0.6), return_threshold=True)
    >>> spk.flatten().tolist()
    [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    >>> thr.flatten().tolist()  # 1 + 2 a: a = 0.5, 0.25, 0.125 after the first spike
    [1.0, 1.0, 2.0, 1.5, 1.25, 2.125]
    """

    def __init__(self, size: int, beta, adapt_decay: float, adapt_strength: float,
                 spike_grad: Callable[[torch.Tensor], torch.Tensor], learn_beta: bool = False) -> None:
        super().__init__()
        self.size = check_int("size", size, 1)
        check_bool("learn_beta", learn_beta)
        rho = as_real("adapt_decay", adapt_decay, "a number")
        if not 0.0 <= rho <= 1.0:  # False for NaN
            raise ValueError(f"adapt_decay: expected a number in [0, 1], got {adapt_decay!r}")
        self.adapt_decay = rho
        self.adapt_strength = check_nonneg_float("adapt_strength", adapt_strength)
        b = torch.as_tensor(beta, dtype=torch.get_default_dtype()).clone()
        if b.dim() == 0:
            b = b.expand(size).clone()
        if b.shape != (size,):
            raise ValueError(f"beta: expected a number or a tensor of shape ({size},), got shape {tuple(b.shape)}")
        if learn_beta:
            self.beta = nn.Parameter(b)
        else:
            self.register_buffer("beta", b)
        self.spike_grad = spike_grad

    def forward(self, cur: torch.Tensor, return_threshold: bool = False):
        """Spikes ``(T, B, H)`` for the input current ``cur`` ``(T, B, H)``, starting at rest
        (``mem = 0``, ``a = 0``); with ``return_threshold`` also the threshold at every step."""
        if cur.dim() != 3 or cur.shape[-1] != self.size:
            raise ValueError(f"cur: expected a (T, B, {self.size}) current, got shape {tuple(cur.shape)}")
        beta = self.beta.clamp(0.0, 1.0)
        rho, b = self.adapt_decay, self.adapt_strength
        mem = cur.new_zeros(cur.shape[1:])
        a = torch.zeros_like(mem)
        spk = torch.zeros_like(mem)
        thr = torch.ones_like(mem)
        spikes, thresholds = [], []
        for c in cur.unbind(0):
            reset = spk.detach()
            mem = beta * mem + c - reset * thr
            a = rho * a + (1.0 - rho) * reset
            thr = 1.0 + b * a
            spk = self.spike_grad(mem - thr).to(mem.dtype)  # snnTorch's spikes are float32
            spikes.append(spk)
            thresholds.append(thr)
        out = torch.stack(spikes)
        return (out, torch.stack(thresholds)) if return_threshold else out

    def extra_repr(self) -> str:
        return f"{self.size}, adapt_decay={self.adapt_decay:g}, adapt_strength={self.adapt_strength:g}"
