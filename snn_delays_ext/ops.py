"""The compiled delay kernels as PyTorch custom ops (``torch.ops.snn_delays_ext.*``).

The C++ (CPU) and CUDA kernels are declared with ``TORCH_LIBRARY(snn_delays_ext, m)`` in
``snn_delays_ext/csrc``; this module loads them and registers their fake (meta) implementations
for ``torch.compile`` and meta tensors and their autograd formulas. Nothing else: which
implementation a call runs is decided in :mod:`snn_delays_ext.dispatch`, and the Python side of
the compiled path (delays as banded taps, the calls of the ops) is in
``snn_delays_ext/functional/_compiled.py`` and ``snn_delays_ext/eventprop/functional.py``.

The ops:

* ``delay_channels`` / ``synaptic_delay`` (and their ``*_backward``): feed-forward delays;
* ``recurrent_lif`` / ``recurrent_lif_backward``: a delayed recurrent LIF layer over a whole
  sequence (the time loop runs inside the op; its backward op runs the reverse-time BPTT);
* ``leaky_sequence`` / ``leaky_sequence_backward``: snnTorch's ``Leaky`` neuron over a whole
  sequence (the feed-forward LIF layer; time loop inside the op, reverse-time BPTT backward);
* ``synaptic_sequence`` / ``synaptic_sequence_backward``: snnTorch's current-based ``Synaptic``
  neuron over a whole sequence (the same structure as ``leaky_sequence``);
* ``eventprop_lif_forward`` / ``eventprop_lif_backward``: the EventProp layer (event-driven
  forward and exact adjoint backward).

Delays reach the kernels as *banded taps*: for each delay the first integer lag of its
triangle and the ``W = 2 ceil(s)`` (``2 ceil(s) + 1`` for ``"round"``) tap weights from there
on, computed differentiably in Python, so the kernels' cost does not grow with ``max_delay`` and
the delay gradient comes from the tap gradient by autograd.

Double backward (``create_graph=True`` and differentiating the gradient again, e.g. a gradient
penalty): the feed-forward ops then compute their backward with a plain-PyTorch formula that
autograd can differentiate (ordinary and ``torch.compile`` backward still run the compiled
backward ops); the recurrent op gives correct first-order gradients but raises a
``RuntimeError`` if they are differentiated again (use the reference,
``backend="reference"``, for that).

If the extension was not compiled, :data:`AVAILABLE` is ``False`` and everything runs the
reference path (:mod:`snn_delays_ext.dispatch`).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Optional, Set, Tuple

import torch
import torch.nn.functional as F

from . import _op_args


__all__ = [
    "AVAILABLE",
    "LOAD_ERROR",
    "available_devices",
    "eventprop_devices",
    "leaky_sequence_devices",
    "synaptic_sequence_devices",
    "warn_eventprop_reference_once",
    "warn_reference_once",
]


LOAD_ERROR: Optional[str] = None
_DEVICES: Set[str] = set()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


try:
    from . import _C  # noqa: F401  (built at install: registers the schemas and the CPU kernels)

    _DEVICES.add("cpu")
except Exception as exc:  # not built at install (or for another torch): compile for this one
    built = "was not built" if isinstance(exc, ImportError) and "_C" in str(exc) else f"failed ({_describe(exc)})"
    try:
        from . import _jit

        _jit.load("cpu")
        _DEVICES.add("cpu")
    except Exception as jit_exc:  # pragma: no cover - depends on the machine
        LOAD_ERROR = f"the extension snn_delays_ext._C {built}, and compiling it now failed: {_describe(jit_exc)}"
if _DEVICES:
    try:
        from . import _C_cuda  # noqa: F401  (registers the CUDA kernels)

        _DEVICES.add("cuda")
    except Exception:  # no CUDA build: compile where there is a GPU and nvcc, else CPU only
        if torch.cuda.is_available():
            try:
                from . import _jit

                _jit.load("cuda")
                _DEVICES.add("cuda")
            except Exception as jit_exc:  # pragma: no cover - depends on the machine
                import warnings as _warnings

                _warnings.warn(f"snn_delays_ext: the CUDA kernels are not built and could not be compiled "
                               f"({_describe(jit_exc)}); CUDA tensors run the plain-PyTorch reference",
                               RuntimeWarning, stacklevel=2)

#: Whether the compiled ops are loaded (for at least the CPU).
AVAILABLE: bool = bool(_DEVICES)

_warned = False
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside this package
    (and torch): the user's line that ran the layer, not the line inside the library."""
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(_PACKAGE_DIR) or path.startswith(_TORCH_DIR)):
            break
        frame, level = frame.f_back, level + 1
    return level


