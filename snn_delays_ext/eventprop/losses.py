"""Losses and training helpers of the EventProp-with-delays paper (Mészáros et al. 2025).

Spike-time losses follow the convention of :func:`~snn_delays_ext.eventprop.eventprop_lif`:
the gradient handed to a spike tensor is, at each spike, the sensitivity of the loss to that
spike's time (in steps).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import as_real, check_finite, check_nonneg_float, check_positive_float

__all__ = [
    "bump_silent_neurons_",
    "first_spike_time_loss",
    "first_spike_times",
    "relative_first_spike_loss",
    "loss_shaping_ce",
    "max_voltage_ce",
    "predict_first_spike",
]


def _check_seq(name: str, x: object, min_steps: int = 0) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name}: expected a (T, B, C) sequence of rank 3, got shape {tuple(x.shape)}")
    if x.shape[0] < min_steps:
        raise ValueError(f"{name}: expected at least {min_steps} time step(s) (T >= {min_steps}), "
                         f"got shape {tuple(x.shape)}")
    return x


def _check_voltages(mem: object) -> torch.Tensor:
    """A readout's voltages: a floating-point ``(T, B, C)`` sequence of at least one step."""
    mem = _check_seq("mem", mem, min_steps=1)
    if not mem.is_floating_point():
        raise TypeError(f"mem: expected a floating-point tensor (voltages), got dtype {mem.dtype}")
    return mem


def _check_time(name: str, value: object) -> float:
    """A finite real number (a time in steps) of either sign."""
    value = as_real(name, value, "a finite float (steps)")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite float (steps), got {value}")
    return value


