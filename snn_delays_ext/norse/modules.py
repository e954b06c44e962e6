"""Thin Norse-style modules over :mod:`snn_delays_ext.norse.functional`.

Every module has ``forward(input_tensor, state=None) -> (output, state)``, so
:class:`norse.torch.SequentialState` and :class:`norse.torch.Lift` recognise it as stateful
(they look for a ``state`` argument) and thread its NamedTuple state.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from norse.torch.functional.lif import LIFParameters
from torch import nn

from .._checks import check_max_delay, check_choice, check_finite, check_int, check_nonneg_float, check_tensor
from ..dispatch import Choice, delayed_linear_backend
from .._delay_layer import DelayInit, DelayLayerMixin, init_delays
from ..functional.delayed_linear import (
    DELAY_TYPES_FF,
    run_delayed_linear,
    delayed_linear_step,
    fit_history,
    history_length,
)
from ..functional.interpolation import INTERPOLATIONS
from ..functional.recurrent_leaky import DELAY_TYPES_RECURRENT, recurrent_delay_shape, recurrent_history_length
from ..functional.recurrent_leaky import _recurrent_band
from .functional import (
    DelayedLIFFeedForwardState,
    DelayedLIFState,
    _RecurrentBand,
    _lif_update,
    _step_with_band,
    _with_sequence_kernel,
)

__all__ = ["DelayedLIFRecurrentCell", "DelayedLIFRecurrent", "DelayedLIFCell", "DelayedLIF"]


_METHODS = ("super", "heaviside", "triangle", "tanh", "circ", "heavi_erfc")


def _as_lif_parameters(p: LIFParameters) -> LIFParameters:
    if not isinstance(p, LIFParameters):
        raise TypeError(f"p: expected a norse.torch.LIFParameters, got {type(p).__name__}")
    if p.method not in _METHODS:
        raise ValueError(
            f"p.method: expected one of {list(_METHODS)} (surrogate-gradient BPTT), got {p.method!r}"
        )
    return LIFParameters(
        torch.as_tensor(p.tau_syn_inv),
        torch.as_tensor(p.tau_mem_inv),
        torch.as_tensor(p.v_leak),
        torch.as_tensor(p.v_th),
        torch.as_tensor(p.v_reset),
        p.method,
        torch.as_tensor(p.alpha),
    )


class _ParametersFollowModule:
    """Move the Norse parameters ``self.p`` with the module: ``module.to(device)`` /
    ``.cuda()`` also moves their tensors (Norse keeps them on the CPU), so no step computes on
    a CPU tensor next to a CUDA input. Their dtype stays (Norse's arithmetic: ``dt * tau_inv``
    in the parameters' own precision)."""

    p: LIFParameters

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        out = super()._apply(fn, recurse)  # type: ignore[misc]

        def move(v: object) -> object:
            if not isinstance(v, torch.Tensor):
                return v
            moved = fn(v)
            return moved.to(v.dtype) if isinstance(moved, torch.Tensor) else v

        if isinstance(getattr(self, "p", None), LIFParameters):
            self.p = self.p._replace(**{f: move(getattr(self.p, f)) for f in self.p._fields if f != "method"})
        return out


def _check_dt(dt: float) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt: expected a float > 0 (seconds), got {type(dt).__name__} ({dt!r})")
    dt = float(dt)
    if not (dt > 0 and dt < float("inf")):
        raise ValueError(f"dt: expected a finite float > 0 (seconds), got {dt}")
    return dt


def _check_given(name: str, given: object, shape: Tuple[int, int]) -> None:
    """Validate a user-passed weight tensor (type, floating dtype, shape)."""
    if not isinstance(given, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(given).__name__}")
    if not given.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {given.dtype}")
    if tuple(given.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(given.shape)}")


def _factory(**given: Optional[torch.Tensor]) -> Dict[str, Any]:
    """``dtype``/``device`` of the passed weights (empty when none is passed), so that the
    layer's other tensors follow them; passed weights must agree on both."""
    passed = {k: t for k, t in given.items() if t is not None}
    if not passed:
        return {}
    (k0, t0), *rest = passed.items()
    for k, t in rest:
        if t.dtype != t0.dtype or t.device != t0.device:
            raise ValueError(
                f"{k}: expected the dtype and device of {k0} ({t0.dtype}, {t0.device}), got "
                f"({t.dtype}, {t.device})"
            )
    return {"dtype": t0.dtype, "device": t0.device}


def _weight(
    given: Optional[torch.Tensor], shape: Tuple[int, int], std: float, factory: Dict[str, Any]
) -> nn.Parameter:
    """The weight parameter: Norse's ``randn * std`` when ``given`` is ``None``; else, as Norse
    stores the passed tensor itself, ``given`` if it is a Parameter, otherwise a Parameter
    sharing its storage (same dtype and device, no copy)."""
    if given is None:
        return nn.Parameter(torch.randn(shape, **factory) * std)
    if isinstance(given, nn.Parameter):
        return given
    return nn.Parameter(given.detach())


class _DelayedLIFRecurrentBase(_ParametersFollowModule, DelayLayerMixin, nn.Module):
    """Parameters and initial state shared by the recurrent cell and sequence module."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        max_delay: int,
        p: LIFParameters = LIFParameters(),
        dt: float = 0.001,
        delay_type: str = "axonal",
        autapses: bool = False,
        input_weights: Optional[torch.Tensor] = None,
        recurrent_weights: Optional[torch.Tensor] = None,
        sigma: float = 0.0,
        interpolation: str = "triangle",
        delay_init: DelayInit = "half_normal",
        delay_std: Optional[float] = None,
        learn_delays: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.max_delay = check_max_delay(max_delay)
        self.min_delay = 1
        self.delay_type = check_choice("delay_type", delay_type, DELAY_TYPES_RECURRENT)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        self._sigma = check_nonneg_float("sigma", sigma)
        self.p = _as_lif_parameters(p)
        self.dt = _check_dt(dt)
        self.autapses = bool(autapses)
        n, i = self.hidden_size, self.input_size
        if input_weights is not None:
            _check_given("input_weights", input_weights, (n, i))
        if recurrent_weights is not None:
            _check_given("recurrent_weights", recurrent_weights, (n, n))
        kw = _factory(input_weights=input_weights, recurrent_weights=recurrent_weights)
        std = (2.0 / n) ** 0.5  # Norse's initialisation
        self.input_weights = _weight(input_weights, (n, i), std, kw)
        self.recurrent_weights = _weight(recurrent_weights, (n, n), std, kw)
        if not self.autapses:  # in place, on the passed tensor too (as Norse)
            with torch.no_grad():
                self.recurrent_weights.fill_diagonal_(0.0)
        self.register_buffer("_autapse_mask", 1.0 - torch.eye(n, **kw), persistent=False)
        d = init_delays(
            "delay_init", recurrent_delay_shape(delay_type, n), self.max_delay, 1, delay_init, delay_std,
            kw.get("dtype"), kw.get("device"),
        )
        self.delays = nn.Parameter(d, requires_grad=bool(learn_delays))

    def backend(self, input_tensor: torch.Tensor) -> Choice:
        """What a call runs (:mod:`snn_delays_ext.dispatch`): the plain-PyTorch path, reading
        each delay's band of taps per step; the compiled recurrent op implements snnTorch's
        neuron, not Norse's current-based LIF."""
        return Choice("reference", "no compiled kernel for Norse's current-based recurrent LIF")

    def effective_recurrent_weights(self) -> torch.Tensor:
        """The recurrent weights the forward pass uses (diagonal zeroed unless ``autapses``;
        the mask also keeps its gradient zero, like Norse's gradient hook)."""
        if self.autapses:
            return self.recurrent_weights
        return self.recurrent_weights * self._autapse_mask.to(self.recurrent_weights.dtype)

    def _zero_state(self, batch_shape: Tuple[int, ...], like: torch.Tensor) -> DelayedLIFState:
        dims = (*batch_shape, self.hidden_size)
        K = recurrent_history_length(self.max_delay, self._sigma)
        kw = {"device": like.device, "dtype": self.input_weights.dtype}
        return DelayedLIFState(
            z=torch.zeros(dims, **kw),
            v=torch.as_tensor(self.p.v_leak).detach().to(**kw).expand(dims).clone(),
            i=torch.zeros(dims, **kw),
            past=torch.zeros((K, *dims), **kw),
        )

    def _band(self, w_rec: torch.Tensor, dtype: torch.dtype) -> _RecurrentBand:
        """The non-zero band of the delays' taps (``2 ceil(1 + sigma)`` lags per delay; the
        synaptic band carries the weights), built once per call and read by every step: a
        step costs ``O(B N W)`` / ``O(B N^2 W)`` instead of the full ``(N, N, K)`` taps."""
        return _recurrent_band(w_rec, self.delays, self.max_delay, self.delay_type, self._sigma,
                               self.interpolation, dtype)

    def _step(
        self, x: torch.Tensor, state: DelayedLIFState, band: _RecurrentBand, w_rec: torch.Tensor
    ) -> Tuple[torch.Tensor, DelayedLIFState]:
        return _step_with_band(x, state, self.input_weights, w_rec, band, self.p, self.dt,
                               self.delay_type)

    def _check_state(self, state: object, batch: int) -> DelayedLIFState:
        if not isinstance(state, DelayedLIFState):
            raise TypeError(f"state: expected a DelayedLIFState or None, got {type(state).__name__}")
        if state.v.shape[-1] != self.hidden_size or state.v.shape[0] != batch:
            raise ValueError(
                f"state: expected tensors of shape {(batch, self.hidden_size)}, got v of shape "
                f"{tuple(state.v.shape)}"
            )
        return state

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, p={self.p}, "
            f"autapses={self.autapses}, dt={self.dt}, {self._delay_repr()}"
        )


