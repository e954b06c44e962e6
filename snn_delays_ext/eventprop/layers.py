"""Current-based LIF and leaky-integrator layers with learnable delays, trained by EventProp or BPTT."""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import nn

from .._checks import (check_bool, check_choice, check_int, check_max_delay, check_nonneg_float, check_positive_float,
                       check_tensor)
from .._delay_layer import DelayInit, DelayLayerMixin, init_delays
from ..dispatch import Choice, delayed_linear_backend, eventprop_backend
from ..functional.interpolation import round_half_up
from .functional import (
    EventPropConfig,
    check_decay,
    eventprop_lif_binary,
    decays_from_taus,
    lif_sequence_surrogate,
    spike_count_planes,
    synaptic_scale,
)

__all__ = ["DelayedRecurrentSynaptic", "LeakyIntegrator", "BACKWARDS"]

#: Gradient methods of the EventProp layers.
BACKWARDS = ("surrogate", "eventprop")


def _resolve_decays(alpha, beta, tau_syn, tau_mem, dt) -> Tuple[float, float]:
    if (alpha is None) != (beta is None):
        raise ValueError("alpha, beta: give both decays or neither (then tau_syn, tau_mem and dt are used)")
    if alpha is not None:
        return check_decay("alpha", alpha), check_decay("beta", beta)
    return decays_from_taus(tau_syn, tau_mem, dt)


