"""snnTorch's current-based ``Synaptic`` neuron over a whole sequence, as a pure function.

Per step, exactly as snnTorch 1.0's ``snn.Synaptic`` stepped from ``reset_mem()`` (zero current
and membrane),

.. math::

    r_t &= \\Theta(m_{t-1} - \\vartheta) \\quad \\text{(detached)} \\\\
    i_t &= \\alpha i_{t-1} + x_t \\\\
    m'_t &= \\beta m_{t-1} + i_t - r_t \\vartheta
        \\quad \\text{(subtract; zero: } (1 - r_t)(\\beta m_{t-1} + i_t)
        \\text{; none: } \\beta m_{t-1} + i_t) \\\\
    s_t &= \\Theta(m'_t - \\vartheta)

with ``alpha`` and ``beta`` clamped to ``[0, 1]``, the synaptic current ``i`` never reset, and
``m_t = m'_t`` (``reset_delay=True``, snnTorch's default) or the reset in the spike's own step
(``reset_delay=False``): ``m_t = m'_t - (s_t - r_t) \\vartheta`` (subtract) or
``m'_t - (s_t - r_t) m'_t`` (zero), the reset carrying the spike's surrogate gradient unless
``detach_reset``. ``Theta`` is the spike function (Heaviside forward, surrogate derivative
backward). Unlike ``Leaky``'s, ``Synaptic``'s zero reset clears the whole charged membrane, the
new current included.

:func:`synaptic_sequence` runs the compiled op ``torch.ops.snn_delays_ext.synaptic_sequence``
(the time loop inside C++ or CUDA, one autograd node for the whole sequence) when
:func:`snn_delays_ext.dispatch.synaptic_sequence_backend` allows it, else the plain-PyTorch step
loop :func:`synaptic_step` (the oracle of the tests). Both give the same spikes, currents,
membranes and gradients.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple

import torch

from .._checks import check_finite, check_operand
from ..dispatch import Choice, synaptic_sequence_backend
from ..surrogate import surrogate_spec_constant
from .leaky_sequence import LeakyParameters, _check_args, _spike_fn
from .recurrent_leaky import _check_neuron_tensors

__all__ = ["SynapticParameters", "synaptic_sequence", "synaptic_sequence_choice", "synaptic_step"]


class SynapticParameters(NamedTuple):
    """Neuron parameters of :func:`synaptic_step` and :func:`synaptic_sequence` (snnTorch
    ``Synaptic``).

    Parameters
    ----------
    alpha : torch.Tensor
        Synaptic current decay, clamped to ``[0, 1]`` when used: a scalar or ``(N,)``, one per
        neuron (learnable if it requires a gradient).
    beta : torch.Tensor
        Membrane decay, clamped to ``[0, 1]`` when used: a scalar or ``(N,)``.
    threshold : torch.Tensor
        Firing threshold, a scalar or ``(N,)``.
    spike_grad : callable, optional
        Spike function, e.g. ``snntorch.surrogate.atan()``: Heaviside forward, surrogate
        derivative backward. ``None``: snnTorch's default, ``atan(alpha=2.0)``.
    reset_mechanism : {"subtract", "zero", "none"}
        snnTorch's ``reset_mechanism``. The zero reset clears the charged membrane
        ``beta m + i``; the synaptic current is never reset.
    reset_delay : bool
        ``True`` (snnTorch's default): a spike resets the membrane at the next step; ``False``:
        in its own step.
    detach_reset : bool
        With ``reset_delay=False``: no gradient through the same-step reset (``False``,
        snnTorch's: the membrane is reset with the spike and its surrogate derivative).
    reset_convention : {"snntorch", "spikingjelly"}
        With ``reset_delay=False``: ``"snntorch"`` (a membrane still above threshold after its
        reset is reset again before the next test) or ``"spikingjelly"`` (each spike resets
        once), as :class:`~snn_delays_ext.functional.LeakyParameters`.

    Examples
    --------
    >>> p = SynapticParameters(torch.tensor(0.8), torch.tensor(0.9), torch.tensor(1.0))
    >>> p.reset_mechanism, p.reset_delay
    ('subtract', True)
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    threshold: torch.Tensor
    spike_grad: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    reset_mechanism: str = "subtract"
    reset_delay: bool = True
    detach_reset: bool = False
    reset_convention: str = "snntorch"


def _membrane_view(p: SynapticParameters) -> LeakyParameters:
    """The membrane's parameters, for the checks shared with :func:`leaky_sequence`."""
    return LeakyParameters(p.beta, p.threshold, p.spike_grad, p.reset_mechanism, p.reset_delay, p.detach_reset,
                           p.reset_convention)


def _step(x: torch.Tensor, syn: torch.Tensor, mem: torch.Tensor, p: SynapticParameters,
          spike: Callable[[torch.Tensor], torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ``Synaptic`` step in snnTorch's order of operations (arguments checked)."""
    thr = p.threshold
    syn = p.alpha.clamp(0, 1) * syn + x
    base = p.beta.clamp(0, 1) * mem + syn
    late = p.reset_mechanism != "none" and not (p.reset_convention == "spikingjelly" and not p.reset_delay)
    reset = spike(mem - thr).detach().to(mem.dtype) if late else None
    if reset is not None and p.reset_mechanism == "subtract":
        m1 = base - reset * thr
    elif reset is not None and p.reset_mechanism == "zero":
        m1 = base - base * reset
    else:
        m1 = base
    spk = spike(m1 - thr).to(x.dtype)
    if p.reset_delay or p.reset_mechanism == "none":
        return spk, syn, m1
    s = spk.detach() if p.detach_reset else spk
    d = s - reset if reset is not None else s
    return spk, syn, (m1 - d * thr if p.reset_mechanism == "subtract" else m1 - d * m1)


def _check(x: object, syn: object, mem: object, p: object, step: bool) -> None:
    if not isinstance(p, SynapticParameters):
        raise TypeError(f"params: expected a SynapticParameters, got {type(p).__name__}")
    _check_args(x, mem, _membrane_view(p), step)  # x, beta, threshold, the options, mem
    assert isinstance(x, torch.Tensor)
    _check_neuron_tensors(p, x, x.shape[-1], ("alpha",))
    check_finite("params.alpha", p.alpha.detach())
    if syn is not None:
        shape = tuple(x.shape) if step else tuple(x.shape[1:])
        check_operand("syn", syn, shape, x, "the synaptic current: " + ("that of x" if step else "(B, N) of x"))


def synaptic_step(x: torch.Tensor, syn: Optional[torch.Tensor], mem: Optional[torch.Tensor],
                  params: SynapticParameters) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of snnTorch's ``Synaptic`` neuron in plain PyTorch: ``snn.Synaptic(...)(x, syn, mem)``.

    Parameters
    ----------
    x : torch.Tensor
        Input current ``(..., N)``, e.g. ``(B, N)``.
    syn : torch.Tensor or None
        Synaptic current of the previous step (``x``'s shape); ``None``: zero.
    mem : torch.Tensor or None
        Membrane of the previous step (``x``'s shape); ``None``: zero.
    params : SynapticParameters

    Returns
    -------
    spk : torch.Tensor
        Spikes, in ``x``'s dtype.
    syn : torch.Tensor
        The new synaptic current.
    mem : torch.Tensor
        The new membrane.

    Examples
    --------
    >>> p = SynapticParameters(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(1.0))
    >>> synaptic_step(torch.tensor([[0.6]]), torch.tensor([[0.6]]), torch.tensor([[0.6]]), p)
    (tensor([[1.]]), tensor([[0.9000]]), tensor([[1.2000]]))
    """
    _check(x, syn, mem, params, step=True)
    zero = torch.zeros_like(x)
    return _step(x, zero if syn is None else syn, zero if mem is None else mem, params, _spike_fn(params))


def synaptic_sequence_choice(x: torch.Tensor, params: SynapticParameters, syn: Optional[torch.Tensor] = None,
                             mem: Optional[torch.Tensor] = None, backend: str = "auto"
                             ) -> Tuple[Choice, Optional[Tuple[int, float]]]:
    """What :func:`synaptic_sequence` runs for these arguments (the
    :class:`~snn_delays_ext.dispatch.Choice`), and the kernel's surrogate ``(kind, param)``.

    Examples
    --------
    >>> p = SynapticParameters(torch.tensor(0.8), torch.tensor(0.9), torch.tensor(1.0))
    >>> synaptic_sequence_choice(torch.zeros(4, 2, 3), p, backend="reference")[0].backend
    'reference'
    """
    n = x.shape[-1]
    spec = surrogate_spec_constant(params.spike_grad)
    neurons = (params.alpha, params.beta, params.threshold)
    choice = synaptic_sequence_backend(x, zero_state=syn is None and mem is None, surrogate_known=spec is not None,
                                       neuron_shapes_ok=all(t.dim() <= 1 and t.numel() in (1, n) for t in neurons),
                                       params=neurons, backend=backend)
    return choice, spec


def synaptic_sequence(x: torch.Tensor, params: SynapticParameters, syn: Optional[torch.Tensor] = None,
                      mem: Optional[torch.Tensor] = None, backend: str = "auto"
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """snnTorch's ``Synaptic`` neuron over a whole time-first sequence.

    The same spikes, synaptic currents, membranes and gradients (input, ``alpha``, ``beta``,
    ``threshold``) as ``snn.Synaptic(alpha, beta, threshold, spike_grad, reset_mechanism=...,
    reset_delay=...)`` called once per step from ``reset_mem()``, in one call: the compiled op
    runs the time loop in C++ (CUDA on a GPU) with a single autograd node and a reverse-time
    backward, where :func:`snn_delays_ext.dispatch.synaptic_sequence_backend` allows it (a zero
    initial state, a surrogate the kernels know, scalar or per-neuron ``alpha``, ``beta`` and
    ``threshold``); otherwise the plain-PyTorch step loop runs (:func:`synaptic_step`).

    Parameters
    ----------
    x : torch.Tensor
        Input current ``(T, B, N)``.
    params : SynapticParameters
        The neuron.
    syn, mem : torch.Tensor, optional
        Initial synaptic current and membrane ``(B, N)``; ``None``: zero (snnTorch's
        ``reset_mem()``). A given state runs the reference.
    backend : {"auto", "compiled", "reference"}
        ``"compiled"`` raises a ``ValueError`` saying why if the op cannot run.

    Returns
    -------
    spk : torch.Tensor
        ``(T, B, N)`` spikes in ``x``'s dtype (snnTorch's are float32).
    syn : torch.Tensor
        ``(T, B, N)`` synaptic currents.
    mem : torch.Tensor
        ``(T, B, N)`` membranes, each step's as snnTorch returns it (after a same-step reset).

    Examples
    --------
    >>> p = SynapticParameters(torch.tensor(0.5), torch.tensor(0.5), torch.tensor(1.0))
    >>> spk, syn, mem = synaptic_sequence(torch.full((4, 1, 1), 0.6), p)
    >>> spk.flatten(), mem.flatten()   # fires at 1.2, threshold subtracted one step later
    (tensor([0., 1., 0., 1.]), tensor([0.6000, 1.2000, 0.6500, 1.4500]))
    """
    _check(x, syn, mem, params, step=False)
    choice, spec = synaptic_sequence_choice(x, params, syn, mem, backend)
    if choice.backend == "compiled":
        from ._compiled import synaptic_sequence_compiled

        assert spec is not None
        return synaptic_sequence_compiled(x, params.alpha, params.beta, params.threshold, params.reset_mechanism,
                                          spec, params.reset_delay, params.detach_reset, params.reset_convention)
    spike = _spike_fn(params)  # type: ignore[arg-type]
    i = x.new_zeros(x.shape[1:]) if syn is None else syn
    m = x.new_zeros(x.shape[1:]) if mem is None else mem
    out = []
    for xt in x.unbind(0):
        s, i, m = _step(xt, i, m, params, spike)
        out.append((s, i, m))
    if not out:  # T = 0: empty outputs, still in x's graph (as the op's)
        return x * 0, x * 0, x * 0
    spk, syns, mems = (torch.stack(v) for v in zip(*out))
    return spk, syns, mems