class DelayedLIFRecurrentCell(_DelayedLIFRecurrentBase):
    """Norse's ``LIFRecurrentCell`` with learnable delays on the recurrent connections.

    One Euler step of a current-based LIF layer (see :mod:`snn_delays_ext.norse.functional`):
    the recurrent spikes arrive after delays ``l`` in ``[1, max_delay]`` steps, interpolated
    with the same taps as the snnTorch layers. With every delay 1 and ``sigma = 0`` it computes
    exactly Norse's ``LIFRecurrentCell`` with the same weights.

    Parameters
    ----------
    input_size, hidden_size : int
        Input features ``I`` and neurons ``N``.
    max_delay : int
        Largest recurrent delay in steps (>= 1).
    p : norse.torch.LIFParameters
        Neuron parameters (Norse's defaults).
    dt : float
        Integration step in seconds (Norse's default 0.001).
    delay_type : {"axonal", "synaptic"}
        One delay per presynaptic neuron ``(N,)`` or per connection ``(N, N)``.
    autapses : bool
        Allow self-connections (Norse's default ``False``: the diagonal of the recurrent weights
        is zeroed and kept at zero).
    input_weights, recurrent_weights : torch.Tensor, optional
        Initial weights ``(N, I)`` and ``(N, N)``; default Norse's ``randn * sqrt(2 / N)``.
        Like Norse, a passed tensor is not copied: an ``nn.Parameter`` is used as is, any other
        floating-point tensor is wrapped in a Parameter sharing its storage. Its dtype and
        device are kept, and the layer's other tensors follow them (both passed weights must
        agree). Without ``autapses`` the diagonal of the passed recurrent tensor is zeroed in
        place, as Norse does.
    sigma : float
        Extra half-width of the interpolation triangle.
    interpolation : {"triangle", "round"}
    delay_init : str, float or torch.Tensor
        Default ``"half_normal"`` (``1 + |N(0, delay_std)|``, DelRec).
    delay_std : float, optional
    learn_delays : bool

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext.norse import DelayedLIFRecurrentCell
    >>> cell = DelayedLIFRecurrentCell(2, 4, max_delay=5)
    >>> z, s = cell(torch.ones(3, 2))              # one step, batch of 3
    >>> z, s = cell(torch.ones(3, 2), s)
    >>> z.shape, s.past.shape
    (torch.Size([3, 4]), torch.Size([5, 3, 4]))
    """

    def initial_state(self, input_tensor: torch.Tensor) -> DelayedLIFState:
        """Norse's initial state (``z = 0``, ``v = v_leak``, ``i = 0``) with an empty buffer."""
        return self._zero_state(tuple(input_tensor.shape[:-1]), input_tensor)

    def forward(
        self, input_tensor: torch.Tensor, state: Optional[DelayedLIFState] = None
    ) -> Tuple[torch.Tensor, DelayedLIFState]:
        """One step: ``input_tensor`` ``(B, I)`` -> spikes ``(B, N)`` and the new state."""
        check_tensor(
            "input_tensor", input_tensor, ranks=(2,), last_dim=self.input_size,
            dtype=self.input_weights.dtype, device=self.input_weights.device,
        )
        check_finite("input_tensor", input_tensor)
        check_finite("delays", self.delays)
        if state is None:
            state = self.initial_state(input_tensor)
        else:
            state = self._check_state(state, input_tensor.shape[0])
        w_rec = self.effective_recurrent_weights()
        return self._step(input_tensor, state, self._band(w_rec, state.past.dtype), w_rec)


