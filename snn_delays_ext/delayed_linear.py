"""``DelayedLinear``: a drop-in for :class:`torch.nn.Linear` with learnable delays."""

from __future__ import annotations

import math
import weakref
from typing import Optional

import torch
from torch import nn

from ._checks import (check_max_delay, check_choice, check_finite, check_int, check_nonneg_float, check_tensor,
                      has_data)
from ._delay_layer import DelayInit, DelayLayerMixin, init_delays
from .functional.delay_line import DelayLine, line_pays
from .functional.delayed_linear import (
    DELAY_TYPES_FF,
    delay_shape,
    delayed_linear_line_step,
    delayed_linear_step,
    fit_history,
    history_length,
    run_delayed_linear,
)
from .dispatch import Choice, delayed_linear_backend
from .functional.interpolation import INTERPOLATIONS

__all__ = ["DelayedLinear"]


class DelayedLinear(DelayLayerMixin, nn.Module):
    """Linear layer whose connections carry learnable transmission delays.

    .. math:: y_o(t) = b_o + \\sum_i w_{oi} \\sum_k h_k(l_{oi})\\, x_i(t - k)

    with tap weights ``h`` of the interpolation triangle (see
    :func:`snn_delays_ext.functional.delay_taps`) and delays ``l`` in time steps.

    A ``(B, in_features)`` input is **one time step**: the module keeps the past inputs in a
    ring buffer, like an snnTorch neuron keeps its membrane, so it replaces ``nn.Linear`` inside
    an existing time loop. Reset it between samples with :meth:`reset_state`,
    :func:`snn_delays_ext.reset` or ``snntorch.utils.reset(net)`` (importing ``snn_delays_ext``
    extends snnTorch's reset to this library's layers, see
    :func:`snn_delays_ext.install_snntorch_reset`). A ``(T, B, in_features)`` input is a
    **whole sequence**, processed in one call from silence before ``t = 0``, independent of the
    step buffer. A step loop from a fresh state and one sequence call give the same numbers; a
    step reads only the non-zero taps of each delay, so its cost does not grow with
    ``max_delay``.

    Mixed precision: inside ``torch.autocast`` the layer accepts an input of any floating dtype
    but float64 (e.g. the bfloat16 output of an ``nn.Linear``), computes in its parameters'
    dtype (the delay kernels are float32/float64, and interpolated delays lose precision in
    16-bit arithmetic) and returns the autocast dtype, like ``nn.Linear`` does. Outside
    autocast the input must have the parameters' dtype.

    ``load_state_dict`` checks that the checkpoint was saved from a layer with the same
    ``max_delay`` and ``delay_type`` (``ValueError`` otherwise: a smaller ``max_delay`` would
    clamp the trained delays) and restores the checkpoint's ``sigma`` and ``interpolation``, so
    the loaded layer computes what the saved one did (a warning says when that replaces the
    ``interpolation`` given to the constructor; set ``layer.interpolation`` after loading to
    evaluate in another mode). Checkpoints from versions without these fields load too.

    Parameters
    ----------
    in_features, out_features : int
        As for :class:`torch.nn.Linear`.
    max_delay : int
        Largest delay in time steps (>= 1); delays live in ``[0, max_delay]``.
    delay_type : {"synaptic", "axonal", "dendritic"}
        One delay per connection ``(out, in)``, per input ``(in,)`` or per output ``(out,)``.
    bias : bool
        Learn an additive bias (not delayed).
    sigma : float
        Extra half-width of the interpolation triangle, ``s = 1 + sigma`` (0: linear
        interpolation). Change it during training, e.g. with
        :class:`snn_delays_ext.SigmaScheduler`.
    interpolation : {"triangle", "round"}
        ``"round"`` uses the nearest integer delay forward and a straight-through gradient.
    delay_init : str, float or torch.Tensor
        ``"uniform"`` (default) in ``[0, max_delay]``, ``"half_normal"``, a constant or a
        tensor. Kept, so :meth:`reset_parameters` draws the delays again the same way.
    delay_std : float, optional
        Standard deviation for ``"half_normal"`` (default ``max_delay / 2``).
    learn_delays : bool
        If ``False`` the delays are fixed.
    device, dtype
        Factory arguments as for :class:`torch.nn.Linear`.

    Attributes
    ----------
    weight : torch.nn.Parameter
        ``(out_features, in_features)``, initialised like :class:`torch.nn.Linear`.
    bias : torch.nn.Parameter or None
        ``(out_features,)``.
    delays : torch.nn.Parameter
        Real-valued delays in time steps.

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext import DelayedLinear
    >>> layer = DelayedLinear(4, 3, max_delay=10)
    >>> x = torch.rand(25, 8, 4)                    # (T, B, F)
    >>> layer(x).shape
    torch.Size([25, 8, 3])
    >>> layer.reset_state()
    >>> steps = torch.stack([layer(x[t]) for t in range(25)])
    >>> torch.allclose(steps, layer(x), atol=1e-6)
    True
    """

    _instances: "weakref.WeakSet[DelayedLinear]" = weakref.WeakSet()

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        delay_type: str = "synaptic",
        bias: bool = True,
        sigma: float = 0.0,
        interpolation: str = "triangle",
        delay_init: DelayInit = "uniform",
        delay_std: Optional[float] = None,
        learn_delays: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.max_delay = check_max_delay(max_delay)
        self.min_delay = 0
        self.delay_type = check_choice("delay_type", delay_type, DELAY_TYPES_FF)
        self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
        self._sigma = check_nonneg_float("sigma", sigma)
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        shape = delay_shape(self.delay_type, self.in_features, self.out_features)
        d = init_delays("delay_init", shape, self.max_delay, 0, delay_init, delay_std, dtype, device)
        # the spec, for reset_parameters (a tensor is kept as a detached copy)
        self._delay_init: DelayInit = (
            delay_init.detach().clone() if isinstance(delay_init, torch.Tensor) else delay_init
        )
        self._delay_std = delay_std
        self.delays = nn.Parameter(d, requires_grad=bool(learn_delays))
        self._reset_weights()
        self.register_buffer("_past", torch.zeros(0, **factory), persistent=False)
        self._line: Optional[DelayLine] = None  # step mode with a long history: a ring buffer
        DelayedLinear._instances.add(self)

    def reset_parameters(self) -> None:
        """Initialise the parameters again: the delays as the constructor's ``delay_init`` says
        (a new draw for ``"uniform"``/``"half_normal"``), weight and bias as
        :class:`torch.nn.Linear` does.

        Also what completes a layer built on ``device="meta"`` after ``to_empty()``.
        """
        d = init_delays(
            "delay_init", tuple(self.delays.shape), self.max_delay, 0, self._delay_init,
            self._delay_std, self.delays.dtype, self.delays.device,
        )
        self._write_delays_(d)
        self._reset_weights()

    def _reset_weights(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    # -- state ---------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Forget the past inputs of step mode (call before each new sample batch)."""
        self._past = self._past.new_zeros(0)
        self._line = None

    def reset_mem(self) -> None:
        """Alias of :meth:`reset_state` (snnTorch's name)."""
        self.reset_state()

    def detach_state(self) -> None:
        """Detach the step buffer from the autograd graph (truncated BPTT)."""
        self._past = self._past.detach()
        if self._line is not None:
            self._line.cut()

    @classmethod
    def reset_hidden(cls) -> None:
        """Reset the step buffer of every ``DelayedLinear`` alive (snnTorch's class-level
        convention)."""
        for layer in list(cls._instances):
            layer.reset_state()

    # -- forward -----------------------------------------------------------------------------
    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        """Apply the layer to one step ``(B, in)`` or a sequence ``(T, B, in)``.

        Returns
        -------
        torch.Tensor
            ``(B, out)`` or ``(T, B, out)``.
        """
        amp = autocast_input(input_, self.weight, self.in_features)
        if amp is not None:
            # compute in the parameters' dtype, return autocast's dtype (as nn.Linear does)
            with torch.autocast(device_type=input_.device.type, enabled=False):
                return self._forward(input_.to(self.weight.dtype)).to(amp)
        check_tensor(
            "input_", input_, ranks=(2, 3), last_dim=self.in_features,
            dtype=self.weight.dtype, device=self.weight.device,
        )
        return self._forward(input_)

    def _forward(self, input_: torch.Tensor) -> torch.Tensor:
        check_finite("input_", input_)
        delays = self.delays
        check_finite("delays", delays)
        if input_.dim() == 3:  # from silence; kernels where snn_delays_ext.dispatch says so
            y, _ = run_delayed_linear(
                input_, self.weight, self.bias, delays, self.max_delay, self.delay_type,
                self._sigma, self.interpolation,
            )
            return y
        line = self._step_line(input_)
        if line is not None:
            return delayed_linear_line_step(
                input_, self.weight, self.bias, delays, self.max_delay, self.delay_type,
                self._sigma, self.interpolation, line,
            )
        past = None
        if self._past.numel() > 0:
            if self._past.shape[1] != input_.shape[0]:
                raise ValueError(
                    f"input_: batch size {input_.shape[0]} differs from the stored step state's "
                    f"batch size {self._past.shape[1]}; call reset_state() (or "
                    "snn_delays_ext.reset(net)) before a new batch"
                )
            past = self._past
        y, new_past = delayed_linear_step(
            input_, self.weight, self.bias, delays, self.max_delay, self.delay_type,
            self._sigma, self.interpolation, past,
        )
        self._past = new_past
        return y

    def _step_line(self, x: torch.Tensor) -> Optional[DelayLine]:
        """The ring buffer of step mode, made at the first step after a reset when the history
        is long enough for it to pay (:func:`~snn_delays_ext.functional.delay_line.line_pays`);
        ``None``: the history-buffer step. Under ``torch.compile`` and ``torch.func`` transforms
        the history buffer always runs (the ring's state lives outside the graph)."""
        K = history_length(self.max_delay, self._sigma)
        line = self._line
        if line is not None:
            if line.batch != x.shape[0]:
                raise ValueError(
                    f"input_: batch size {x.shape[0]} differs from the stored step state's batch size "
                    f"{line.batch}; call reset_state() (or snn_delays_ext.reset(net)) before a new batch")
            if line.K == K and line.values.dtype == x.dtype and line.values.device == x.device:
                return line
            # sigma (so the history length), the dtype or the device changed mid-sequence: continue
            # on the history buffer
            self._past, self._line = line.history().to(device=x.device, dtype=x.dtype), None
            return None
        if self._past.numel() > 0 or not (has_data(x) or x.device.type == "meta"):
            return None
        W = 2 * math.ceil(1.0 + self._sigma) + (self.interpolation == "round")
        outputs = self.out_features if self.delay_type == "synaptic" else 0
        if not line_pays(K, W, connection_outputs=outputs):
            return None
        row = x if self.delay_type != "dendritic" else x.new_empty((x.shape[0], self.out_features))
        self._line = DelayLine(K, row)
        return self._line

    def backend(self, input_: torch.Tensor) -> Choice:
        """What a call with ``input_`` runs, and why (:mod:`snn_delays_ext.dispatch`): a
        ``(T, B, in)`` sequence runs the compiled op where the rule allows; one ``(B, in)``
        step runs the plain-PyTorch step (it reads only the band of taps it needs).

        Examples
        --------
        >>> layer = DelayedLinear(3, 2, max_delay=5)
        >>> layer.backend(torch.zeros(4, 3)).backend
        'reference'
        """
        if not isinstance(input_, torch.Tensor) or input_.dim() != 3:
            return Choice("reference", "one (B, in) step runs the plain-PyTorch step")
        return delayed_linear_backend(input_, self.delay_type, self.max_delay, self._sigma, self.interpolation,
                                      self.weight, self.bias, self.delays)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {self._delay_repr()}"
        )