def _check_target(target: object, B: int, C: int) -> torch.Tensor:
    if not isinstance(target, torch.Tensor) or target.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"target: expected an integer class tensor of shape ({B},), got {target!r:.60}")
    if tuple(target.shape) != (B,):
        raise ValueError(f"target: expected shape ({B},), got {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= C):
        raise ValueError(f"target: expected classes in [0, {C - 1}], got range [{int(target.min())}, {int(target.max())}]")
    return target.long()


def loss_shaping_ce(mem: torch.Tensor, target: torch.Tensor, tau: Optional[float] = None) -> torch.Tensor:
    """Cross-entropy on the exponentially weighted average voltage (the paper's "loss shaping").

    ``VAvg_k = (1/T) sum_t exp(-t / tau) V_k(t)`` with ``tau = T`` by default, then
    ``cross_entropy(VAvg, target)``: early evidence weighs more, which shapes the readout.

    Parameters
    ----------
    mem : torch.Tensor
        Readout voltages ``(T, B, C)``.
    target : torch.Tensor
        Classes ``(B,)``.
    tau : float, optional
        Decay of the weighting in steps (default ``T``; ``math.inf``: plain average).

    Examples
    --------
    >>> mem = torch.zeros(10, 2, 3); mem[:, 0, 1] = 5.0; mem[:, 1, 2] = 5.0
    >>> loss_shaping_ce(mem, torch.tensor([1, 2])) < 0.1
    tensor(True)
    """
    mem = _check_voltages(mem)
    T, B, C = mem.shape
    target = _check_target(target, B, C)
    check_finite("mem", mem)
    if tau is None:
        tau = float(T)
    else:
        tau = as_real("tau", tau, "a float > 0 (steps) or None")
        if not tau > 0:  # also rejects NaN; inf is a plain average
            raise ValueError(f"tau: expected a float > 0 (steps), got {tau}")
    w = torch.exp(-torch.arange(T, device=mem.device, dtype=mem.dtype) / tau)
    vavg = (w.view(T, 1, 1) * mem).sum(0) / T
    return F.cross_entropy(vavg, target)


def max_voltage_ce(mem: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the maximum over time of each readout voltage.

    Examples
    --------
    >>> mem = torch.zeros(5, 1, 2); mem[3, 0, 0] = 4.0
    >>> float(max_voltage_ce(mem, torch.tensor([0]))) < 0.05
    True
    """
    mem = _check_voltages(mem)
    T, B, C = mem.shape
    target = _check_target(target, B, C)
    check_finite("mem", mem)
    return F.cross_entropy(mem.max(0).values, target)


class _FirstSpikeTimes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spk: torch.Tensor, no_spike: float):  # type: ignore[override]
        T = spk.shape[0]
        fired = spk > 0
        has = fired.any(0)
        first = torch.where(has, fired.to(torch.int8).argmax(0), torch.full_like(has, T, dtype=torch.long))
        ctx.save_for_backward(first, has)
        ctx.T = T
        out = torch.where(has, first.to(spk.dtype), torch.full_like(first, no_spike, dtype=spk.dtype))
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        first, has = ctx.saved_tensors
        T = ctx.T
        g = torch.zeros((T,) + tuple(first.shape), dtype=grad.dtype, device=grad.device)
        idx = first.clamp_max(T - 1).unsqueeze(0)
        g.scatter_(0, idx, (grad * has.to(grad.dtype)).unsqueeze(0))
        return g, None


def first_spike_times(spk: torch.Tensor, no_spike: Optional[float] = None) -> torch.Tensor:
    """Step of the first spike of every neuron, differentiable in the EventProp convention.

    Parameters
    ----------
    spk : torch.Tensor
        Spikes ``(T, B, N)``.
    no_spike : float, optional
        Time given to neurons that never fire (default ``T``); they get no gradient.

    Returns
    -------
    torch.Tensor
        ``(B, N)`` times in steps. Its gradient is handed to ``spk`` at the first-spike
        positions as ``dL/dt`` (what :func:`~snn_delays_ext.eventprop.eventprop_lif` expects).

    Examples
    --------
    >>> spk = torch.zeros(6, 1, 2); spk[2, 0, 0] = 1; spk[4, 0, 0] = 1
    >>> first_spike_times(spk)
    tensor([[2., 6.]])
    """
    spk = _check_seq("spk", spk, min_steps=1)
    no_spike = float(spk.shape[0]) if no_spike is None else _check_time("no_spike", no_spike)
    return _FirstSpikeTimes.apply(spk, no_spike)


def first_spike_time_loss(
    spk: torch.Tensor,
    target: torch.Tensor,
    t_early: float,
    t_late: float,
    tau0: Optional[float] = None,
) -> torch.Tensor:
    """First-spike-time loss for time-to-first-spike classification (Yin-Yang).

    Mean squared error between each output's first-spike time and its target, ``t_early`` for
    the correct class and ``t_late`` for the others (times in steps; a silent neuron counts as
    ``t_late`` plus one step and gets no gradient). With ``tau0`` a cross-entropy term on
    ``-t / tau0`` is added (Göltz et al.; Wunderlich & Pehle), which separates the classes.

    Examples
    --------
    >>> spk = torch.zeros(20, 1, 2); spk[3, 0, 0] = 1; spk[15, 0, 1] = 1
    >>> float(first_spike_time_loss(spk, torch.tensor([0]), t_early=3, t_late=15))
    0.0
    """
    spk = _check_seq("spk", spk, min_steps=1)
    T, B, C = spk.shape
    target = _check_target(target, B, C)
    t_early = _check_time("t_early", t_early)
    t_late = _check_time("t_late", t_late)
    if t_early > t_late:
        raise ValueError(
            f"t_early, t_late: the correct class's target time must not come after the others', "
            f"expected t_early <= t_late, got t_early={t_early}, t_late={t_late} (swapped?)"
        )
    if tau0 is not None:
        tau0 = check_positive_float("tau0", tau0)
    t = first_spike_times(spk, no_spike=float(t_late) + 1.0)
    tgt = torch.full_like(t, float(t_late))
    tgt[torch.arange(B, device=t.device), target] = float(t_early)
    loss = ((t - tgt) ** 2).mean()
    if tau0 is not None:
        loss = loss + F.cross_entropy(-t / float(tau0), target)
    return loss


def relative_first_spike_loss(spk: torch.Tensor, target: torch.Tensor, delta: float,
                              no_spike: Optional[float] = None) -> torch.Tensor:
    """Relative first-spike-time MSE (Göltz et al. 2025; mlGeNN's ``RelativeMeanSquareError``).

    .. math:: L = \\frac{1}{B} \\sum_b \\frac{1}{2} \\sum_{i \\ne l_b}
              (t_{b,i} - t_{b,l_b} - \\Delta)^2

    Every wrong output is pulled to fire ``delta`` steps after the correct one, a bounded
    target: unlike a cross-entropy on ``-t``, it never pushes the wrong outputs towards
    silence, where exact gradients vanish. Silent outputs count as ``no_spike`` (default
    ``T``) and get no gradient; their terms still pull the correct output towards
    ``no_spike - delta`` (a bounded pull, as with any finite stand-in for a missing spike).

    Parameters
    ----------
    spk : torch.Tensor
        Output spikes ``(T, B, C)``.
    target : torch.Tensor
        Classes ``(B,)``.
    delta : float
        Wanted lead of the correct output, in steps (> 0).
    no_spike : float, optional
        Time of a silent output (default ``T``).

    Examples
    --------
    >>> spk = torch.zeros(20, 1, 3); spk[3, 0, 0] = 1; spk[5, 0, 1] = 1; spk[8, 0, 2] = 1
    >>> float(relative_first_spike_loss(spk, torch.tensor([0]), delta=2.0))   # (0**2 + 3**2) / 2
    4.5
    """
    spk = _check_seq("spk", spk, min_steps=1)
    T, B, C = spk.shape
    target = _check_target(target, B, C)
    delta = check_positive_float("delta", delta)
    if no_spike is not None:
        no_spike = _check_time("no_spike", no_spike)
    t = first_spike_times(spk, no_spike=no_spike)
    idx = torch.arange(B, device=t.device)
    t_true = t[idx, target].unsqueeze(1)
    wrong = torch.ones_like(t, dtype=torch.bool)
    wrong[idx, target] = False
    diff = (t - t_true - float(delta)) * wrong.to(t.dtype)
    return 0.5 * (diff ** 2).sum() / max(B, 1)


def predict_first_spike(spk: torch.Tensor) -> torch.Tensor:
    """Class of the earliest-firing output (ties: lowest index; silent outputs last).

    Examples
    --------
    >>> spk = torch.zeros(5, 1, 3); spk[2, 0, 1] = 1; spk[4, 0, 2] = 1
    >>> predict_first_spike(spk)
    tensor([1])
    """
    spk = _check_seq("spk", spk)
    with torch.no_grad():
        return first_spike_times(spk).argmin(1)


@torch.no_grad()
def bump_silent_neurons_(
    layer: nn.Module, spike_counts: torch.Tensor, amount: float = 0.002
) -> int:
    """Raise the input weights of neurons that never fired (the paper's silent-neuron fix).

    Exact gradients carry no signal to a neuron that never spikes, so its incoming weights
    are increased by ``amount`` (the paper: 0.002 per epoch).

    Parameters
    ----------
    layer : nn.Module
        A layer with a ``weight`` of shape ``(N, in)`` (e.g.
        :class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic`).
    spike_counts : torch.Tensor
        Spikes per neuron ``(N,)`` accumulated over the epoch (or ``(T, B, N)`` spikes).
    amount : float
        Increment (finite, >= 0).

    Returns
    -------
    int
        Number of silent neurons bumped.

    Examples
    --------
    >>> from snn_delays_ext.eventprop import DelayedRecurrentSynaptic
    >>> layer = DelayedRecurrentSynaptic(2, 3, max_delay=4)
    >>> w0 = layer.weight.detach().clone()
    >>> bump_silent_neurons_(layer, torch.tensor([0.0, 5.0, 0.0]), amount=0.1)
    2
    >>> torch.allclose(layer.weight[0] - w0[0], torch.full((2,), 0.1))
    True
    """
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(f"layer: expected a module with a 2-d weight, got {type(layer).__name__}")
    if not isinstance(spike_counts, torch.Tensor):
        raise TypeError(f"spike_counts: expected a torch.Tensor, got {type(spike_counts).__name__}")
    if spike_counts.dim() == 3:
        spike_counts = spike_counts.sum((0, 1))
    if tuple(spike_counts.shape) != (weight.shape[0],):
        raise ValueError(f"spike_counts: expected shape ({weight.shape[0]},) or (T, B, {weight.shape[0]}), "
                         f"got {tuple(spike_counts.shape)}")
    amount = check_nonneg_float("amount", amount)
    silent = spike_counts.to(weight.device) == 0
    weight[silent] += amount
    return int(silent.sum())