class DelayedLIFRecurrent(_DelayedLIFRecurrentBase):
    """:class:`DelayedLIFRecurrentCell` run over a time-first sequence (Norse's
    ``LIFRecurrent`` with recurrent delays).

    Same parameters as :class:`DelayedLIFRecurrentCell`. ``forward(x (T, B, I), state=None)``
    returns the spikes ``(T, B, N)`` and the state after the last step.

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext.norse import DelayedLIFRecurrent
    >>> layer = DelayedLIFRecurrent(2, 4, max_delay=5)
    >>> z, s = layer(torch.ones(10, 3, 2))
    >>> z.shape
    torch.Size([10, 3, 4])
    """

    def initial_state(self, input_tensor: torch.Tensor) -> DelayedLIFState:
        """Initial state for a ``(T, B, I)`` sequence."""
        return self._zero_state(tuple(input_tensor.shape[1:-1]), input_tensor)

    def forward(
        self, input_tensor: torch.Tensor, state: Optional[DelayedLIFState] = None
    ) -> Tuple[torch.Tensor, DelayedLIFState]:
        """Run the sequence ``(T, B, I)``; returns spikes ``(T, B, N)`` and the last state."""
        check_tensor(
            "input_tensor", input_tensor, ranks=(3,), last_dim=self.input_size,
            dtype=self.input_weights.dtype, device=self.input_weights.device,
        )
        check_finite("input_tensor", input_tensor)
        check_finite("delays", self.delays)
        if state is None:
            state = self.initial_state(input_tensor)
        else:
            state = self._check_state(state, input_tensor.shape[1])
        out = []
        w_rec = self.effective_recurrent_weights()
        band = self._band(w_rec, state.past.dtype)
        # synaptic, short delays: one dense kernel for the whole sequence (same numbers)
        band = _with_sequence_kernel(
            band, fit_history(state.past, band.K), input_tensor.shape[0], self.delay_type)
        for t in range(input_tensor.shape[0]):
            z, state = self._step(input_tensor[t], state, band, w_rec)
            out.append(z)
        return torch.stack(out), state