def autocast_input(x: torch.Tensor, param: torch.Tensor, n_features: int) -> Optional[torch.dtype]:
    """Inside an active ``torch.autocast``: check the input ``x`` of a delay layer whose
    parameters are like ``param`` (which then computes in ``param``'s dtype, autocast off) and
    return the autocast dtype its outputs take; ``None`` outside autocast."""
    amp = _autocast_dtype(x, param.dtype)
    if amp is None:
        return None
    check_tensor("input_", x, ranks=(2, 3), last_dim=n_features, device=param.device)
    if x.dtype == torch.float64:
        raise TypeError(
            f"input_: expected a floating dtype other than float64 under autocast (the "
            f"layer's parameters are {param.dtype}), got torch.float64"
        )
    return amp


def _autocast_dtype(x: torch.Tensor, param_dtype: torch.dtype) -> Optional[torch.dtype]:
    """The lower-precision dtype of an active ``torch.autocast`` for ``x``'s device, or ``None``
    (autocast off, or nothing to do: float64 parameters are never autocast)."""
    dev = x.device.type if isinstance(x, torch.Tensor) else "cpu"
    try:
        enabled = torch.is_autocast_enabled(dev)
        amp = torch.get_autocast_dtype(dev) if enabled else None
    except (TypeError, AttributeError, RuntimeError):  # pragma: no cover - torch < 2.4
        if dev == "cuda":
            enabled, amp = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
        elif dev == "cpu":
            enabled, amp = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        else:
            enabled, amp = False, None
    if not enabled or amp is None or param_dtype == torch.float64 or amp == param_dtype:
        return None
    return amp
