"""snnTorch's ``Leaky`` neuron over a whole sequence, as a pure function (Norse-style).

The feed-forward LIF layer of :class:`~snn_delays_ext.train.FeedForwardSNN`: per step, exactly
as snnTorch 1.0's ``snn.Leaky`` stepped from ``init_leaky()``,

.. math::

    r_t &= \\Theta(m_{t-1} - \\vartheta) \\quad \\text{(detached)} \\\\
    m'_t &= \\beta m_{t-1} + x_t - r_t \\vartheta
        \\quad \\text{(subtract; zero: } \\beta (1 - r_t) m_{t-1} + x_t
        \\text{; none: } \\beta m_{t-1} + x_t) \\\\
    s_t &= \\Theta(m'_t - \\vartheta)

with ``beta`` clamped to ``[0, 1]``, and ``m_t = m'_t`` (``reset_delay=True``, snnTorch's
default: a spike resets the membrane at the next step) or the reset in the spike's own step
(``reset_delay=False``): ``m_t = m'_t - (s_t - r_t) \\vartheta`` (subtract) or
``m'_t - (s_t - r_t) m'_t`` (zero), the reset carrying the spike's surrogate gradient unless
``detach_reset``. ``Theta`` is the spike function (Heaviside forward, surrogate derivative
backward).

:func:`leaky_sequence` runs the compiled op ``torch.ops.snn_delays_ext.leaky_sequence`` (the
time loop inside C++ or CUDA, one autograd node for the whole sequence) when
:func:`snn_delays_ext.dispatch.leaky_sequence_backend` allows it, else the plain-PyTorch step
loop :func:`leaky_step` (the oracle of the tests). Both give the same spikes, membranes and
gradients.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple

import torch

from .._checks import check_bool, check_choice, check_finite, check_operand
from ..dispatch import Choice, leaky_sequence_backend
from ..surrogate import surrogate_spec_constant
from .recurrent_leaky import RESET_CONVENTIONS, RESET_MECHANISMS, _check_neuron_tensors

__all__ = ["LeakyParameters", "leaky_sequence", "leaky_sequence_choice", "leaky_step"]


class LeakyParameters(NamedTuple):
    """Neuron parameters of :func:`leaky_step` and :func:`leaky_sequence` (snnTorch ``Leaky``).

    Parameters
    ----------
    beta : torch.Tensor
        Membrane decay, clamped to ``[0, 1]`` when used: a scalar or ``(N,)``, one per neuron
        (learnable if it requires a gradient).
    threshold : torch.Tensor
        Firing threshold, a scalar or ``(N,)`` (learnable if it requires a gradient).
    spike_grad : callable, optional
        Spike function, e.g. ``snntorch.surrogate.atan()``: Heaviside forward, surrogate
        derivative backward. ``None``: snnTorch's default, ``atan(alpha=2.0)``.
    reset_mechanism : {"subtract", "zero", "none"}
        snnTorch's ``reset_mechanism``. The zero reset of ``Leaky`` clears the previous
        membrane before the decay, ``beta (1 - r) m + x`` (``RLeaky``'s clears the input too).
    reset_delay : bool
        ``True`` (snnTorch's default): a spike resets the membrane at the next step; ``False``:
        in its own step.
    detach_reset : bool
        With ``reset_delay=False``: no gradient through the same-step reset (``False``,
        snnTorch's: the membrane is reset with the spike and its surrogate derivative). The
        late reset (``reset_delay=True``) never carries one, as in snnTorch.
    reset_convention : {"snntorch", "spikingjelly"}
        With ``reset_delay=False``: ``"snntorch"`` (a membrane still above threshold after its
        reset is reset again before the next test) or ``"spikingjelly"`` (each spike resets
        once: no late reset at all). ``reset_mechanism="zero", reset_delay=False,
        detach_reset=True, reset_convention="spikingjelly"`` is
        :class:`~snn_delays_ext.train.FeedForwardSNN`'s detached zero-reset neuron (NIR's LIF).

    Examples
    --------
    >>> p = LeakyParameters(torch.tensor(0.9), torch.tensor(1.0))
    >>> p.reset_mechanism, p.reset_delay
    ('subtract', True)
    """

    beta: torch.Tensor
    threshold: torch.Tensor
    spike_grad: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    reset_mechanism: str = "subtract"
    reset_delay: bool = True
    detach_reset: bool = False
    reset_convention: str = "snntorch"


def _spike_fn(p: LeakyParameters) -> Callable[[torch.Tensor], torch.Tensor]:
    if p.spike_grad is not None:
        return p.spike_grad
    from snntorch import surrogate

    return surrogate.atan()


def _step(x: torch.Tensor, mem: torch.Tensor, p: LeakyParameters,
          spike: Callable[[torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """One ``Leaky`` step in snnTorch's order of operations (arguments checked)."""
    thr, beta = p.threshold, p.beta.clamp(0, 1)
    late = p.reset_mechanism != "none" and not (p.reset_convention == "spikingjelly" and not p.reset_delay)
    reset = spike(mem - thr).detach().to(mem.dtype) if late else None
    if p.reset_mechanism == "zero" and reset is not None:
        m1 = beta * ((1 - reset) * mem) + x
    elif p.reset_mechanism == "subtract" and reset is not None:
        m1 = beta * mem + x - reset * thr
    else:
        m1 = beta * mem + x
    spk = spike(m1 - thr).to(x.dtype)
    if p.reset_delay or p.reset_mechanism == "none":
        return spk, m1
    s = spk.detach() if p.detach_reset else spk
    d = s - reset if reset is not None else s
    return spk, (m1 - d * thr if p.reset_mechanism == "subtract" else m1 - d * m1)


def _check_args(x: object, mem: object, p: object, step: bool) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not step and x.dim() != 3:
        raise ValueError(f"x: expected a time-first sequence (T, B, N) of rank 3, got rank {x.dim()} with shape "
                         f"{tuple(x.shape)}")
    if step and x.dim() < 1:
        raise ValueError("x: expected a tensor of rank >= 1 (..., N), got a scalar")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    if not isinstance(p, LeakyParameters):
        raise TypeError(f"params: expected a LeakyParameters, got {type(p).__name__}")
    n = x.shape[-1]
    _check_neuron_tensors(p, x, n)
    if p.spike_grad is not None and not callable(p.spike_grad):
        raise TypeError(f"params.spike_grad: expected a callable spike function or None, got "
                        f"{type(p.spike_grad).__name__}")
    check_choice("params.reset_mechanism", p.reset_mechanism, RESET_MECHANISMS)
    check_bool("params.reset_delay", p.reset_delay)
    check_bool("params.detach_reset", p.detach_reset)
    check_choice("params.reset_convention", p.reset_convention, RESET_CONVENTIONS)
    if p.reset_convention == "spikingjelly" and p.reset_delay:
        raise ValueError("params.reset_convention: 'spikingjelly' resets in the spike's own step, which needs "
                         "reset_delay=False; got reset_delay=True")
    if mem is not None:
        shape = tuple(x.shape) if step else tuple(x.shape[1:])
        check_operand("mem", mem, shape, x, "the membrane: " + ("that of x" if step else "(B, N) of x"))
    # values as snn_delays_ext.set_validation says (by default on CPU tensors only); not x's: a
    # pass over the whole sequence would cost as much as the op (a NaN input gives NaN outputs)
    check_finite("params.beta", p.beta.detach())
    check_finite("params.threshold", p.threshold.detach())


def leaky_step(x: torch.Tensor, mem: Optional[torch.Tensor], params: LeakyParameters
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One step of snnTorch's ``Leaky`` neuron in plain PyTorch: ``snn.Leaky(...)(x, mem)``.

    Parameters
    ----------
    x : torch.Tensor
        Input current ``(..., N)``, e.g. ``(B, N)``.
    mem : torch.Tensor or None
        Membrane of the previous step (``x``'s shape); ``None`` (snnTorch's ``init_leaky()``):
        at rest, zero.
    params : LeakyParameters

    Returns
    -------
    spk : torch.Tensor
        Spikes, in ``x``'s dtype.
    mem : torch.Tensor
        The new membrane.

    Examples
    --------
    >>> p = LeakyParameters(torch.tensor(0.5), torch.tensor(1.0))
    >>> spk, mem = leaky_step(torch.tensor([[1.5, 0.5]]), None, p)
    >>> spk, mem
    (tensor([[1., 0.]]), tensor([[1.5000, 0.5000]]))
    >>> leaky_step(torch.tensor([[0.0, 0.0]]), mem, p)[1]   # the late reset: 0.5 * 1.5 - 1
    tensor([[-0.2500,  0.2500]])
    """
    _check_args(x, mem, params, step=True)
    return _step(x, torch.zeros_like(x) if mem is None else mem, params, _spike_fn(params))


def leaky_sequence_choice(x: torch.Tensor, params: LeakyParameters, mem: Optional[torch.Tensor] = None,
                          backend: str = "auto") -> Tuple[Choice, Optional[Tuple[int, float]]]:
    """What :func:`leaky_sequence` runs for these arguments (the
    :class:`~snn_delays_ext.dispatch.Choice`), and the kernel's surrogate ``(kind, param)``.

    Examples
    --------
    >>> p = LeakyParameters(torch.tensor(0.9), torch.tensor(1.0))
    >>> leaky_sequence_choice(torch.zeros(4, 2, 3), p, backend="reference")[0].backend
    'reference'
    """
    n = x.shape[-1]
    spec = surrogate_spec_constant(params.spike_grad)
    shapes_ok = all(t.dim() <= 1 and t.numel() in (1, n) for t in (params.beta, params.threshold))
    choice = leaky_sequence_backend(x, zero_state=mem is None, surrogate_known=spec is not None,
                                    neuron_shapes_ok=shapes_ok, params=(params.beta, params.threshold),
                                    backend=backend)
    return choice, spec


def leaky_sequence(x: torch.Tensor, params: LeakyParameters, mem: Optional[torch.Tensor] = None,
                   backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's ``Leaky`` neuron over a whole time-first sequence.

    The same spikes, membranes and gradients (input, ``beta``, ``threshold``) as
    ``snn.Leaky(beta, threshold, spike_grad, reset_mechanism=..., reset_delay=...)`` called once
    per step from ``init_leaky()``, in one call: the compiled op runs the time loop in C++ (CUDA
    on a GPU) with a single autograd node and a reverse-time backward, where
    :func:`snn_delays_ext.dispatch.leaky_sequence_backend` allows it (a zero initial membrane,
    a surrogate the kernels know, scalar or per-neuron ``beta`` and ``threshold``); otherwise
    the plain-PyTorch step loop runs (:func:`leaky_step`).

    Parameters
    ----------
    x : torch.Tensor
        Input current ``(T, B, N)``.
    params : LeakyParameters
        The neuron.
    mem : torch.Tensor, optional
        Initial membrane ``(B, N)``; ``None``: zero (snnTorch's ``init_leaky()``). A given
        membrane runs the reference.
    backend : {"auto", "compiled", "reference"}
        ``"compiled"`` raises a ``ValueError`` saying why if the op cannot run.

    Returns
    -------
    spk : torch.Tensor
        ``(T, B, N)`` spikes in ``x``'s dtype (snnTorch's are float32).
    mem : torch.Tensor
        ``(T, B, N)`` membranes, each step's as snnTorch returns it (after a same-step reset).

    Examples
    --------
    >>> p = LeakyParameters(torch.tensor(0.5), torch.tensor(1.0), reset_mechanism="zero")
    >>> spk, mem = leaky_sequence(torch.full((4, 1, 1), 0.6), p)
    >>> spk.flatten(), mem.flatten()   # as snnTorch: fires at 1.05, cleared one step later
    (tensor([0., 0., 1., 0.]), tensor([0.6000, 0.9000, 1.0500, 0.6000]))
    """
    _check_args(x, mem, params, step=False)
    choice, spec = leaky_sequence_choice(x, params, mem, backend)
    if choice.backend == "compiled":
        from ._compiled import leaky_sequence_compiled

        assert spec is not None
        return leaky_sequence_compiled(x, params.beta, params.threshold, params.reset_mechanism, spec,
                                       params.reset_delay, params.detach_reset, params.reset_convention)
    spike = _spike_fn(params)
    m = x.new_zeros(x.shape[1:]) if mem is None else mem
    spikes, mems = [], []
    for xt in x.unbind(0):
        s, m = _step(xt, m, params, spike)
        spikes.append(s)
        mems.append(m)
    if not spikes:  # T = 0: empty outputs, still in x's graph (as the op's)
        return x * 0, x * 0
    return torch.stack(spikes), torch.stack(mems)