class _DelayedLIFBase(_ParametersFollowModule, DelayLayerMixin, nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        max_delay: int,
        p: LIFParameters = LIFParameters(),
        dt: float = 0.001,
        delay_type: str = "synaptic",
        bias: bool = False,
        weight: Optional[torch.Tensor] = None,
        sigma: float = 0.0,
        interpolation: str = "triangle",
        delay_init: DelayInit = "uniform",
        delay_std: Optional[float] = None,
        learn_delays: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = check_int("input_size", input_size, minimum=1)
        self.hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.max_delay = check_max_delay(max_delay)
        self.min_delay = 0
        self.delay_type = check_choice("delay_type", delay_type, DELAY_TYPES_FF)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        self._sigma = check_nonneg_float("sigma", sigma)
        self.p = _as_lif_parameters(p)
        self.dt = _check_dt(dt)
        n, i = self.hidden_size, self.input_size
        if weight is not None:
            _check_given("weight", weight, (n, i))
        kw = _factory(weight=weight)
        self.weight = _weight(weight, (n, i), (2.0 / n) ** 0.5, kw)
        if bias:
            self.bias = nn.Parameter(torch.zeros(n, **kw))
        else:
            self.register_parameter("bias", None)
        shape = {"synaptic": (n, i), "axonal": (i,), "dendritic": (n,)}[delay_type]
        d = init_delays(
            "delay_init", shape, self.max_delay, 0, delay_init, delay_std, kw.get("dtype"),
            kw.get("device"),
        )
        self.delays = nn.Parameter(d, requires_grad=bool(learn_delays))

    def backend(self, input_tensor: torch.Tensor) -> Choice:
        """What a call runs (:mod:`snn_delays_ext.dispatch`): a ``(T, B, I)`` sequence runs the
        delayed linear map on the compiled op where the rule allows (the neuron loop is
        PyTorch); one ``(B, I)`` step runs the plain-PyTorch step."""
        if not isinstance(input_tensor, torch.Tensor) or input_tensor.dim() != 3:
            return Choice("reference", "one (B, I) step runs the plain-PyTorch step")
        return delayed_linear_backend(input_tensor, self.delay_type, self.max_delay, self._sigma, self.interpolation,
                                      self.weight, self.bias, self.delays)

    def _zero_state(self, batch_shape: Tuple[int, ...], like: torch.Tensor) -> DelayedLIFFeedForwardState:
        dims = (*batch_shape, self.hidden_size)
        kw = {"device": like.device, "dtype": self.weight.dtype}
        f = self.hidden_size if self.delay_type == "dendritic" else self.input_size
        K = history_length(self.max_delay, self._sigma)
        v_leak = torch.as_tensor(self.p.v_leak).detach().to(**kw)
        return DelayedLIFFeedForwardState(
            v=v_leak.expand(dims).clone(),
            i=torch.zeros(dims, **kw),
            past=torch.zeros((K, *batch_shape, f), **kw),
        )

    def _check_state(self, state: object, batch: int) -> DelayedLIFFeedForwardState:
        if not isinstance(state, DelayedLIFFeedForwardState):
            raise TypeError(
                f"state: expected a DelayedLIFFeedForwardState or None, got {type(state).__name__}"
            )
        if state.v.shape[-1] != self.hidden_size or state.v.shape[0] != batch:
            raise ValueError(
                f"state: expected tensors of shape {(batch, self.hidden_size)}, got v of shape "
                f"{tuple(state.v.shape)}"
            )
        return state

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, p={self.p}, "
            f"dt={self.dt}, bias={self.bias is not None}, {self._delay_repr()}"
        )