def available_devices() -> Set[str]:
    """Device types with compiled kernels, e.g. ``{"cpu"}`` or ``{"cpu", "cuda"}``.

    Examples
    --------
    >>> available_devices() <= {"cpu", "cuda"}
    True
    """
    return set(_DEVICES)


def warn_reference_once() -> None:
    """Warn (once per process) that the slower reference path runs for lack of compiled ops."""
    global _warned
    if _warned or AVAILABLE:
        return
    _warned = True
    warnings.warn(
        "snn_delays_ext: the compiled delay kernels could not be loaded "
        f"({LOAD_ERROR}); using the plain-PyTorch reference path (slower). They compile on first "
        "import with a C++ compiler and ninja, or at install with torch present (pip install "
        "--no-build-isolation .).",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


# ----------------------------------------------------------------------------------------------
# plain-PyTorch versions of the feed-forward ops (their differentiable backward, for double
# backward: autograd differentiates these where the compiled backward ops have no derivative)
# ----------------------------------------------------------------------------------------------
def _dense_band(start: torch.Tensor, vals: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Banded taps as dense taps over lags ``lo..hi`` (``S + (hi - lo + 1,)``); taps at lags
    outside that range are dropped."""
    lags = start.unsqueeze(-1) + torch.arange(vals.shape[-1], device=start.device)
    inside = (lags >= lo) & (lags <= hi)
    src = torch.where(inside, vals, torch.zeros_like(vals))
    idx = (lags - lo).clamp(0, hi - lo)
    return vals.new_zeros(tuple(start.shape) + (hi - lo + 1,)).scatter_add(-1, idx, src)


def _lag_span(start: torch.Tensor, width: int, T: int, causal: bool) -> Tuple[int, int]:
    """Lags ``lo <= 0 <= hi`` covering every tap that can touch a ``T``-step sequence."""
    if start.numel() == 0:
        return 0, 0
    lo = 0 if causal else max(min(int(start.min()), 0), -(T - 1))
    hi = min(max(int(start.max()) + width - 1, 0), T - 1)
    return lo, hi


def _banded_conv(x: torch.Tensor, kernel: torch.Tensor, lo: int, hi: int, groups: int) -> torch.Tensor:
    """``y[t] = sum_lag kernel[..., lag - lo] x[t - lag]`` (zero outside ``[0, T)``)."""
    xp = F.pad(x.permute(1, 2, 0), (hi, -lo))  # (B, C, hi + T - lo)
    y = F.conv1d(xp, kernel.flip(-1), groups=groups)
    return y.permute(2, 0, 1)


def _delay_channels_ref(x: torch.Tensor, start: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
    """``delay_channels``: ``y[t,b,c] = sum_w vals[c,w] x[t - start[c] - w, b, c]`` (lags < 0
    read nothing, as in the kernel)."""
    T, _, C = x.shape
    if T == 0:
        return x * vals.sum(-1)
    lo, hi = _lag_span(start, vals.shape[-1], T, causal=True)
    taps = _dense_band(start, vals, lo, hi)  # (C, hi - lo + 1)
    return _banded_conv(x, taps.unsqueeze(1), lo, hi, groups=C)


def _synaptic_delay_ref(x: torch.Tensor, weight: torch.Tensor, start: torch.Tensor,
                        vals: torch.Tensor) -> torch.Tensor:
    """``synaptic_delay``: ``y[t,b,o] = sum_i weight[o,i] sum_w vals[o,i,w] x[t - lag, b, i]``
    with ``lag = start[o,i] + w`` (a negative lag reads ahead, as in the kernel)."""
    T = x.shape[0]
    if T == 0:
        return x.new_zeros((0, x.shape[1], weight.shape[0])) + (weight.sum() + vals.sum()) * 0
    lo, hi = _lag_span(start, vals.shape[-1], T, causal=False)
    kernel = weight.unsqueeze(-1) * _dense_band(start, vals, lo, hi)  # (O, I, hi - lo + 1)
    return _banded_conv(x, kernel, lo, hi, groups=1)


class _NoDoubleBackward(torch.autograd.Function):
    """Identity whose backward raises: marks gradients that cannot be differentiated again."""

    @staticmethod
    def forward(ctx, *tensors):  # type: ignore[override]
        return tuple(t.clone() for t in tensors)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        raise RuntimeError(
            "snn_delays_ext: double backward (a gradient of a gradient, e.g. a gradient penalty "
            "or torch.autograd.grad(..., create_graph=True) differentiated again) is not "
            "supported through the compiled recurrent_lif op. Use the plain-PyTorch reference "
            "snn_delays_ext.functional.recurrent_leaky_sequence (or the layer's step mode, one "
            "(B, N) input per step), which autograd differentiates to any order."
        )


# ----------------------------------------------------------------------------------------------
# fake implementations (shapes only) for torch.compile / meta tensors
# ----------------------------------------------------------------------------------------------
if AVAILABLE:
    _lib = "snn_delays_ext::"

    @torch.library.register_fake(_lib + "delay_channels")
    def _delay_channels_fake(x, start, vals):
        _op_args.delay_channels(x, start, vals)
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    @torch.library.register_fake(_lib + "delay_channels_backward")
    def _delay_channels_backward_fake(grad_y, x, start, vals):
        _op_args.delay_channels_backward(grad_y, x, start, vals)
        return (
            torch.empty_like(x, memory_format=torch.contiguous_format),
            x.new_empty(vals.shape),
        )

    @torch.library.register_fake(_lib + "synaptic_delay")
    def _synaptic_delay_fake(x, weight, start, vals):
        _op_args.synaptic_delay(x, weight, start, vals)
        return x.new_empty((x.shape[0], x.shape[1], weight.shape[0]))

    @torch.library.register_fake(_lib + "synaptic_delay_backward")
    def _synaptic_delay_backward_fake(grad_y, x, weight, start, vals, input_grad=True):
        _op_args.synaptic_delay_backward(grad_y, x, weight, start, vals)
        return (
            torch.empty_like(x, memory_format=torch.contiguous_format) if input_grad else x.new_empty((0,)),
            x.new_empty(weight.shape),
            x.new_empty(vals.shape),
        )

    @torch.library.register_fake(_lib + "recurrent_lif")
    def _recurrent_lif_fake(x, weight, bias, start, vals, beta, threshold, reset, surrogate,
                            surrogate_param, synaptic, reset_delay=True, detach_reset=False, rec_scale=None):
        _op_args.recurrent_lif(x, weight, bias, start, vals, beta, threshold, reset, surrogate,
                               surrogate_param, synaptic, reset_delay, detach_reset, rec_scale)
        shape = x.shape
        return (x.new_empty(shape), x.new_empty(shape), x.new_empty(shape, dtype=torch.uint8),
                x.new_empty((0,) if reset_delay else shape))

    @torch.library.register_fake(_lib + "recurrent_lif_backward")
    def _recurrent_lif_backward_fake(grad_spk, grad_mem, weight, start, vals, beta, threshold, mem,
                                     spk_bits, pre_mem, reset, surrogate, surrogate_param, synaptic,
                                     reset_delay=True, detach_reset=False, rec_scale=None):
        _op_args.recurrent_lif_backward(grad_spk, grad_mem, weight, start, vals, beta, threshold, mem,
                                        spk_bits, pre_mem, reset, surrogate, surrogate_param, synaptic,
                                        reset_delay, rec_scale)
        n = mem.shape[-1]
        return (
            mem.new_empty(mem.shape),
            mem.new_empty(weight.shape),
            mem.new_empty(vals.shape),
            mem.new_empty((n,)),
            mem.new_empty((n,)),
        )

    # ------------------------------------------------------------------------------------------
    # autograd
    # ------------------------------------------------------------------------------------------
    def _dc_setup(ctx, inputs, output):
        x, start, vals = inputs
        ctx.save_for_backward(x, start, vals)

    def _dc_backward(ctx, grad):
        x, start, vals = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: a backward autograd can differentiate again (double backward)
            _, vjp = torch.func.vjp(lambda a, v: _delay_channels_ref(a, start, v), x, vals)
            gx, gv = vjp(grad)
            return gx, None, gv
        gx, gv = torch.ops.snn_delays_ext.delay_channels_backward(grad.contiguous(), x, start, vals)
        return gx, None, gv

    torch.library.register_autograd(_lib + "delay_channels", _dc_backward, setup_context=_dc_setup)

    def _sd_setup(ctx, inputs, output):
        x, weight, start, vals = inputs
        ctx.save_for_backward(x, weight, start, vals)

    def _sd_backward(ctx, grad):
        x, weight, start, vals = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: a backward autograd can differentiate again (double backward)
            _, vjp = torch.func.vjp(
                lambda a, w, v: _synaptic_delay_ref(a, w, start, v), x, weight, vals)
            gx, gw, gv = vjp(grad)
            return gx, gw, None, gv
        need_x = ctx.needs_input_grad[0]  # a first layer's data needs no grad_x: skip that dense part
        gx, gw, gv = torch.ops.snn_delays_ext.synaptic_delay_backward(
            grad.contiguous(), x, weight, start, vals, need_x)
        return (gx if need_x else None), gw, None, gv

    torch.library.register_autograd(_lib + "synaptic_delay", _sd_backward, setup_context=_sd_setup)

    def _rl_setup(ctx, inputs, output):
        (x, weight, bias, start, vals, beta, threshold, reset, surrogate, sparam, synaptic,
         *flags) = inputs
        reset_delay, detach_reset, rec_scale = (list(flags) + [True, False, None][len(flags):])[:3]
        _, mem, bits, pre = output
        ctx.save_for_backward(weight, start, vals, beta, threshold, mem, bits, pre, rec_scale)
        ctx.cfg = (reset, surrogate, sparam, synaptic, reset_delay, detach_reset)
        ctx.n_flags = len(flags)
        ctx.has_bias = bias is not None

    def _rl_backward(ctx, grad_spk, grad_mem, _grad_bits, _grad_pre):
        weight, start, vals, beta, threshold, mem, bits, pre, rec_scale = ctx.saved_tensors
        reset, surrogate, sparam, synaptic, reset_delay, detach_reset = ctx.cfg
        if grad_spk is None:
            grad_spk = torch.zeros_like(mem)
        if grad_mem is None:
            grad_mem = torch.zeros_like(mem)
        gx, gw, gv, gbeta, gthr = torch.ops.snn_delays_ext.recurrent_lif_backward(
            grad_spk.contiguous(), grad_mem.contiguous(), weight, start, vals, beta, threshold,
            mem, bits, pre, reset, surrogate, sparam, synaptic, reset_delay, detach_reset, rec_scale)
        gbias = gx.sum((0, 1)) if ctx.has_bias else None
        if torch.is_grad_enabled():
            # create_graph=True: first-order gradients are right, a second order is refused
            gx, gw, gv, gbeta, gthr = _NoDoubleBackward.apply(gx, gw, gv, gbeta, gthr)
            if gbias is not None:
                gbias = _NoDoubleBackward.apply(gbias)[0]
        # rec_scale is a mask (recurrent dropout): no gradient
        return (gx, gw, gbias, None, gv, gbeta, gthr, None, None, None, None) + (None,) * ctx.n_flags

    torch.library.register_autograd(_lib + "recurrent_lif", _rl_backward, setup_context=_rl_setup)


# ----------------------------------------------------------------------------------------------
# leaky_sequence: snnTorch's Leaky over a sequence (csrc/leaky_sequence.cpp,
# csrc/cuda/leaky_sequence_cuda.cu)
# ----------------------------------------------------------------------------------------------
_LS_OPS = ("snn_delays_ext::leaky_sequence", "snn_delays_ext::leaky_sequence_backward")


def _devices_with(op_names: Tuple[str, ...]) -> Set[str]:
    """Device types whose dispatch key has a kernel for every op in ``op_names`` (an extension
    built from older sources lacks newer ops)."""
    found: Set[str] = set()
    if not AVAILABLE:
        return found
    for dev, key in (("cpu", "CPU"), ("cuda", "CUDA")):
        try:
            if all(torch._C._dispatch_has_kernel_for_dispatch_key(op, key) for op in op_names):
                found.add(dev)
        except RuntimeError:  # the ops are not in this build of the extension
            break
    return found


_LS_DEVICES: Set[str] = _devices_with(_LS_OPS)


def leaky_sequence_devices() -> Set[str]:
    """Device types with a compiled ``leaky_sequence`` kernel, e.g. ``{"cpu"}`` (empty without a
    build, or with a build from sources older than the op).

    Examples
    --------
    >>> leaky_sequence_devices() <= {"cpu", "cuda"}
    True
    """
    return set(_LS_DEVICES)


def _no_double_backward(op: str) -> type:
    """:class:`_NoDoubleBackward` for the neuron-sequence op ``op``, whose message points to the
    plain-PyTorch ``snn_delays_ext.functional.<op>(..., backend='reference')``."""

    class _Refuse(_NoDoubleBackward):
        @staticmethod
        def backward(ctx, *grads):  # type: ignore[override]
            raise RuntimeError(
                "snn_delays_ext: double backward (a gradient of a gradient) is not supported through the "
                f"compiled {op} op. Use the plain-PyTorch reference "
                f"snn_delays_ext.functional.{op}(..., backend='reference'), which autograd "
                "differentiates to any order."
            )

    return _Refuse


def _sequence_flags(flags: list) -> tuple:
    """``(reset_delay, detach_reset)`` of a neuron-sequence op's trailing arguments, with the
    schema's defaults ``(True, False)`` for those not passed."""
    return tuple((list(flags) + [True, False][len(flags):])[:2])


_NoDoubleBackwardLeaky = _no_double_backward("leaky_sequence")


if _LS_DEVICES:

    @torch.library.register_fake(_lib + "leaky_sequence")
    def _leaky_sequence_fake(x, beta, threshold, reset, surrogate, surrogate_param, reset_delay=True,
                             detach_reset=False):
        _op_args.leaky_sequence(x, beta, threshold, reset, surrogate, surrogate_param, reset_delay)
        shape = x.shape
        return x.new_empty(shape), x.new_empty(shape), x.new_empty((0,) if reset_delay else shape)

    @torch.library.register_fake(_lib + "leaky_sequence_backward")
    def _leaky_sequence_backward_fake(grad_spk, grad_mem, beta, threshold, mem, pre_mem, reset, surrogate,
                                      surrogate_param, reset_delay=True, detach_reset=False):
        _op_args.leaky_sequence_backward(grad_spk, grad_mem, beta, threshold, mem, pre_mem, reset, surrogate,
                                         surrogate_param, reset_delay)
        n = mem.shape[-1]
        return mem.new_empty(mem.shape), mem.new_empty((n,)), mem.new_empty((n,))

    def _ls_setup(ctx, inputs, output):
        x, beta, threshold, reset, surrogate, sparam, *flags = inputs
        reset_delay, detach_reset = _sequence_flags(flags)
        _, mem, pre = output
        ctx.save_for_backward(beta, threshold, mem, pre)
        ctx.cfg = (reset, surrogate, sparam, reset_delay, detach_reset)
        ctx.n_flags = len(flags)

    def _ls_backward(ctx, grad_spk, grad_mem, _grad_pre):
        beta, threshold, mem, pre = ctx.saved_tensors
        reset, surrogate, sparam, reset_delay, detach_reset = ctx.cfg
        grad_spk = torch.zeros_like(mem) if grad_spk is None else grad_spk.contiguous()
        grad_mem = torch.zeros_like(mem) if grad_mem is None else grad_mem.contiguous()
        gx, gbeta, gthr = torch.ops.snn_delays_ext.leaky_sequence_backward(
            grad_spk, grad_mem, beta, threshold, mem, pre, reset, surrogate, sparam, reset_delay, detach_reset)
        if torch.is_grad_enabled():
            # create_graph=True: first-order gradients are right, a second order is refused
            gx, gbeta, gthr = _NoDoubleBackwardLeaky.apply(gx, gbeta, gthr)
        need = ctx.needs_input_grad
        return ((gx if need[0] else None, gbeta if need[1] else None, gthr if need[2] else None)
                + (None,) * (3 + ctx.n_flags))

    torch.library.register_autograd(_lib + "leaky_sequence", _ls_backward, setup_context=_ls_setup)


# ----------------------------------------------------------------------------------------------
# synaptic_sequence: snnTorch's Synaptic over a sequence (csrc/synaptic_sequence.cpp,
# csrc/cuda/synaptic_sequence_cuda.cu)
# ----------------------------------------------------------------------------------------------
_SS_DEVICES: Set[str] = _devices_with(("snn_delays_ext::synaptic_sequence",
                                       "snn_delays_ext::synaptic_sequence_backward"))


def synaptic_sequence_devices() -> Set[str]:
    """Device types with a compiled ``synaptic_sequence`` kernel, e.g. ``{"cpu"}`` (empty without
    a build, or with a build from sources older than the op).

    Examples
    --------
    >>> synaptic_sequence_devices() <= {"cpu", "cuda"}
    True
    """
    return set(_SS_DEVICES)


_NoDoubleBackwardSynaptic = _no_double_backward("synaptic_sequence")


if _SS_DEVICES:

    @torch.library.register_fake(_lib + "synaptic_sequence")
    def _synaptic_sequence_fake(x, alpha, beta, threshold, reset, surrogate, surrogate_param, reset_delay=True,
                                detach_reset=False):
        _op_args.synaptic_sequence(x, alpha, beta, threshold, reset, surrogate, surrogate_param, reset_delay)
        shape = x.shape
        return (x.new_empty(shape), x.new_empty(shape), x.new_empty(shape),
                x.new_empty((0,) if reset_delay else shape))

    @torch.library.register_fake(_lib + "synaptic_sequence_backward")
    def _synaptic_sequence_backward_fake(grad_spk, grad_syn, grad_mem, alpha, beta, threshold, syn, mem, pre_mem,
                                         reset, surrogate, surrogate_param, reset_delay=True, detach_reset=False):
        _op_args.synaptic_sequence_backward(grad_spk, grad_syn, grad_mem, alpha, beta, threshold, syn, mem,
                                            pre_mem, reset, surrogate, surrogate_param, reset_delay)
        n = mem.shape[-1]
        return mem.new_empty(mem.shape), mem.new_empty((n,)), mem.new_empty((n,)), mem.new_empty((n,))

    def _ss_setup(ctx, inputs, output):
        x, alpha, beta, threshold, reset, surrogate, sparam, *flags = inputs
        reset_delay, detach_reset = _sequence_flags(flags)
        _, syn, mem, pre = output
        ctx.save_for_backward(alpha, beta, threshold, syn, mem, pre)
        ctx.cfg = (reset, surrogate, sparam, reset_delay, detach_reset)
        ctx.n_flags = len(flags)

    def _ss_backward(ctx, grad_spk, grad_syn, grad_mem, _grad_pre):
        alpha, beta, threshold, syn, mem, pre = ctx.saved_tensors
        reset, surrogate, sparam, reset_delay, detach_reset = ctx.cfg
        grads = [torch.zeros_like(mem) if g is None else g.contiguous() for g in (grad_spk, grad_syn, grad_mem)]
        out = torch.ops.snn_delays_ext.synaptic_sequence_backward(
            *grads, alpha, beta, threshold, syn, mem, pre, reset, surrogate, sparam, reset_delay, detach_reset)
        if torch.is_grad_enabled():
            # create_graph=True: first-order gradients are right, a second order is refused
            out = _NoDoubleBackwardSynaptic.apply(*out)
        need = ctx.needs_input_grad
        return tuple(g if need[i] else None for i, g in enumerate(out)) + (None,) * (3 + ctx.n_flags)

    torch.library.register_autograd(_lib + "synaptic_sequence", _ss_backward, setup_context=_ss_setup)


# ----------------------------------------------------------------------------------------------
# EventProp (csrc/eventprop.cpp, csrc/cuda/eventprop_cuda.cu)
# ----------------------------------------------------------------------------------------------
_EP_OPS = ("snn_delays_ext::eventprop_lif_forward", "snn_delays_ext::eventprop_lif_backward")
_EP_DEVICES: Set[str] = set()
if AVAILABLE:
    for _dev, _key in (("cpu", "CPU"), ("cuda", "CUDA")):
        try:
            if all(torch._C._dispatch_has_kernel_for_dispatch_key(op, _key) for op in _EP_OPS):
                _EP_DEVICES.add(_dev)
        except RuntimeError:  # the ops are not in this build of the extension
            break


def eventprop_devices() -> Set[str]:
    """Device types with compiled EventProp kernels, e.g. ``{"cpu"}`` (empty without a build).

    Examples
    --------
    >>> eventprop_devices() <= {"cpu", "cuda"}
    True
    """
    return set(_EP_DEVICES)


_ep_warned = False


def warn_eventprop_reference_once(x: torch.Tensor) -> None:
    """Warn (once per process) when EventProp falls back to the reference for lack of kernels.

    Covers a missing extension (:func:`warn_reference_once`) and an extension built before the
    EventProp ops existed (delay kernels present for the device, EventProp ones not).

    Parameters
    ----------
    x : torch.Tensor
        The input that could not take the compiled path (its device type is checked).

    Examples
    --------
    >>> warn_eventprop_reference_once(torch.zeros(1))  # silent where the kernels are built
    """
    global _ep_warned
    if not AVAILABLE:
        warn_reference_once()
        return
    dev = x.device.type
    if _ep_warned or dev in _EP_DEVICES or dev not in _DEVICES:
        return
    _ep_warned = True
    warnings.warn(
        f"snn_delays_ext: the compiled extension has no EventProp kernels for {dev!r} (built from "
        "older sources?); EventProp runs the plain-PyTorch reference (slower). Rebuild the "
        "extension (python setup.py build_ext --inplace, or reinstall).",
        RuntimeWarning,
        stacklevel=user_stacklevel(),
    )


def _in_fake_mode() -> bool:
    """Whether a ``FakeTensorMode`` is active (``torch.compile``, ``opcheck``): data-dependent
    output sizes are then symbolic; with plain ``meta`` tensors they cannot be."""
    try:
        from torch._guards import detect_fake_mode
    except ImportError:  # pragma: no cover - very old torch
        return False
    return detect_fake_mode() is not None


def _delay_dtype(max_delay: int) -> torch.dtype:
    return torch.int16 if max_delay < 2**15 else torch.int32


if _EP_DEVICES:

    @torch.library.register_fake(_lib + "eventprop_lif_forward")
    def _ep_forward_fake(x, weight, delays, rec_weight, rec_delays, max_delay, alpha, beta, threshold,
                         syn_scale, min_denominator, reg_strength, reg_target, max_spikes, record_mem):
        _op_args.eventprop_lif_forward(x, weight, delays, rec_weight, rec_delays, max_delay, alpha, beta,
                                       threshold, syn_scale, min_denominator, reg_strength, reg_target,
                                       max_spikes)
        T, B, F_ = x.shape
        N = weight.shape[0]
        if x.device.type == "meta" and not _in_fake_mode():
            # meta tensors (shape and device propagation, no tracing): the event lists take
            # their largest possible lengths, every input bin and every neuron step an event
            n_in, n_out = T * B * F_, T * B * N
        else:
            ctx = torch.library.get_ctx()
            n_in = ctx.new_dynamic_size()  # input spikes
            n_out = ctx.new_dynamic_size()  # output spikes
        idt = torch.int32 if T * B * (N if N > F_ else F_) < 2**31 - 1 else torch.int64
        return (
            x.new_empty((T, B, N)),
            x.new_empty((T, B, N) if record_mem else (0,)),
            x.new_empty((n_in,), dtype=idt),
            x.new_empty((n_out,), dtype=idt),
            x.new_empty((n_out,)),
        )

    @torch.library.register_fake(_lib + "eventprop_lif_backward")
    def _ep_backward_fake(grad_spk, grad_mem, x_idx, s_idx, s_rise, weight, d_ff, rec_weight, d_rec, T, B,
                          max_delay, alpha, beta, threshold, syn_scale, min_denominator, reg_strength,
                          reg_target):
        _op_args.eventprop_lif_backward(grad_spk, grad_mem, x_idx, s_idx, s_rise, weight, d_ff, rec_weight,
                                        d_rec, T, B, max_delay, alpha, beta, threshold, syn_scale,
                                        min_denominator, reg_strength, reg_target)
        rec_shape = tuple(rec_weight.shape) if rec_weight is not None else (0,)
        return (
            weight.new_empty((T, B, weight.shape[1])),
            weight.new_empty(weight.shape),
            weight.new_empty(weight.shape),
            weight.new_empty(rec_shape),
            weight.new_empty(rec_shape),
        )

    def _ep_setup(ctx, inputs, output):
        (x, weight, delays, rec_weight, rec_delays, max_delay, alpha, beta, threshold, syn_scale,
         min_denominator, reg_strength, reg_target, _max_spikes, _record_mem) = inputs
        _, _, x_idx, s_idx, s_rise = output
        # compact: spike indices, one float per spike, the weights and int16 rounded delays
        ddt = _delay_dtype(max_delay)
        with torch.no_grad():
            d_ff = torch.floor(delays.clamp(0.0, float(max_delay)) + 0.5).to(ddt)
            saved = [x_idx, s_idx, s_rise, weight, d_ff]
            if rec_weight is not None:
                d_rec = torch.floor(rec_delays.clamp(1.0, float(max_delay)) + 0.5).to(ddt)
                saved += [rec_weight, d_rec]
        ctx.save_for_backward(*saved)
        ctx.recurrent = rec_weight is not None
        ctx.args = (x.shape[0], x.shape[1], max_delay, alpha, beta, threshold, syn_scale,
                    min_denominator, reg_strength, reg_target)

    def _ep_backward(ctx, grad_spk, grad_mem, _g_xidx, _g_sidx, _g_srise):
        saved = ctx.saved_tensors
        x_idx, s_idx, s_rise, weight, d_ff = saved[:5]
        rec_weight, d_rec = (saved[5], saved[6]) if ctx.recurrent else (None, None)
        empty = weight.new_empty((0,))
        # read in place with their strides (a broadcast from a sum or mean stays one)
        grad_spk = empty if grad_spk is None else grad_spk
        grad_mem = empty if grad_mem is None else grad_mem
        gx, gw, gd, gr, ge = torch.ops.snn_delays_ext.eventprop_lif_backward(
            grad_spk, grad_mem, x_idx, s_idx, s_rise, weight, d_ff, rec_weight, d_rec, *ctx.args)
        need = ctx.needs_input_grad
        return (
            gx if need[0] else None,
            gw if need[1] else None,
            gd if need[2] else None,
            gr if ctx.recurrent and need[3] else None,
            ge if ctx.recurrent and need[4] else None,
        ) + (None,) * 10

    torch.library.register_autograd(_lib + "eventprop_lif_forward", _ep_backward, setup_context=_ep_setup)
