"""Which implementation runs an op: the compiled kernels or the plain-PyTorch reference.

Every delay op has two implementations with the same numbers and gradients: the compiled
custom ops (C++ on CPU, CUDA on GPU; :mod:`snn_delays_ext.ops`) and the plain-PyTorch reference
(:mod:`snn_delays_ext.functional`, the oracle of the tests). The choice is made here, in one
function per op, by one rule each; every layer (snnTorch-style, Norse, EventProp) and every
functional entry (``backend="auto"``) asks these functions, and each layer's ``backend(input_)``
says what a call with that input runs, and why.

The rules
---------
A compiled kernel runs when all of these hold, else the reference does:

- the extension is built and has a kernel for the input's device (``meta`` tensors run the
  ops' fake kernels), the input is float32 or float64, and nothing is a ``torch.func`` wrapper
  (``vmap``, ``grad``: the reference runs under those);
- :func:`delayed_linear_backend`: with ``backend="auto"`` on the CPU, synaptic delays with a
  triangle wider than a quarter of the lag range (``max_delay + ceil(s) < 8 ceil(s)``, early in a
  wide ``SigmaScheduler`` with a short ``max_delay``) run the reference, which is faster there
  (``benchmarks/synaptic_kernel.py``);
- inside the compiled ``synaptic_delay`` op (CPU and CUDA), inputs with fewer than 15% non-zeros
  (spikes) run event-driven (work proportional to events x fan-out x taps), denser ones dense;
  on CUDA ``torch.use_deterministic_algorithms(True)`` keeps the dense kernels (the event
  kernels add atomically). :func:`delayed_linear_backend`'s reason says so for synaptic delays;
- inside the compiled ``recurrent_lif`` op on CUDA, layers of up to 1024 neurons run the whole
  sequence in one kernel per direction (``SNN_DELAYS_CUDA_RECURRENT=steps``: a loop of kernels
  per step);
- :func:`recurrent_leaky_backend`: the sequence starts from a zero state, the neuron is
  snnTorch's plain one (``graded_spikes_factor`` 1, no ``inhibition`` or ``state_quant``),
  a surrogate the kernels know
  (:func:`snn_delays_ext.surrogate.surrogate_spec`), and ``beta``/``threshold`` scalars or one
  per neuron;
- :func:`leaky_sequence_backend`: snnTorch's ``Leaky`` over a sequence
  (:func:`snn_delays_ext.functional.leaky_sequence`) from a zero membrane, with a surrogate the
  kernels know and ``beta``/``threshold`` scalars or one per neuron;
- :func:`synaptic_sequence_backend`: the same for snnTorch's ``Synaptic``
  (:func:`snn_delays_ext.functional.synaptic_sequence`) from a zero current and membrane, with
  ``alpha`` too a scalar or one per neuron;
- :func:`eventprop_backend`: the EventProp kernels are built for the device.

``backend="compiled"`` asks for the kernels and raises a ``ValueError`` that says which of
these fails; ``backend="reference"`` always runs plain PyTorch.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Tuple

import torch

from . import ops
from ._checks import check_choice, is_functorch_wrapped

__all__ = ["BACKENDS", "Choice", "delayed_linear_backend", "eventprop_backend", "leaky_sequence_backend",
           "recurrent_leaky_backend", "synaptic_sequence_backend"]

#: What the ``backend`` arguments accept.
BACKENDS = ("auto", "compiled", "reference")


class Choice(NamedTuple):
    """The implementation a call runs (``"compiled"`` or ``"reference"``) and why."""

    backend: str
    reason: str


def _kernel_problem(x: torch.Tensor, devices: set, *others: Optional[torch.Tensor]) -> Optional[str]:
    """Why no compiled kernel can take ``x`` (``None``: one can)."""
    if not ops.AVAILABLE:
        return f"the compiled extension is not loaded ({ops.LOAD_ERROR})"
    dev = x.device.type
    if dev not in devices and not (dev == "meta" and devices):
        return f"no compiled kernel for device {dev!r} (built for {sorted(devices)})"
    if x.dtype not in (torch.float32, torch.float64):
        return f"the kernels take float32 or float64, got {x.dtype}"
    if any(t is not None and is_functorch_wrapped(t) for t in (x,) + others):
        return "a torch.func transform (vmap, grad) runs the plain-PyTorch path"
    return None


def _decide(backend: str, hard: Optional[str], soft: Optional[str], op: str) -> Choice:
    """``hard``: why the kernel cannot run; ``soft``: why ``"auto"`` prefers the reference."""
    check_choice("backend", backend, BACKENDS)
    if backend == "reference":
        return Choice("reference", "asked for (backend='reference')")
    if hard is not None:
        if backend == "compiled":
            raise ValueError(f"backend: 'compiled' cannot run {op} here: {hard}")
        return Choice("reference", hard)
    if backend == "auto" and soft is not None:
        return Choice("reference", soft)
    return Choice("compiled", "the compiled kernel runs" + (" (asked for)" if backend == "compiled" else ""))


def delayed_linear_backend(x: torch.Tensor, delay_type: str, max_delay: int, sigma: float, interpolation: str,
                           *params: Optional[torch.Tensor], backend: str = "auto") -> Choice:
    """The implementation of a feed-forward delayed linear map over a sequence ``x``.

    Parameters
    ----------
    x : torch.Tensor
        The ``(T, B, in)`` input.
    delay_type, max_delay, sigma, interpolation
        The layer's settings (see :func:`snn_delays_ext.functional.delayed_linear`).
    *params : torch.Tensor
        Weights, bias and delays (checked for ``torch.func`` wrappers).
    backend : {"auto", "compiled", "reference"}

    Returns
    -------
    Choice

    Examples
    --------
    >>> x = torch.zeros(5, 2, 3)
    >>> delayed_linear_backend(x, "axonal", 10, 0.0, "triangle", backend="reference").backend
    'reference'
    """
    hard = _kernel_problem(x, ops.available_devices(), *params)
    soft = None
    if x.device.type == "cpu" and delay_type == "synaptic" and interpolation == "triangle":
        c = math.ceil(1.0 + sigma)
        if max_delay + c < 4 * (2 * c):
            soft = (f"on the CPU the reference is faster for a triangle this wide against the lag range "
                    f"(max_delay {max_delay}, half-width {1.0 + sigma:g})")
    if backend == "auto" and not ops.AVAILABLE:
        ops.warn_reference_once()
    choice = _decide(backend, hard, soft, "delayed_linear")
    if choice.backend == "compiled" and delay_type == "synaptic":
        choice = Choice("compiled", choice.reason + "; event-driven on inputs with fewer than 15% non-zeros, else dense")
    return choice


def recurrent_leaky_backend(x: torch.Tensor, *, zero_state: bool, plain_neuron: bool,
                            surrogate_known: bool, neuron_shapes_ok: bool,
                            params: tuple = (), backend: str = "auto") -> Choice:
    """The implementation of a delayed recurrent LIF layer over a sequence ``x``.

    Parameters
    ----------
    x : torch.Tensor
        The ``(T, B, N)`` input current.
    zero_state : bool
        The sequence starts from a zero membrane and a silent history (the kernel's start).
    plain_neuron, surrogate_known, neuron_shapes_ok : bool
        The neuron: no graded spikes, inhibition or state quantisation (either reset timing,
        ``reset_delay`` True or False, and ``detach_reset`` run in the kernel); a surrogate the
        kernels implement; ``beta`` and ``threshold`` scalars or one per neuron.
    params : tuple of torch.Tensor
        Weights, bias, delays, decays (checked for ``torch.func`` wrappers).
    backend : {"auto", "compiled", "reference"}

    Returns
    -------
    Choice
    """
    hard = _kernel_problem(x, ops.available_devices(), *params)
    if hard is None:
        for ok, why in ((zero_state, "the kernel starts from a zero state (a state was given)"),
                        (plain_neuron, "graded spikes, inhibition or state quantisation need the reference"),
                        (surrogate_known, "the kernels do not know this spike_grad (see surrogate_spec)"),
                        (neuron_shapes_ok, "beta and threshold must be scalars or one per neuron")):
            if not ok:
                hard = why
                break
    if backend == "auto" and not ops.AVAILABLE:
        ops.warn_reference_once()
    return _decide(backend, hard, None, "recurrent_leaky_sequence")


def leaky_sequence_backend(x: torch.Tensor, *, zero_state: bool, surrogate_known: bool, neuron_shapes_ok: bool,
                           params: tuple = (), backend: str = "auto") -> Choice:
    """The implementation of snnTorch's ``Leaky`` neuron over a sequence ``x``
    (:func:`snn_delays_ext.functional.leaky_sequence`).

    Parameters
    ----------
    x : torch.Tensor
        The ``(T, B, N)`` input current.
    zero_state : bool
        The sequence starts from a zero membrane (snnTorch's ``init_leaky()``, the kernel's start).
    surrogate_known, neuron_shapes_ok : bool
        A surrogate the kernels implement; ``beta`` and ``threshold`` scalars or one per neuron.
    params : tuple of torch.Tensor
        ``beta`` and ``threshold`` (checked for ``torch.func`` wrappers).
    backend : {"auto", "compiled", "reference"}

    Returns
    -------
    Choice

    Examples
    --------
    >>> leaky_sequence_backend(torch.zeros(3, 1, 2), zero_state=True, surrogate_known=True,
    ...                        neuron_shapes_ok=True, backend="reference").backend
    'reference'
    """
    return _neuron_sequence_backend(
        "leaky_sequence", ops.leaky_sequence_devices(), x, backend, params,
        (zero_state, "the kernel starts from a zero membrane (a membrane was given)"),
        (surrogate_known, "the kernels do not know this spike_grad (see surrogate_spec)"),
        (neuron_shapes_ok, "beta and threshold must be scalars or one per neuron"))


def synaptic_sequence_backend(x: torch.Tensor, *, zero_state: bool, surrogate_known: bool,
                              neuron_shapes_ok: bool, params: tuple = (), backend: str = "auto") -> Choice:
    """The implementation of snnTorch's ``Synaptic`` neuron over a sequence ``x``
    (:func:`snn_delays_ext.functional.synaptic_sequence`).

    Parameters
    ----------
    x : torch.Tensor
        The ``(T, B, N)`` input current.
    zero_state : bool
        The sequence starts from a zero synaptic current and membrane (snnTorch's
        ``reset_mem()``, the kernel's start).
    surrogate_known, neuron_shapes_ok : bool
        A surrogate the kernels implement; ``alpha``, ``beta`` and ``threshold`` scalars or one
        per neuron.
    params : tuple of torch.Tensor
        ``alpha``, ``beta`` and ``threshold`` (checked for ``torch.func`` wrappers).
    backend : {"auto", "compiled", "reference"}

    Returns
    -------
    Choice

    Examples
    --------
    >>> synaptic_sequence_backend(torch.zeros(3, 1, 2), zero_state=True, surrogate_known=True,
    ...                           neuron_shapes_ok=True, backend="reference").backend
    'reference'
    """
    return _neuron_sequence_backend(
        "synaptic_sequence", ops.synaptic_sequence_devices(), x, backend, params,
        (zero_state, "the kernel starts from a zero current and membrane (a state was given)"),
        (surrogate_known, "the kernels do not know this spike_grad (see surrogate_spec)"),
        (neuron_shapes_ok, "alpha, beta and threshold must be scalars or one per neuron"))


def _neuron_sequence_backend(op: str, devices: set, x: torch.Tensor, backend: str, params: tuple,
                             *conditions: Tuple[bool, str]) -> Choice:
    """The rule of the neuron-over-a-sequence ops: a kernel for ``x``, then every ``(ok, why
    not)`` condition in order."""
    hard = _kernel_problem(x, devices, *params)
    if hard is not None and ops.AVAILABLE and not devices:
        hard = f"the compiled extension has no {op} kernel (built from older sources: rebuild it)"
    if hard is None:
        hard = next((why for ok, why in conditions if not ok), None)
    if backend == "auto" and not ops.AVAILABLE:
        ops.warn_reference_once()
    return _decide(backend, hard, None, op)


def eventprop_backend(x: torch.Tensor, backend: str = "auto") -> Choice:
    """The implementation of the EventProp layer :func:`snn_delays_ext.eventprop.eventprop_lif`.

    Examples
    --------
    >>> eventprop_backend(torch.zeros(3, 1, 2), backend="reference").backend
    'reference'
    """
    hard = _kernel_problem(x, ops.eventprop_devices())
    if backend == "auto" and hard is not None:
        ops.warn_eventprop_reference_once(x)
    return _decide(backend, hard, None, "eventprop_lif")