class DelayedLIFCell(_DelayedLIFBase):
    """Feed-forward LIF cell fed through a delayed linear map (one step).

    ``i += delayed_linear(x)`` (synaptic, axonal or dendritic delays in ``[0, max_delay]``
    steps, the kernel of :class:`snn_delays_ext.DelayedLinear`), then Norse's ``LIFCell``
    Euler step. With every delay 0 it is ``torch.nn.Linear`` followed by Norse's ``LIFCell``,
    values and surrogate gradients alike (the reset keeps the spike's gradient, as Norse's
    ``lif_feed_forward_step``).

    Parameters
    ----------
    input_size, hidden_size : int
    max_delay : int
        Largest delay in steps (>= 1).
    p : norse.torch.LIFParameters
    dt : float
        Integration step in seconds.
    delay_type : {"synaptic", "axonal", "dendritic"}
    bias : bool
        Learn a bias of the linear map (default ``False``).
    weight : torch.Tensor, optional
        Initial ``(N, I)`` weights (default ``randn * sqrt(2 / N)``, as Norse). Not copied, as
        Norse's ``input_weights``: an ``nn.Parameter`` is used as is, any other floating-point
        tensor is wrapped in a Parameter sharing its storage; its dtype and device are kept and
        the bias and delays follow them.
    sigma, interpolation, delay_init, delay_std, learn_delays
        As for :class:`snn_delays_ext.DelayedLinear`.

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext.norse import DelayedLIFCell
    >>> cell = DelayedLIFCell(2, 4, max_delay=5)
    >>> z, s = cell(torch.ones(3, 2))
    >>> z.shape
    torch.Size([3, 4])
    """

    def initial_state(self, input_tensor: torch.Tensor) -> DelayedLIFFeedForwardState:
        return self._zero_state(tuple(input_tensor.shape[:-1]), input_tensor)

    def forward(
        self, input_tensor: torch.Tensor, state: Optional[DelayedLIFFeedForwardState] = None
    ) -> Tuple[torch.Tensor, DelayedLIFFeedForwardState]:
        """One step ``(B, I)`` -> spikes ``(B, N)`` and the new state."""
        check_tensor(
            "input_tensor", input_tensor, ranks=(2,), last_dim=self.input_size,
            dtype=self.weight.dtype, device=self.weight.device,
        )
        check_finite("input_tensor", input_tensor)
        check_finite("delays", self.delays)
        if state is None:
            state = self.initial_state(input_tensor)
        else:
            state = self._check_state(state, input_tensor.shape[0])
        # one step reads only the non-zero band of each delay's taps (as DelayedLinear's step
        # mode): its cost does not grow with max_delay; inputs, delays and state checked above
        y, past = delayed_linear_step(
            input_tensor, self.weight, self.bias, self.delays, self.max_delay,
            self.delay_type, self._sigma, self.interpolation, state.past,
        )
        z, v, i = _lif_update(state.i + y, state.v, self.p, self.dt, detach_reset=False)
        return z, DelayedLIFFeedForwardState(v, i, past)


