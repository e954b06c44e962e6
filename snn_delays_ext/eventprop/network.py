"""An EventProp network: delayed current-based LIF layers and a leaky-integrator readout.

:class:`EventPropSNN` stacks current-based LIF layers with learnable synaptic delays
(:class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic`, feed-forward or recurrent)
and a leaky-integrator readout (:class:`~snn_delays_ext.eventprop.LeakyIntegrator`), all
trained with the EventProp backward, and returns logits, so the engine's cross-entropy is the
paper's loss: with ``readout="li_shaped"`` the logits are the exponentially weighted average
readout voltage ``VAvg_k = (1/T) sum_t exp(-t/T) V_k(t)`` ("loss shaping", Nowotny et al.;
Mészáros et al. 2025), with ``"li_max"`` the maximum over time (the sequence task). The training
CLI's ``eventprop-ff`` / ``eventprop-rec`` models are this network.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
from torch import nn

from .._checks import check_positive_float
from .._delay_layer import DelayInit
from .functional import spike_count_planes
from .layers import BACKWARDS, DelayedRecurrentSynaptic, LeakyIntegrator
from .losses import bump_silent_neurons_

__all__ = ["EventPropSNN", "EVENTPROP_READOUTS", "spike_count_planes"]

#: Readouts of :class:`EventPropSNN`: loss-shaping average, max over time, plain mean, sum.
EVENTPROP_READOUTS = ("li_shaped", "li_max", "li_mean", "sum")


class EventPropSNN(nn.Module):
    """Spiking network trained with EventProp: ``[DelayedRecurrentSynaptic] x L -> LeakyIntegrator``.

    Every hidden layer is a current-based LIF layer with one learnable delay per synapse
    (feed-forward; with ``recurrent=True`` also delayed recurrent connections); the readout is
    a leaky integrator, with learnable delays if ``output_delays``. The forward pass rounds the
    delays to whole steps, the exact EventProp gradient reaches the real-valued ones. The input
    may hold spike counts (see :func:`spike_count_planes`).

    Parameters
    ----------
    n_inputs, hidden, n_classes
        Input channels, hidden layer sizes (may be empty: readout only), classes.
    max_delay : int
        Largest delay in steps (>= 1).
    recurrent : bool
        Delayed recurrent connections in every hidden layer.
    tau_syn, tau_mem : float
        Synaptic and membrane time constants in steps (the paper: 5 and 20 ms at 1 ms steps).
    readout : {"li_shaped", "li_max", "li_mean", "sum"}
        Logits from the readout voltage ``V (T, B, C)``: ``(1/T) sum_t exp(-t/T) V_t`` (loss
        shaping), ``max_t V_t``, the mean, or the sum over time.
    delay_init : str, float or torch.Tensor
        Initial feed-forward delays (as :class:`~snn_delays_ext.DelayedLinear`).
    output_delays : bool
        Learnable delays on the readout connections (``False``: fixed at zero).
    weight_mean, weight_std : float, optional
        All input weights (hidden layers and readout) start
        ``Normal(weight_mean, weight_std) / sqrt(fan_in)``; ``None``: each layer's uniform
        ``+-1/sqrt(fan_in)``. Exact gradients need neurons that fire (and readouts whose
        voltage rises) from the start, so a positive mean usually helps.
    backward : {"eventprop", "surrogate"}
        Gradient method (``"surrogate"``: BPTT through the same dynamics, for comparisons).
    max_spikes : int, optional
        Spike-buffer capacity per layer call (overflow raises instead of a wrong gradient).
    silent_bump : float
        Input-weight increment of hidden neurons that stayed silent for a whole training epoch
        (the paper's 0.002; exact gradients cannot wake them). Spikes are counted in training
        forwards; the training engine calls :meth:`on_train_epoch_end` after each epoch.
    reg_strength, reg_target : float
        The paper's spike-count regulariser on every hidden layer (``k_reg`` and ``nu``; see
        :class:`~snn_delays_ext.eventprop.EventPropConfig`); ``reg_strength=0`` (default): off.
    tau_out : float, optional
        Membrane time constant of the readout in steps (its synaptic one is ``tau_syn``);
        ``None`` (default): ``tau_mem``. A readout that integrates longer than the hidden
        neurons gives larger logits when the hidden time constants are short.

    Examples
    --------
    >>> import torch
    >>> net = EventPropSNN(3, [8], 2, max_delay=5)
    >>> x = (torch.rand(20, 4, 3) < 0.3).float()
    >>> net(x).shape
    torch.Size([4, 2])
    >>> logits, spikes = net(x, record=True)
    >>> [s.shape for s in spikes]
    [torch.Size([20, 4, 8])]
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int, max_delay: int = 20,
                 recurrent: bool = False, tau_syn: float = 5.0, tau_mem: float = 20.0,
                 readout: str = "li_shaped", delay_init: DelayInit = "uniform", output_delays: bool = True,
                 weight_mean: Optional[float] = None, weight_std: Optional[float] = None,
                 backward: str = "eventprop", max_spikes: Optional[int] = None,
                 silent_bump: float = 0.002, reg_strength: float = 0.0,
                 reg_target: float = 0.0, tau_out: Optional[float] = None) -> None:
        super().__init__()
        if readout not in EVENTPROP_READOUTS:
            raise ValueError(f"readout: expected one of {list(EVENTPROP_READOUTS)} for an EventProp model, "
                             f"got {readout!r}")
        if backward not in BACKWARDS:
            raise ValueError(f"backward: expected one of {list(BACKWARDS)}, got {backward!r}")
        if (weight_mean is None) != (weight_std is None):
            raise ValueError("weight_mean, weight_std: give both or neither")
        if weight_std is not None and not (math.isfinite(weight_std) and weight_std >= 0):
            raise ValueError(f"weight_std: expected a finite float >= 0, got {weight_std!r}")
        if weight_mean is not None and not math.isfinite(weight_mean):
            raise ValueError(f"weight_mean: expected a finite float, got {weight_mean!r}")
        if isinstance(silent_bump, bool) or not isinstance(silent_bump, (int, float)) or not (
            math.isfinite(silent_bump) and silent_bump >= 0
        ):
            raise ValueError(f"silent_bump: expected a finite float >= 0, got {silent_bump!r}")
        self.readout = readout
        self.backward = backward
        self.silent_bump = float(silent_bump)
        self._counts: Optional[List[torch.Tensor]] = None
        sizes = [n_inputs] + list(hidden)
        kw = dict(max_delay=max_delay, tau_syn=tau_syn, tau_mem=tau_mem, dt=1.0, backward=backward)
        self.layers = nn.ModuleList(
            DelayedRecurrentSynaptic(a, b, recurrent=recurrent, delay_init=delay_init, max_spikes=max_spikes,
                                     record_mem=False, reg_strength=reg_strength, reg_target=reg_target,
                                     **kw)
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        kw_out = dict(kw, tau_mem=tau_mem if tau_out is None else check_positive_float("tau_out", tau_out))
        self.out = LeakyIntegrator(sizes[-1], n_classes, delay_init=delay_init if output_delays else 0.0, **kw_out)
        if weight_mean is not None:
            with torch.no_grad():
                for layer in [*self.layers, self.out]:
                    layer.weight.normal_(weight_mean, weight_std).div_(math.sqrt(layer.in_features))
        if not output_delays:
            with torch.no_grad():
                self.out.delays.zero_()
            self.out.delays.requires_grad_(False)

    def logits(self, v: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` from the readout voltage ``(T, B, C)`` (see ``readout``)."""
        T = v.shape[0]
        if self.readout == "li_shaped":
            w = torch.exp(-torch.arange(T, device=v.device, dtype=v.dtype) / T)
            return (w.view(T, 1, 1) * v).sum(0) / T
        if self.readout == "li_max":
            return v.max(0).values
        if self.readout == "li_mean":
            return v.mean(0)
        return v.sum(0)

    def forward(self, x: torch.Tensor, record: bool = False):
        spikes: List[torch.Tensor] = []
        h = x
        count = self.training and torch.is_grad_enabled() and self.silent_bump > 0
        for i, layer in enumerate(self.layers):
            h = layer(h)[0]
            spikes.append(h)
            if count:
                if self._counts is None:
                    self._counts = [torch.zeros(m.out_features, device=h.device, dtype=h.dtype)
                                    for m in self.layers]
                self._counts[i] += h.detach().sum((0, 1))
        v = self.out(h)
        logits = self.logits(v)
        return (logits, spikes) if record else logits


    @torch.no_grad()
    def on_train_epoch_end(self) -> int:
        """Bump the input weights of hidden neurons that did not fire in this epoch's training
        batches (summed over processes under ``torch.distributed``); returns how many."""
        counts, self._counts = self._counts, None
        if counts is None or self.silent_bump == 0:
            return 0
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for c in counts:
                dist.all_reduce(c)
        return sum(bump_silent_neurons_(layer, c, self.silent_bump) for layer, c in zip(self.layers, counts))
