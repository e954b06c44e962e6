"""``DelayedRecurrentLeaky``: snnTorch's ``RLeaky`` with learnable recurrent delays."""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple, Union

import snntorch as snn
import torch
from torch import nn

from ._checks import (
    check_bool, check_choice, check_finite, check_fraction, check_int, check_max_delay, check_nonneg_float,
    check_tensor, has_data,
)
from ._delay_layer import DelayInit, DelayLayerMixin, init_delays
from .dispatch import Choice
from .delayed_linear import autocast_input
from .functional.delay_line import DelayLine, line_pays
from .functional.delayed_linear import fit_history
from .functional.interpolation import INTERPOLATIONS
from .functional.recurrent_leaky import (
    DELAY_TYPES_RECURRENT,
    RESET_CONVENTIONS,
    RESET_MECHANISMS,
    RecurrentLeakyParameters,
    RecurrentLeakyState,
    recurrent_delay_shape,
    recurrent_history_length,
    recurrent_leaky_choice,
    run_recurrent_leaky_line_step,
    run_recurrent_leaky_sequence,
    run_recurrent_leaky_step,
)

__all__ = ["DelayedRecurrentLeaky"]


_BACKWARDS = ("surrogate",)


def _forget_instance(layer: nn.Module) -> None:
    """Remove ``layer`` from snnTorch's global list of neurons (its constructor failed)."""
    instances = getattr(snn.SpikingNeuron, "instances", None)
    if isinstance(instances, list):
        instances[:] = [m for m in instances if m is not layer]