class DelayedLIF(_DelayedLIFBase):
    """:class:`DelayedLIFCell` over a time-first sequence (Norse's ``LIF`` behind a delayed
    linear map).

    The delayed map runs once over the whole sequence (one convolution), then the neuron loops
    over time. Same parameters as :class:`DelayedLIFCell`.

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext.norse import DelayedLIF
    >>> layer = DelayedLIF(2, 4, max_delay=5)
    >>> z, s = layer(torch.ones(10, 3, 2))
    >>> z.shape
    torch.Size([10, 3, 4])
    """

    def initial_state(self, input_tensor: torch.Tensor) -> DelayedLIFFeedForwardState:
        return self._zero_state(tuple(input_tensor.shape[1:-1]), input_tensor)

    def forward(
        self, input_tensor: torch.Tensor, state: Optional[DelayedLIFFeedForwardState] = None
    ) -> Tuple[torch.Tensor, DelayedLIFFeedForwardState]:
        """Sequence ``(T, B, I)`` -> spikes ``(T, B, N)`` and the last state."""
        check_tensor(
            "input_tensor", input_tensor, ranks=(3,), last_dim=self.input_size,
            dtype=self.weight.dtype, device=self.weight.device,
        )
        check_finite("input_tensor", input_tensor)
        check_finite("delays", self.delays)
        if state is None:
            state = self.initial_state(input_tensor)
        else:
            state = self._check_state(state, input_tensor.shape[1])
        y, past = run_delayed_linear(  # inputs, delays and state checked above
            input_tensor, self.weight, self.bias, self.delays, self.max_delay, self.delay_type,
            self._sigma, self.interpolation, state.past,
        )
        v, i = state.v, state.i
        out = []
        for t in range(input_tensor.shape[0]):
            z, v, i = _lif_update(i + y[t], v, self.p, self.dt, detach_reset=False)
            out.append(z)
        return torch.stack(out), DelayedLIFFeedForwardState(v, i, past)