class _EventPropBase(DelayLayerMixin, nn.Module):
    """Shared parts: decays, delays, config, clamping of several delay tensors."""

    def _setup(self, in_features, out_features, max_delay, alpha, beta, tau_syn, tau_mem, dt,
               backward, delay_init, weight_scale, device, dtype) -> None:
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.max_delay = check_max_delay(max_delay)
        self.min_delay = 0
        self.delay_type = "synaptic"
        self.interpolation = "round"
        self._sigma = 0.0
        self.backward = check_choice("backward", backward, BACKWARDS)
        self.alpha, self.beta = _resolve_decays(alpha, beta, tau_syn, tau_mem, dt)
        weight_scale = check_nonneg_float("weight_scale", weight_scale)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        bound = weight_scale / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        d = init_delays("delay_init", (out_features, in_features), self.max_delay, 0, delay_init,
                        None, dtype, device)
        self.delays = nn.Parameter(d)

    def _delay_tensors(self) -> List[Tuple[nn.Parameter, int]]:
        return [(self.delays, 0)]

    def _delay_leaves(self) -> List[nn.Parameter]:
        # every delay tensor (feed-forward and recurrent), for weight_parameters()
        return [p for p, _ in self._delay_tensors()]

    def effective_delays(self) -> torch.Tensor:
        """The integer feed-forward delays the forward pass uses (clamped, rounded halves up)."""
        return round_half_up(self.delays.detach().clamp(0.0, float(self.max_delay)))

    @torch.no_grad()
    def clamp_delays_(self) -> None:
        """Clamp every delay tensor in place (feed-forward to ``[0, max_delay]``, recurrent to
        ``[1, max_delay]``); call after each optimiser step."""
        for p, lo in self._delay_tensors():
            p.clamp_(float(lo), float(self.max_delay))

    @torch.no_grad()
    def quantize_delays(self, max_hardware_delay: Optional[int] = None) -> torch.Tensor:
        """Round every delay tensor in place (clamped, halves up); returns the feed-forward ones."""
        out = None
        for p, lo in self._delay_tensors():
            d = round_half_up(p.clamp(float(lo), float(self.max_delay)))
            if max_hardware_delay is not None and bool((d > max_hardware_delay).any()):
                raise ValueError(
                    f"max_hardware_delay: {int((d > max_hardware_delay).sum())} rounded delays exceed "
                    f"{max_hardware_delay} (largest {int(d.max())})"
                )
            p.copy_(d)
            out = d.clone() if out is None else out
        return out

    def delay_parameters(self) -> List[nn.Parameter]:
        """Every learnable delay tensor."""
        return [p for p, _ in self._delay_tensors() if p.requires_grad]

    def weight_parameters(self) -> List[nn.Parameter]:
        """Every learnable parameter except the delays."""
        ids = {id(p) for p, _ in self._delay_tensors()}
        return [p for p in self.parameters() if id(p) not in ids and p.requires_grad]

    def reset_state(self) -> None:
        """No state is kept between calls (whole-sequence layer); provided for :func:`reset`."""

    def backend(self, input_: torch.Tensor) -> Choice:
        """What a call with ``input_`` runs, and why (:mod:`snn_delays_ext.dispatch`): with
        ``backward="eventprop"`` the compiled EventProp op where it is built for the input's
        device; with ``"surrogate"`` the BPTT path, whose feed-forward delays follow the
        delayed-linear rule.

        Examples
        --------
        >>> layer = LeakyIntegrator(3, 2, max_delay=4, backward="eventprop")
        >>> layer.backend(torch.zeros(5, 1, 3)).backend in ("compiled", "reference")
        True
        """
        if self.backward == "eventprop":
            return eventprop_backend(input_)
        return delayed_linear_backend(input_, "synaptic", self.max_delay, 0.0, "round", self.weight, self.delays)

    def _check_x(self, x: torch.Tensor) -> None:
        check_tensor("input_", x, ranks=(3,), last_dim=self.in_features, dtype=self.weight.dtype,
                     device=self.weight.device)

    def _run(self, x: torch.Tensor, rec_weight: Optional[torch.Tensor] = None,
             rec_delays: Optional[torch.Tensor] = None,
             spike_fn: Optional[Callable] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(spk, mem)`` of the layer's dynamics on ``x``. The event-based forward takes
        binary spikes, so a count ``c > 1`` in a bin becomes ``c`` spikes at that step: the
        count planes of :func:`spike_count_planes` with the weights and delays repeated
        (the same current; the input then gets no gradient)."""
        self._check_x(x)
        cfg = self.config()
        if self.backward == "eventprop":
            planes, K = spike_count_planes(x)  # validates x: the planes are binary
            w, d = (self.weight, self.delays) if K == 1 else (self.weight.repeat(1, K), self.delays.repeat(1, K))
            return eventprop_lif_binary(planes, w, d, rec_weight, rec_delays, cfg)
        return lif_sequence_surrogate(x, self.weight, self.delays, rec_weight, rec_delays, config=cfg,
                                      spike_fn=spike_fn)


class DelayedRecurrentSynaptic(_EventPropBase):
    """Current-based LIF layer with learnable synaptic delays, trained by EventProp or BPTT.

    A feed-forward delayed synapse (one delay per connection, like
    :class:`~snn_delays_ext.DelayedLinear` with ``delay_type="synaptic"``) and optional
    delayed recurrent connections feed current-based LIF neurons (snnTorch ``RSynaptic``
    convention: ``alpha`` synaptic decay, ``beta`` membrane decay) in mlGeNN's discrete form:

    .. math::

        S_t = \\alpha S_{t-1} + \\sum_i w_i x_i(t - d_i) + \\sum_n r_n z_n(t - e_n), \\quad
        U_t = \\beta V_{t-1} + (1 - \\beta) c S_t, \\quad z_t = [U_t \\ge \\vartheta], \\quad
        V_t = U_t (1 - z_t)

    with ``c = (tau_syn / dt)(1 - alpha)``. Delays are rounded to whole steps in the forward
    pass; the gradient reaches the real-valued delays (call :meth:`clamp_delays_` after each
    optimiser step). ``backward="eventprop"`` gives the exact event-based gradient of
    :func:`~snn_delays_ext.eventprop.eventprop_lif` (forward memory independent of ``T``
    except for the spikes); ``backward="surrogate"`` runs BPTT through the same dynamics with
    ``spike_grad``. Works on whole sequences ``(T, B, in_features)`` only. With EventProp a
    loss may use both outputs: the gradient reaching ``spk`` is read as the sensitivity to each
    spike's time, the one reaching ``mem`` includes the jump of ``mem`` from the threshold to 0
    at each spike (a spike that moves later keeps ``mem`` at the threshold for longer).

    Parameters
    ----------
    in_features, out_features : int
        Input channels and neurons.
    max_delay : int
        Largest delay in steps (>= 1).
    alpha, beta : float, optional
        Synaptic and membrane decays per step in ``(0, 1)``; if omitted they come from
        ``tau_syn``, ``tau_mem`` and ``dt`` (``exp(-dt / tau)``).
    tau_syn, tau_mem, dt : float
        Time constants and step (defaults 5 ms, 20 ms, 1 ms, the paper's).
    threshold : float
        Firing threshold (default 1).
    recurrent : bool
        Add delayed recurrent connections ``(out, out)`` with delays in ``[1, max_delay]``.
    backward : {"surrogate", "eventprop"}
        Gradient method.
    spike_grad : callable, optional
        Surrogate spike function for ``backward="surrogate"`` (default
        ``snntorch.surrogate.atan()``).
    delay_init, rec_delay_init : str, float or torch.Tensor
        As for :class:`~snn_delays_ext.DelayedLinear` (default ``"uniform"``).
    weight_scale, rec_weight_scale : float
        Weights start uniform in ``+-scale / sqrt(fan_in)``.
    min_denominator, reg_strength, reg_target, max_spikes
        EventProp options, see :class:`~snn_delays_ext.eventprop.EventPropConfig`.
    record_mem : bool
        Return the membrane sequence (``False``: return an empty tensor, less memory).
    return_mem : bool
        Return ``(spk, mem)`` (default); ``False``: the spikes alone, so that the layer chains
        in an ``nn.Sequential`` (as :func:`~snn_delays_ext.import_from_nir` builds it; also
        skips recording the membrane).

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext.eventprop import DelayedRecurrentSynaptic
    >>> layer = DelayedRecurrentSynaptic(4, 8, max_delay=10, backward="eventprop")
    >>> x = (torch.rand(50, 2, 4) < 0.2).float()
    >>> spk, mem = layer(x)
    >>> spk.shape, mem.shape
    (torch.Size([50, 2, 8]), torch.Size([50, 2, 8]))
    >>> (mem.sum() + spk.sum()).backward()
    >>> layer.rec_delays.grad.shape
    torch.Size([8, 8])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        tau_syn: float = 5.0,
        tau_mem: float = 20.0,
        dt: float = 1.0,
        threshold: float = 1.0,
        recurrent: bool = True,
        backward: str = "surrogate",
        spike_grad: Optional[Callable] = None,
        delay_init: DelayInit = "uniform",
        rec_delay_init: DelayInit = "uniform",
        weight_scale: float = 1.0,
        rec_weight_scale: float = 0.5,
        min_denominator: float = 1e-6,
        reg_strength: float = 0.0,
        reg_target: float = 0.0,
        max_spikes: Optional[int] = None,
        record_mem: bool = True,
        return_mem: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self._setup(in_features, out_features, max_delay, alpha, beta, tau_syn, tau_mem, dt,
                    backward, delay_init, weight_scale, device, dtype)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            math.isfinite(threshold) and threshold > 0
        ):
            raise ValueError(f"threshold: expected a finite float > 0, got {threshold!r}")
        self.threshold = float(threshold)
        self.recurrent = check_bool("recurrent", recurrent)
        if spike_grad is not None and not callable(spike_grad):
            raise TypeError(f"spike_grad: expected a callable (surrogate spike function) or None, got "
                            f"{type(spike_grad).__name__} ({spike_grad!r})")
        self.spike_grad = spike_grad
        self.min_denominator = check_positive_float("min_denominator", min_denominator)
        self.reg_strength = check_nonneg_float("reg_strength", reg_strength)
        self.reg_target = check_nonneg_float("reg_target", reg_target)
        self.max_spikes = None if max_spikes is None else check_int("max_spikes", max_spikes, minimum=1)
        if self.max_spikes is not None and self.backward != "eventprop":
            raise ValueError("max_spikes: the spike buffer of the EventProp backward; expected None with "
                             f"backward={self.backward!r}, got {self.max_spikes}")
        self.return_mem = check_bool("return_mem", return_mem)
        self.record_mem = check_bool("record_mem", record_mem) and self.return_mem
        rec_weight_scale = check_nonneg_float("rec_weight_scale", rec_weight_scale)
        if self.recurrent:
            factory = {"device": device, "dtype": dtype}
            self.rec_weight = nn.Parameter(torch.empty(out_features, out_features, **factory))
            bound = rec_weight_scale / math.sqrt(out_features)
            nn.init.uniform_(self.rec_weight, -bound, bound)
            e = init_delays("rec_delay_init", (out_features, out_features), self.max_delay, 1,
                            rec_delay_init, None, dtype, device)
            self.rec_delays = nn.Parameter(e)
        else:
            self.register_parameter("rec_weight", None)
            self.register_parameter("rec_delays", None)

    def _delay_tensors(self):
        out = [(self.delays, 0)]
        if self.recurrent:
            out.append((self.rec_delays, 1))
        return out

    def config(self) -> EventPropConfig:
        """The :class:`~snn_delays_ext.eventprop.EventPropConfig` of this layer."""
        return EventPropConfig(
            alpha=self.alpha, beta=self.beta, threshold=self.threshold, max_delay=self.max_delay,
            syn_scale=synaptic_scale(self.alpha), min_denominator=self.min_denominator,
            reg_strength=self.reg_strength, reg_target=self.reg_target,
            max_spikes=self.max_spikes, record_mem=self.record_mem,
        )

    def forward(self, input_: torch.Tensor) -> Union[Tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """Run the layer on a sequence ``(T, B, in_features)`` of spikes or spike counts.

        Returns
        -------
        spk, mem : torch.Tensor
            ``(T, B, out_features)`` spikes and membranes after reset; ``spk`` alone with
            ``return_mem=False``.
        """
        out = self._run(input_, self.rec_weight, self.rec_delays, self.spike_grad)
        return out if self.return_mem else out[0]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, max_delay={self.max_delay}, "
            f"alpha={self.alpha:.4g}, beta={self.beta:.4g}, threshold={self.threshold:g}, "
            f"recurrent={self.recurrent}, backward={self.backward!r}"
        )


class LeakyIntegrator(_EventPropBase):
    """Non-spiking leaky-integrator readout with learnable synaptic delays.

    The same dynamics as :class:`DelayedRecurrentSynaptic` without threshold (and without
    recurrence): the returned membrane ``V`` of shape ``(T, B, out_features)`` feeds a loss
    such as :func:`~snn_delays_ext.eventprop.loss_shaping_ce` or
    :func:`~snn_delays_ext.eventprop.max_voltage_ce`. With ``backward="eventprop"`` the
    gradient is the exact discrete one and the gradient of the input spikes is their time
    sensitivity, which an upstream EventProp layer consumes.

    Parameters
    ----------
    in_features, out_features, max_delay, alpha, beta, tau_syn, tau_mem, dt, backward, delay_init, weight_scale
        As for :class:`DelayedRecurrentSynaptic`.

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext.eventprop import LeakyIntegrator
    >>> readout = LeakyIntegrator(3, 2, max_delay=5, backward="eventprop")
    >>> x = (torch.rand(20, 4, 3) < 0.3).float()
    >>> readout(x).shape
    torch.Size([20, 4, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        alpha: Optional[float] = None,
        beta: Optional[float] = None,
        tau_syn: float = 5.0,
        tau_mem: float = 20.0,
        dt: float = 1.0,
        backward: str = "surrogate",
        delay_init: DelayInit = "uniform",
        weight_scale: float = 1.0,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self._setup(in_features, out_features, max_delay, alpha, beta, tau_syn, tau_mem, dt,
                    backward, delay_init, weight_scale, device, dtype)

    def config(self) -> EventPropConfig:
        """The :class:`~snn_delays_ext.eventprop.EventPropConfig` (threshold ``inf``)."""
        return EventPropConfig(alpha=self.alpha, beta=self.beta, threshold=math.inf,
                               max_delay=self.max_delay, syn_scale=synaptic_scale(self.alpha))

    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        """Membrane sequence ``(T, B, out_features)`` for input spikes or spike counts
        ``(T, B, in_features)``."""
        return self._run(input_)[1]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, max_delay={self.max_delay}, "
            f"alpha={self.alpha:.4g}, beta={self.beta:.4g}, backward={self.backward!r}"
        )