def _check_neuron_tensor(name: str, value: object, n: int) -> None:
    """A neuron parameter: a finite real number or a tensor of 1 or ``n`` finite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name}: expected a float or a tensor, got {type(value).__name__}")
    t = torch.as_tensor(value)
    if t.numel() not in (1, n) or t.dim() > 1:
        raise ValueError(f"{name}: expected a scalar or shape ({n},), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: expected finite values, got {t.flatten()[:4].tolist()}")


class DelayedRecurrentLeaky(DelayLayerMixin, snn.RLeaky):
    """Recurrent leaky integrate-and-fire layer with learnable recurrent delays (DelRec).

    A drop-in for ``snntorch.RLeaky(beta, linear_features=N)``: same arguments, same
    ``(spk, mem)`` returns, same ``init_hidden`` behaviour, same surrogate functions, and it is
    an ``snntorch.RLeaky`` subclass, so ``snntorch.utils.reset(net)`` resets its membrane, last
    spikes *and* delay buffer. The recurrent spikes reach the neurons after learnable delays:

    .. math::

        m_t = \\beta m_{t-1} + x_t + b + \\sum_j w_{ij} \\sum_{k \\ge 1} h_k(l_{ij}) s_j(t-k)
              - s_{t-1} \\vartheta

    A lag is in ``[1, max_delay]`` (a spike cannot come back in the step it is emitted); with
    every lag 1 and ``sigma = 0`` this is exactly ``RLeaky``.

    A ``(B, N)`` input is one step (state kept in the module like ``RLeaky``); a ``(T, B, N)``
    input is a whole sequence run from a zero state, independent of the step state, returning
    ``(T, B, N)`` spikes and membranes. From a fresh state both give the same numbers.

    Parameters
    ----------
    beta : float or torch.Tensor
        Membrane decay (clamped to ``[0, 1]``), scalar or per neuron.
    linear_features : int
        Number of neurons ``N``.
    max_delay : int
        Largest recurrent delay in steps (>= 1).
    delay_type : {"axonal", "synaptic"}
        One delay per presynaptic neuron ``(N,)`` (DelRec's choice: cheap) or per connection
        ``(N, N)``.
    threshold : float or torch.Tensor
        Firing threshold.
    spike_grad : callable, optional
        An ``snntorch.surrogate`` function (default ``atan()``),
        :func:`snn_delays_ext.surrogate.triangle` (DelRec's triangle), or any spike function.
        The compiled kernels run the recognised ones (see
        :func:`~snn_delays_ext.surrogate.surrogate_spec`); any other runs the reference path.
    surrogate_disable : bool
        As in snnTorch.
    init_hidden : bool
        Keep the state inside the module and return only ``spk`` (as snnTorch).
    learn_beta, learn_threshold, learn_recurrent : bool
        As in snnTorch.
    learn_delays : bool
        Learn the delays (default ``True``).
    reset_mechanism : {"subtract", "zero", "none"}
        As in snnTorch.
    output : bool
        With ``init_hidden=True``, return ``(spk, mem)`` instead of ``spk``.
    reset_delay : bool
        As in snnTorch: ``True`` resets the membrane one step after the spike.
    detach_reset : bool
        With ``reset_delay=False``, give the same-step reset no gradient (default ``False``:
        snnTorch's, where the reset term carries the spike's surrogate derivative). Forward
        values do not change. NIR's LIF is ``reset_mechanism="zero", reset_delay=False``.
    reset_convention : {"snntorch", "spikingjelly"}
        With ``reset_delay=False``: ``"snntorch"`` (default, snnTorch's ``reset_delay=False``:
        a membrane still above threshold after a subtractive reset is reset again before the
        next threshold test) or ``"spikingjelly"`` (spikingjelly's LIF, DelRec's neuron: each
        spike resets once and the test sees the charged membrane). They differ only when a
        membrane stays above threshold after its reset (a subtractive reset under strong drive).
    bias : bool
        Keep the recurrent bias (``RLeaky`` has one).
    backward : {"surrogate"}
        Gradient method (surrogate-gradient BPTT). EventProp is on the current-based layers.
    sigma : float
        Extra half-width of the interpolation triangle (``s = 1 + sigma``).
    interpolation : {"triangle", "round"}
    delay_init : str, float or torch.Tensor
        Default ``"half_normal"``: ``1 + |N(0, delay_std)|`` (DelRec), clamped.
    delay_std : float, optional
        Default ``max_delay / 2``.
    V : float or torch.Tensor
        As in snnTorch: with ``all_to_all=False`` each neuron's only recurrent connection is to
        itself, with weight ``V`` (scalar or ``(N,)``; learnable if ``learn_recurrent``), here
        after its own learnable delay (``delay_type="axonal"``, one delay per neuron). Unlike
        snnTorch, ``linear_features`` is still required (it sizes the delays).
    all_to_all : bool
        As in snnTorch: ``True`` (default) for a dense recurrent ``nn.Linear``.
    conv2d_channels, kernel_size : None
        snnTorch's convolutional recurrence is not supported; anything but ``None`` raises.
    inhibition : bool
        As in snnTorch: only the neuron with the largest membrane of each sample may fire.
    state_quant : callable or False
        As in snnTorch: a quantiser applied to the membrane after every update (e.g.
        ``snntorch.functional.quant.state_quant``).
    recurrent_dropout : float
        DelRec's recurrent dropout, in training only: each (sample, neuron)'s recurrent
        synaptic input (not the bias) is dropped with this probability, or scaled by
        ``1 / (1 - p)``, with one draw per sequence (in step mode: per state, from the first
        step after a reset to the next reset). Default 0.
    learn_width : bool
        DelRec's learnable triangle width (its ``p_spread``): each presynaptic neuron's delays
        read a triangle of half-width ``s_j = 1 + 2 sigma sigmoid(p_j)`` instead of
        ``1 + sigma``, with ``p`` the learnable ``width_logit`` ``(N,)`` (starting at 0, where
        ``s_j = 1 + sigma``). The spike history then spans the widest triangle,
        ``1 + 2 sigma``. Default ``False``.

    Notes
    -----
    The ``graded_spikes_factor`` buffer of snnTorch neurons is honoured too (spikes of that
    height, fed back and returned). ``inhibition``, ``state_quant``, ``graded_spikes_factor``
    other than 1 run on the plain-PyTorch path.

    Mixed precision: inside ``torch.autocast`` the layer takes any floating input but float64,
    computes in its parameters' dtype (the compiled kernels and the delay interpolation need
    float32 or float64) and returns the autocast dtype, as :class:`~snn_delays_ext.DelayedLinear`.

    DelRec's neuron is ``reset_mechanism="zero"`` (SHD) or ``"subtract"`` (SSC, PS-MNIST) with
    ``reset_delay=False``, ``reset_convention="spikingjelly"``, ``detach_reset=True`` (SHD) or
    ``False``, ``beta = 1 - 1/tau``, and its delay ``d`` is this layer's lag ``1 + d``; the
    compiled kernels run it, with ``recurrent_dropout`` and ``learn_width`` too.

    ``torch.func`` transforms (``vmap``, ``grad``: per-sample gradients) run the plain-PyTorch
    path and need a spike function written for them, such as
    :func:`snn_delays_ext.surrogate.triangle`; snnTorch's own surrogates are refused by
    functorch (as with ``snn.RLeaky``).

    Truncated BPTT works with snnTorch's idioms: detaching the ``spk`` you pass back (or
    ``RLeaky.detach_hidden()`` with ``init_hidden=True``) detaches the delay buffer as well, as
    do :meth:`detach_state` and :func:`snn_delays_ext.detach`.

    Examples
    --------
    >>> import torch, snntorch as snn
    >>> from snn_delays_ext import DelayedRecurrentLeaky
    >>> lif = DelayedRecurrentLeaky(beta=0.9, linear_features=16, max_delay=20)
    >>> spk, mem = lif(torch.rand(100, 4, 16))      # whole sequence (T, B, N)
    >>> spk.shape, mem.shape
    (torch.Size([100, 4, 16]), torch.Size([100, 4, 16]))
    >>> _ = lif.reset_mem()
    >>> spk_t, mem_t = lif(torch.rand(4, 16))      # one step, snnTorch-style
    """

    def __init__(
        self,
        beta: Union[float, torch.Tensor],
        linear_features: int,
        max_delay: int,
        delay_type: str = "axonal",
        threshold: Union[float, torch.Tensor] = 1.0,
        spike_grad: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        learn_recurrent: bool = True,
        learn_delays: bool = True,
        reset_mechanism: str = "subtract",
        output: bool = False,
        reset_delay: bool = True,
        bias: bool = True,
        backward: str = "surrogate",
        sigma: float = 0.0,
        interpolation: str = "triangle",
        delay_init: DelayInit = "half_normal",
        delay_std: Optional[float] = None,
        V: Union[float, torch.Tensor] = 1.0,
        all_to_all: bool = True,
        conv2d_channels: None = None,
        kernel_size: None = None,
        inhibition: bool = False,
        state_quant: Union[bool, Callable[[torch.Tensor], torch.Tensor]] = False,
        detach_reset: bool = False,
        recurrent_dropout: float = 0.0,
        learn_width: bool = False,
        reset_convention: str = "snntorch",
    ) -> None:
        n = check_int("linear_features", linear_features, minimum=1)
        recurrent_dropout = check_fraction("recurrent_dropout", recurrent_dropout, "a probability")
        check_bool("learn_width", learn_width)
        check_choice("reset_convention", reset_convention, RESET_CONVENTIONS)
        if reset_convention == "spikingjelly" and reset_delay:
            raise ValueError("reset_convention: 'spikingjelly' resets in the spike's own step, which needs "
                             "reset_delay=False; got reset_delay=True")
        check_choice("reset_mechanism", reset_mechanism, RESET_MECHANISMS)
        if conv2d_channels is not None or kernel_size is not None:
            raise ValueError(
                "conv2d_channels, kernel_size: DelayedRecurrentLeaky has dense (linear_features) "
                f"or one-to-one recurrence only, got conv2d_channels={conv2d_channels!r}, "
                f"kernel_size={kernel_size!r}"
            )
        check_bool("all_to_all", all_to_all)
        check_bool("inhibition", inhibition)
        check_bool("detach_reset", detach_reset)
        if state_quant is not False and state_quant is not None and not callable(state_quant):
            raise TypeError(f"state_quant: expected False or a callable, got {type(state_quant).__name__}")
        if not all_to_all and delay_type != "axonal":
            raise ValueError(
                f"delay_type: with all_to_all=False each neuron has one recurrent connection (to "
                f"itself), so its delay is one per neuron: expected 'axonal', got {delay_type!r}"
            )
        _check_neuron_tensor("beta", beta, n)
        _check_neuron_tensor("threshold", threshold, n)
        if not all_to_all:
            _check_neuron_tensor("V", V, n)
        try:
            super().__init__(
                beta,
                V=V,
                all_to_all=all_to_all,
                linear_features=n if all_to_all else None,
                inhibition=inhibition,
                state_quant=state_quant if state_quant is not None else False,
                threshold=threshold,
                spike_grad=spike_grad,
                surrogate_disable=surrogate_disable,
                init_hidden=init_hidden,
                learn_beta=learn_beta,
                learn_threshold=learn_threshold,
                learn_recurrent=learn_recurrent,
                reset_mechanism=reset_mechanism,
                output=output,
                reset_delay=reset_delay,
            )
            self.linear_features = n  # snnTorch leaves it None for all_to_all=False
            self.detach_reset = detach_reset
            self.max_delay = check_max_delay(max_delay)
            self.min_delay = 1
            self.delay_type = check_choice("delay_type", delay_type, DELAY_TYPES_RECURRENT)
            self.interpolation = check_choice("interpolation", interpolation, INTERPOLATIONS)
            self.backward = check_choice("backward", backward, _BACKWARDS)
            self._sigma = check_nonneg_float("sigma", sigma)
            if not bias and all_to_all:
                old = self.recurrent
                self.recurrent = nn.Linear(n, n, bias=False)
                with torch.no_grad():
                    self.recurrent.weight.copy_(old.weight)
                self.recurrent.weight.requires_grad_(old.weight.requires_grad)
            d = init_delays("delay_init", recurrent_delay_shape(delay_type, n), self.max_delay, 1, delay_init,
                            delay_std, None, None)
            self.delays = nn.Parameter(d, requires_grad=bool(learn_delays))
            self.recurrent_dropout = recurrent_dropout
            self.reset_convention = reset_convention
            self.learn_width = learn_width
            if learn_width:
                self.width_logit = nn.Parameter(torch.zeros(n, dtype=d.dtype))
            self._rec_mask: Optional[torch.Tensor] = None  # step mode: this state's dropout draw
            self.register_buffer("_past", torch.zeros(0), persistent=False)
            self._line: Optional[DelayLine] = None  # step mode, long histories: a ring buffer
            self._fresh = True
            self._graded()  # remember whether spikes are 1 (read by torch.compile'd calls)
        except BaseException:
            # snnTorch's neuron __init__ has already listed this half-built layer in the global
            # SpikingNeuron.instances that RLeaky.reset_hidden / snntorch.utils.reset walk
            _forget_instance(self)
            raise

    # -- snnTorch state protocol -------------------------------------------------------------
    def reset_mem(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Zero the membrane, the last spikes and the delay buffer (called by
        ``snntorch.utils.reset`` through ``RLeaky.reset_hidden``)."""
        # empty, not zeros of the last batch's shape: snnTorch's loop hands these back as the
        # first step's state (spk, mem = lif.init_rleaky()), and the next batch may be smaller
        if "_past" not in self._buffers:  # a layer whose constructor raised: nothing to reset
            return self.spk, self.mem
        self.spk = self.spk.new_zeros(0)
        self.mem = self.mem.new_zeros(0)
        self._past = self._past.new_zeros(0)
        self._line = None
        self._rec_mask = None
        self._fresh = True
        return self.spk, self.mem

    def detach_state(self) -> None:
        """Detach membrane, spikes and delay buffer from the graph (truncated BPTT)."""
        self.spk = self.spk.detach()
        self.mem = self.mem.detach()
        self._past = self._past.detach()
        if getattr(self, "_line", None) is not None:
            self._line.cut()

    def _graded(self) -> Union[float, torch.Tensor]:
        """snnTorch's ``graded_spikes_factor`` (the float 1.0 when it is a fixed 1)."""
        g = getattr(self, "graded_spikes_factor", 1.0)
        if not isinstance(g, torch.Tensor):
            return float(g)
        if g.requires_grad or g.numel() != 1:
            return g
        # reading a CUDA scalar synchronises: remember the answer until the buffer changes.
        # torch.compile cannot read it at all: it uses the last eager answer (set at
        # construction too), so change the factor before compiling, not inside a compiled call
        cached = getattr(self, "_graded_key", None)
        if not has_data(g):  # compiling, or a meta/fake buffer: the last answer read
            return 1.0 if cached is not None and cached[1] else g
        key = (id(g), g._version)
        if cached is None or cached[0] != key:
            self._graded_key = (key, float(g) == 1.0)
        return 1.0 if self._graded_key[1] else g

    def _plain_neuron(self) -> bool:
        """Whether the neuron is snnTorch's default one (what the compiled kernels run)."""
        graded = self._graded()
        return not self.inhibition and not self.state_quant and isinstance(graded, float) \
            and graded == 1.0

    @property
    def _tap_sigma(self) -> float:
        """The extra half-width of the widest triangle the delays read (``2 sigma`` with
        ``learn_width``: ``s_j = 1 + 2 sigma sigmoid(p_j)``)."""
        return 2.0 * self._sigma if self.learn_width else self._sigma

    def _dropout_scale(self, x: torch.Tensor, step: bool) -> Optional[torch.Tensor]:
        """The recurrent-dropout factors ``(B, N)`` of this call (``None``: no dropout): a new
        draw per sequence; in step mode one draw per state, kept until the next reset."""
        p = self.recurrent_dropout
        if not self.training or p == 0.0:
            return None
        shape = (x.shape[-2], self.linear_features)
        if step and not self._fresh and self._rec_mask is not None and tuple(self._rec_mask.shape) == shape:
            return self._rec_mask.to(x.dtype)
        mask = x.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)
        if step:
            self._rec_mask = mask
        return mask

    def _params(self, x: Optional[torch.Tensor] = None, step: bool = False) -> RecurrentLeakyParameters:
        return RecurrentLeakyParameters(
            beta=self.beta,
            threshold=self.threshold,
            spike_grad=self.spike_grad,
            reset_mechanism=self.reset_mechanism,
            reset_delay=self.reset_delay,
            graded_spikes_factor=self._graded(),
            state_quant=self.state_quant if self.state_quant else None,
            inhibition=bool(self.inhibition),
            detach_reset=self.detach_reset,
            recurrent_scale=None if x is None else self._dropout_scale(x, step),
            width=torch.sigmoid(self.width_logit) if self.learn_width else None,
            reset_convention=self.reset_convention,
        )

    def recurrent_weights(self) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The recurrent weight matrix ``(N, N)`` and bias the layer computes with:
        ``recurrent.weight`` and ``recurrent.bias``, or with ``all_to_all=False`` the diagonal
        matrix of ``V`` and no bias (snnTorch's one-to-one recurrence).

        Examples
        --------
        >>> lif = DelayedRecurrentLeaky(0.9, 3, max_delay=4, all_to_all=False, V=0.5)
        >>> w, b = lif.recurrent_weights()
        >>> w.diagonal().tolist(), b is None
        ([0.5, 0.5, 0.5], True)
        """
        if self.all_to_all:
            return self.recurrent.weight, self.recurrent.bias
        # one-to-one (snnTorch's RecurrentOneToOne): a diagonal weight matrix V
        v = self.V.reshape(-1)
        eye = torch.eye(self.linear_features, dtype=v.dtype, device=v.device)
        return eye * v, None

    # -- forward -----------------------------------------------------------------------------
    def forward(  # type: ignore[override]
        self,
        input_: torch.Tensor,
        spk: Optional[torch.Tensor] = None,
        mem: Optional[torch.Tensor] = None,
    ):
        """One step ``(B, N)`` or a sequence ``(T, B, N)``.

        Parameters
        ----------
        input_ : torch.Tensor
            Input current.
        spk, mem : torch.Tensor, optional
            Step mode without ``init_hidden``: the previous spikes and membrane (as snnTorch's
            ``RLeaky``); a given ``spk`` becomes the most recent entry of the delay buffer.

        Returns
        -------
        (spk, mem) or spk
            As snnTorch: ``(spk, mem)`` unless ``init_hidden=True`` and ``output=False``.
        """
        if self.init_hidden and (spk is not None or mem is not None):
            raise TypeError("When `init_hidden=True`, DelayedRecurrentLeaky expects 1 input argument.")
        amp = autocast_input(input_, self.delays, self.linear_features)
        if amp is not None:
            # as DelayedLinear: compute in the parameters' dtype, return autocast's dtype
            dt = self.delays.dtype
            with torch.autocast(device_type=input_.device.type, enabled=False):
                out = self.forward(
                    input_.to(dt), None if spk is None or spk.numel() == 0 else spk.to(dt),
                    None if mem is None or mem.numel() == 0 else mem.to(dt),
                )
            return tuple(o.to(amp) for o in out) if isinstance(out, tuple) else out.to(amp)
        weight, bias = self.recurrent_weights()
        n = self.linear_features
        check_tensor("input_", input_, ranks=(2, 3), last_dim=n, dtype=weight.dtype, device=weight.device)
        check_finite("input_", input_)
        check_finite("delays", self.delays)
        for name in ("beta", "threshold", "V"):
            t = getattr(self, name, None)
            if isinstance(t, torch.Tensor) and t.requires_grad:  # a learned one can diverge
                check_finite(name, t)
        params = self._params(input_, step=input_.dim() == 2)
        if input_.dim() == 3:
            if spk is not None or mem is not None:
                raise ValueError(
                    "spk, mem: a (T, B, N) sequence always starts from a zero state; pass the "
                    "state only with one (B, N) step"
                )
            spk_seq, mem_seq, _ = run_recurrent_leaky_sequence(  # from a zero state: kernels where they run
                input_, None, weight, bias, self.delays, params, self.max_delay,
                self.delay_type, self._tap_sigma, self.interpolation,
            )
            return self._returns(spk_seq, mem_seq)
        line = self._step_line(input_, spk, mem)
        if line is not None:
            cur_mem = self._step_mem(input_, mem)
            new_spk, new_mem = run_recurrent_leaky_line_step(
                input_, cur_mem, line, weight, bias, self.delays, params, self.max_delay,
                self.delay_type, self._tap_sigma, self.interpolation,
            )
            self.spk, self.mem = new_spk, new_mem
            self._fresh = False
            return self._returns(new_spk, new_mem)
        state = self._step_state(input_, spk, mem)
        new_spk, new_state = run_recurrent_leaky_step(
            input_, state, weight, bias, self.delays, params, self.max_delay,
            self.delay_type, self._tap_sigma, self.interpolation,
        )
        self.spk, self.mem, self._past = new_spk, new_state.mem, new_state.past
        self._fresh = False
        return self._returns(new_spk, new_state.mem)

    def backend(self, input_: torch.Tensor) -> Choice:
        """What a call with ``input_`` runs, and why (:mod:`snn_delays_ext.dispatch`): a
        ``(T, B, N)`` sequence runs the compiled op where the rule allows; one ``(B, N)`` step
        runs the plain-PyTorch step.

        Examples
        --------
        >>> lif = DelayedRecurrentLeaky(0.9, 4, max_delay=5, inhibition=True)
        >>> lif.backend(torch.zeros(10, 2, 4)).backend
        'reference'
        """
        if not isinstance(input_, torch.Tensor) or input_.dim() != 3:
            return Choice("reference", "one (B, N) step runs the plain-PyTorch step")
        weight, bias = self.recurrent_weights()
        return recurrent_leaky_choice(input_, None, weight, bias, self.delays, self._params())[0]

    def _returns(self, spk: torch.Tensor, mem: torch.Tensor):
        if self.output:
            return spk, mem
        if self.init_hidden:
            return spk
        return spk, mem

    def _step_line(
        self, x: torch.Tensor, spk: Optional[torch.Tensor], mem: Optional[torch.Tensor]
    ) -> Optional[DelayLine]:
        """The ring buffer of step mode (``None``: the history-buffer step), made at the first
        step after a reset when the history is long enough for it to pay
        (:func:`~snn_delays_ext.functional.delay_line.line_pays`). The spikes a caller hands
        back must be the ones this layer returned (or a detached view of them: truncated
        BPTT, which cuts the ring's graph); other spikes, a changed history length, and
        ``torch.compile`` / ``torch.func`` move the layer to the history buffer."""
        spk = spk if isinstance(spk, torch.Tensor) and spk.numel() > 0 else None
        line = self._line
        K = recurrent_history_length(self.max_delay, self._tap_sigma)
        if line is None:
            fresh = self._fresh or self._past.numel() == 0
            if not fresh or spk is not None or not (has_data(x) or x.device.type == "meta"):
                return None
            W = 2 * math.ceil(1.0 + self._tap_sigma) + (self.interpolation == "round")
            n = self.linear_features
            if not line_pays(K, W, recurrent=True, connection_outputs=n if self.delay_type == "synaptic" else 0):
                return None
            self._line = DelayLine(K, x)
            return self._line
        if line.batch != x.shape[0]:
            raise ValueError(
                f"input_: batch size {x.shape[0]} differs from the stored state's batch size "
                f"{line.batch}; call reset_mem() or snntorch.utils.reset(net) before a new batch")
        last = spk if spk is not None else (self.spk if self.init_hidden else None)
        if spk is not None:
            check_tensor("spk", spk, ranks=(2,), dtype=x.dtype, device=x.device)
        mine = line.recent[-1] if line.recent else None
        same = last is None or last is mine or (
            mine is not None and last.shape == mine.shape and last.data_ptr() == mine.data_ptr()
            and last.stride() == mine.stride() and not last.requires_grad)
        if not same or line.K != K or line.values.dtype != x.dtype or line.values.device != x.device:
            self._past, self._line = line.history().to(device=x.device, dtype=x.dtype), None  # on the buffer
            return None
        if last is not None and line.graph and not last.requires_grad:
            line.cut()  # snnTorch-style truncated BPTT: the caller detached the spikes
        return line

    def _step_history(self) -> torch.Tensor:
        """The last ``K`` spike vectors of step mode, oldest first (empty before the first
        step), whichever buffer holds them."""
        return self._line.history() if self._line is not None else self._past

    def _step_mem(self, x: torch.Tensor, mem: Optional[torch.Tensor]) -> torch.Tensor:
        """The membrane a ring step starts from: the given one, else the stored one."""
        if isinstance(mem, torch.Tensor) and mem.numel() > 0:
            check_tensor("mem", mem, ranks=(2,), dtype=x.dtype, device=x.device)
            if tuple(mem.shape) != tuple(x.shape):
                raise ValueError(f"mem: expected shape {tuple(x.shape)} (the input's), got {tuple(mem.shape)}")
            check_finite("mem", mem)
            return mem
        return self.mem if not self._fresh and self.mem.shape == x.shape else x.new_zeros(x.shape)

    def _step_state(
        self, x: torch.Tensor, spk: Optional[torch.Tensor], mem: Optional[torch.Tensor]
    ) -> RecurrentLeakyState:
        B, n = x.shape
        K = recurrent_history_length(self.max_delay, self._tap_sigma)
        # snnTorch's init_rleaky()/reset_mem() hand out empty tensors meaning "no state yet"
        if spk is not None and isinstance(spk, torch.Tensor) and spk.numel() == 0:
            spk = None
        if mem is not None and isinstance(mem, torch.Tensor) and mem.numel() == 0:
            mem = None
        for name, t in (("spk", spk), ("mem", mem)):
            if t is not None:
                check_tensor(name, t, ranks=(2,), dtype=x.dtype, device=x.device)
                if tuple(t.shape) != (B, n):
                    raise ValueError(f"{name}: expected shape {(B, n)} (the input's), got {tuple(t.shape)}")
                check_finite(name, t)
        fresh = self._fresh or self._past.numel() == 0
        # truncated BPTT, snnTorch style: the caller detached the spikes it hands back (or
        # RLeaky.detach_hidden() detached self.spk in place), so cut the delay buffer there too
        last = spk if spk is not None else (self.spk if self.init_hidden else None)
        if not fresh and last is not None and self._past.requires_grad and not last.requires_grad:
            self._past = self._past.detach()
        if not fresh and self._past.shape[1] != B:
            raise ValueError(
                f"input_: batch size {B} differs from the stored state's batch size "
                f"{self._past.shape[1]}; call reset_mem() or snntorch.utils.reset(net) before a "
                "new batch"
            )
        if fresh:
            past = x.new_zeros(K, B, n)
            cur_mem = x.new_zeros(B, n)
        else:
            past = fit_history(self._past.to(x.dtype), K)
            cur_mem = self.mem if self.mem.shape == x.shape else x.new_zeros(B, n)
        if mem is not None:
            cur_mem = mem
        if spk is not None:
            past = torch.cat([past[:-1], spk.unsqueeze(0)], 0)
        return RecurrentLeakyState(cur_mem, past)

    def extra_repr(self) -> str:
        extra = f", recurrent_dropout={self.recurrent_dropout:g}" if self.recurrent_dropout else ""
        extra += ", learn_width=True" if self.learn_width else ""
        extra += f", reset_convention={self.reset_convention!r}" if self.reset_convention != "snntorch" else ""
        return f"linear_features={self.linear_features}, {self._delay_repr()}{extra}"
