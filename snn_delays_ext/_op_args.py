"""Argument checks of the compiled ops for their fake (meta) implementations.

The C++ side checks every call in ``csrc/op_checks.h`` (delay ops) and
``csrc/eventprop_common.h`` (EventProp ops) before any kernel runs; under ``torch.compile`` and
on ``meta`` tensors the fake implementations registered in :mod:`snn_delays_ext.ops` run instead,
and they call the functions here, which raise the same exception (``TypeError`` for a dtype,
``ValueError`` otherwise) with the same message. Checks that read values (start lags, spike
indices, binary spikes) cannot run on fake tensors and are left to the kernels' side.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch

_FLOATS = (torch.float32, torch.float64)


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _dtype(dtype: torch.dtype) -> str:
    # c10's names, as the C++ messages print them
    return {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half", torch.bfloat16: "BFloat16",
            torch.int64: "Long", torch.int32: "Int", torch.int16: "Short", torch.int8: "Char",
            torch.uint8: "Byte", torch.bool: "Bool"}.get(dtype, str(dtype).replace("torch.", ""))


def _floating(t: torch.Tensor, op: str, name: str) -> None:
    if t.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name}: expected float32 or float64, got {_dtype(t.dtype)}")


def _on_device_of(t: torch.Tensor, ref: torch.Tensor, op: str, name: str, ref_name: str) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: {name}: expected a tensor on {ref.device} (the device of {ref_name}), "
                         f"got one on {t.device}")


def _like(t: torch.Tensor, ref: torch.Tensor, op: str, name: str, ref_name: str) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name}: expected dtype {_dtype(ref.dtype)} (that of {ref_name}), "
                        f"got {_dtype(t.dtype)}")
    _on_device_of(t, ref, op, name, ref_name)


def _check_shape(t: torch.Tensor, expected: Sequence[int], op: str, name: str, layout: str) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{op}: {name}: expected shape {_shape(expected)} {layout}, got {_shape(t.shape)}")


def _sequence(x: torch.Tensor, op: str, name: str) -> None:
    if x.dim() != 3:
        raise ValueError(f"{op}: {name}: expected a (T, B, F) tensor, got {x.dim()} dims")
    _floating(x, op, name)


def _taps(start: torch.Tensor, vals: torch.Tensor, x: torch.Tensor, expected: Sequence[int], op: str,
          layout: str) -> None:
    if start.dtype != torch.int64:
        raise TypeError(f"{op}: start: expected int64, got {_dtype(start.dtype)}")
    _on_device_of(start, x, op, "start", "x")
    _check_shape(start, expected, op, "start", layout)
    _like(vals, x, op, "vals", "x")
    if vals.dim() != start.dim() + 1 or tuple(vals.shape[:-1]) != tuple(expected):
        raise ValueError(f"{op}: vals: expected shape {_shape(expected)} + (W,) (the shape of start and the "
                         f"taps), got {_shape(vals.shape)}")
    if vals.shape[-1] > 2**31:
        raise ValueError(f"{op}: vals: expected at most 2^31 taps, got {vals.shape[-1]}")


def _code(value: int, lo: int, hi: int, op: str, name: str, meaning: str) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{op}: {name}: expected {meaning}, got {value}")


def _finite(value: float, op: str, name: str) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{op}: {name}: expected a finite float, got {value}")


# ---- delay ops (csrc/op_checks.h) ------------------------------------------------------------
def delay_channels(x: torch.Tensor, start: torch.Tensor, vals: torch.Tensor,
                   op: str = "delay_channels") -> None:
    """Checks of ``delay_channels(x, start, vals)``."""
    _sequence(x, op, "x")
    _taps(start, vals, x, (x.shape[2],), op, "(C,) (the channels of x)")


def delay_channels_backward(grad_y: torch.Tensor, x: torch.Tensor, start: torch.Tensor,
                            vals: torch.Tensor) -> None:
    """Checks of ``delay_channels_backward(grad_y, x, start, vals)``."""
    op = "delay_channels_backward"
    delay_channels(x, start, vals, op)
    _like(grad_y, x, op, "grad_y", "x")
    _check_shape(grad_y, x.shape, op, "grad_y", "(that of x)")


def synaptic_delay(x: torch.Tensor, weight: torch.Tensor, start: torch.Tensor, vals: torch.Tensor,
                   op: str = "synaptic_delay") -> None:
    """Checks of ``synaptic_delay(x, weight, start, vals)``."""
    _sequence(x, op, "x")
    _like(weight, x, op, "weight", "x")
    if weight.dim() != 2 or weight.shape[1] != x.shape[2]:
        raise ValueError(f"{op}: weight: expected shape (out, {x.shape[2]}) (in = the features of x), "
                         f"got {_shape(weight.shape)}")
    _taps(start, vals, x, tuple(weight.shape), op, "(out, in) (that of weight)")


def synaptic_delay_backward(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, start: torch.Tensor,
                            vals: torch.Tensor) -> None:
    """Checks of ``synaptic_delay_backward(grad_y, x, weight, start, vals)``."""
    op = "synaptic_delay_backward"
    synaptic_delay(x, weight, start, vals, op)
    _like(grad_y, x, op, "grad_y", "x")
    _check_shape(grad_y, (x.shape[0], x.shape[1], weight.shape[0]), op, "grad_y", "(T, B of x, out of weight)")


def _recurrent_parameters(ref: torch.Tensor, ref_name: str, weight: torch.Tensor, start: torch.Tensor,
                          vals: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset: int,
                          surrogate: int, sparam: float, synaptic: bool, op: str) -> None:
    n = ref.shape[2]
    _like(weight, ref, op, "weight", ref_name)
    _check_shape(weight, (n, n), op, "weight", "(N, N) (N = the neurons of the sequence)")
    if synaptic:
        _taps(start, vals, ref, (n, n), op, "(N, N) (synaptic delays)")
    else:
        _taps(start, vals, ref, (n,), op, "(N,) (axonal delays)")
    _like(beta, ref, op, "beta", ref_name)
    _check_shape(beta, (n,), op, "beta", "(N,)")
    _like(threshold, ref, op, "threshold", ref_name)
    _check_shape(threshold, (n,), op, "threshold", "(N,)")
    _code(reset, 0, 4, op, "reset", "0 (subtract), 1 (zero), 2 (none), 3 (subtract once) or 4 (zero once)")
    _code(surrogate, 0, 6, op, "surrogate", "a surrogate code in [0, 6]")
    _finite(sparam, op, "surrogate_param")


def recurrent_lif(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], start: torch.Tensor,
                  vals: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset: int, surrogate: int,
                  sparam: float, synaptic: bool, reset_delay: bool = True, detach_reset: bool = False,
                  rec_scale: Optional[torch.Tensor] = None) -> None:
    """Checks of ``recurrent_lif(...)``."""
    op = "recurrent_lif"
    _sequence(x, op, "x")
    _recurrent_parameters(x, "x", weight, start, vals, beta, threshold, reset, surrogate, sparam, synaptic, op)
    if bias is not None:
        _like(bias, x, op, "bias", "x")
        _check_shape(bias, (x.shape[2],), op, "bias", "(N,)")
    _recurrent_scale(rec_scale, x, op, "x")
    _once_needs_same_step(reset, reset_delay, op)


def _once_needs_same_step(reset: int, reset_delay: bool, op: str) -> None:
    if reset >= 3 and reset_delay:
        raise ValueError(f"{op}: reset: codes 3 and 4 (reset once, in the spike's step) need reset_delay=False, "
                         f"got reset {reset} with reset_delay=True")


def _recurrent_scale(rec_scale: Optional[torch.Tensor], x: torch.Tensor, op: str, ref_name: str) -> None:
    if rec_scale is not None:
        _like(rec_scale, x, op, "rec_scale", ref_name)
        _check_shape(rec_scale, (x.shape[1], x.shape[2]), op, "rec_scale", "(B, N)")


def recurrent_lif_backward(grad_spk: torch.Tensor, grad_mem: torch.Tensor, weight: torch.Tensor,
                           start: torch.Tensor, vals: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
                           mem: torch.Tensor, spk_bits: torch.Tensor, pre_mem: torch.Tensor, reset: int,
                           surrogate: int, sparam: float, synaptic: bool, reset_delay: bool = True,
                           rec_scale: Optional[torch.Tensor] = None) -> None:
    """Checks of ``recurrent_lif_backward(...)``."""
    op = "recurrent_lif_backward"
    _sequence(mem, op, "mem")
    _recurrent_parameters(mem, "mem", weight, start, vals, beta, threshold, reset, surrogate, sparam, synaptic,
                          op)
    for g, name in ((grad_spk, "grad_spk"), (grad_mem, "grad_mem")):
        _like(g, mem, op, name, "mem")
        _check_shape(g, mem.shape, op, name, "(that of mem)")
    if spk_bits.dtype != torch.uint8:
        raise TypeError(f"{op}: spk_bits: expected uint8, got {_dtype(spk_bits.dtype)}")
    _on_device_of(spk_bits, mem, op, "spk_bits", "mem")
    _check_shape(spk_bits, mem.shape, op, "spk_bits", "(that of mem)")
    if not reset_delay:
        _like(pre_mem, mem, op, "pre_mem", "mem")
        _check_shape(pre_mem, mem.shape, op, "pre_mem", "(that of mem, with reset_delay=False)")
    _recurrent_scale(rec_scale, mem, op, "mem")
    _once_needs_same_step(reset, reset_delay, op)


# ---- leaky_sequence (csrc/op_checks.h) -------------------------------------------------------
def _leaky_parameters(ref: torch.Tensor, ref_name: str, beta: torch.Tensor, threshold: torch.Tensor, reset: int,
                      surrogate: int, sparam: float, reset_delay: bool, op: str) -> None:
    n = ref.shape[2]
    for t, name in ((beta, "beta"), (threshold, "threshold")):
        _like(t, ref, op, name, ref_name)
        _check_shape(t, (n,), op, name, "(N,) (N = the neurons of the sequence)")
    _code(reset, 0, 4, op, "reset", "0 (subtract), 1 (zero), 2 (none), 3 (subtract once) or 4 (zero once)")
    _code(surrogate, 0, 6, op, "surrogate", "a surrogate code in [0, 6]")
    _finite(sparam, op, "surrogate_param")
    _once_needs_same_step(reset, reset_delay, op)


def leaky_sequence(x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset: int, surrogate: int,
                   sparam: float, reset_delay: bool = True) -> None:
    """Checks of ``leaky_sequence(...)``."""
    op = "leaky_sequence"
    _sequence(x, op, "x")
    _leaky_parameters(x, "x", beta, threshold, reset, surrogate, sparam, reset_delay, op)


def leaky_sequence_backward(grad_spk: torch.Tensor, grad_mem: torch.Tensor, beta: torch.Tensor,
                            threshold: torch.Tensor, mem: torch.Tensor, pre_mem: torch.Tensor, reset: int,
                            surrogate: int, sparam: float, reset_delay: bool = True) -> None:
    """Checks of ``leaky_sequence_backward(...)``."""
    op = "leaky_sequence_backward"
    _sequence(mem, op, "mem")
    _leaky_parameters(mem, "mem", beta, threshold, reset, surrogate, sparam, reset_delay, op)
    for g, name in ((grad_spk, "grad_spk"), (grad_mem, "grad_mem")):
        _like(g, mem, op, name, "mem")
        _check_shape(g, mem.shape, op, name, "(that of mem)")
    if not reset_delay:
        _like(pre_mem, mem, op, "pre_mem", "mem")
        _check_shape(pre_mem, mem.shape, op, "pre_mem", "(that of mem, with reset_delay=False)")


# ---- synaptic_sequence (csrc/op_checks.h) ----------------------------------------------------
def _synaptic_parameters(ref: torch.Tensor, ref_name: str, alpha: torch.Tensor, beta: torch.Tensor,
                         threshold: torch.Tensor, reset: int, surrogate: int, sparam: float, reset_delay: bool,
                         op: str) -> None:
    _like(alpha, ref, op, "alpha", ref_name)
    _check_shape(alpha, (ref.shape[2],), op, "alpha", "(N,) (N = the neurons of the sequence)")
    _leaky_parameters(ref, ref_name, beta, threshold, reset, surrogate, sparam, reset_delay, op)


def synaptic_sequence(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
                      reset: int, surrogate: int, sparam: float, reset_delay: bool = True) -> None:
    """Checks of ``synaptic_sequence(...)``."""
    op = "synaptic_sequence"
    _sequence(x, op, "x")
    _synaptic_parameters(x, "x", alpha, beta, threshold, reset, surrogate, sparam, reset_delay, op)


def synaptic_sequence_backward(grad_spk: torch.Tensor, grad_syn: torch.Tensor, grad_mem: torch.Tensor,
                               alpha: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, syn: torch.Tensor,
                               mem: torch.Tensor, pre_mem: torch.Tensor, reset: int, surrogate: int, sparam: float,
                               reset_delay: bool = True) -> None:
    """Checks of ``synaptic_sequence_backward(...)``."""
    op = "synaptic_sequence_backward"
    _sequence(mem, op, "mem")
    _synaptic_parameters(mem, "mem", alpha, beta, threshold, reset, surrogate, sparam, reset_delay, op)
    for t, name in ((grad_spk, "grad_spk"), (grad_syn, "grad_syn"), (grad_mem, "grad_mem"), (syn, "syn")):
        _like(t, mem, op, name, "mem")
        _check_shape(t, mem.shape, op, name, "(that of mem)")
    if not reset_delay:
        _like(pre_mem, mem, op, "pre_mem", "mem")
        _check_shape(pre_mem, mem.shape, op, "pre_mem", "(that of mem, with reset_delay=False)")


# ---- EventProp ops (csrc/eventprop_common.h) -------------------------------------------------
def _constants(op: str, max_delay: int, alpha: float, beta: float, threshold: float, syn_scale: float,
               min_denominator: float, reg_strength: float, reg_target: float) -> None:
    if not 1 <= max_delay < 2**30:
        raise ValueError(f"{op}: max_delay: expected an int in [1, 2^30), got {max_delay}")
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{op}: {name}: expected a decay in (0, 1), got {value}")
    if not threshold > 0.0:
        raise ValueError(f"{op}: threshold: expected a float > 0 (or inf), got {threshold}")
    for name, value in (("syn_scale", syn_scale), ("min_denominator", min_denominator)):
        if not (math.isfinite(value) and value > 0.0):
            raise ValueError(f"{op}: {name}: expected a finite float > 0, got {value}")
    for name, value in (("reg_strength", reg_strength), ("reg_target", reg_target)):
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{op}: {name}: expected a finite float >= 0, got {value}")


def _integral(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def eventprop_lif_forward(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor,
                          rec_weight: Optional[torch.Tensor], rec_delays: Optional[torch.Tensor], max_delay: int,
                          alpha: float, beta: float, threshold: float, syn_scale: float, min_denominator: float,
                          reg_strength: float, reg_target: float, max_spikes: int) -> None:
    """Checks of ``eventprop_lif_forward(...)`` (not the binary values of ``x``)."""
    op = "eventprop_lif_forward"
    _sequence(x, op, "x")
    _like(weight, x, op, "weight", "x")
    if weight.dim() != 2 or weight.shape[1] != x.shape[2]:
        raise ValueError(f"{op}: weight: expected shape (N, {x.shape[2]}) (F = the features of x), "
                         f"got {_shape(weight.shape)}")
    _like(delays, x, op, "delays", "x")
    _check_shape(delays, weight.shape, op, "delays", "(that of weight)")
    if (rec_weight is None) != (rec_delays is None):
        got = "rec_weight only" if rec_weight is not None else "rec_delays only"
        raise ValueError(f"{op}: rec_weight, rec_delays: expected both or neither, got {got}")
    if rec_weight is not None and rec_delays is not None:
        n = weight.shape[0]
        _like(rec_weight, x, op, "rec_weight", "x")
        _check_shape(rec_weight, (n, n), op, "rec_weight", "(N, N) (N = the rows of weight)")
        _like(rec_delays, x, op, "rec_delays", "x")
        _check_shape(rec_delays, (n, n), op, "rec_delays", "(N, N) (that of rec_weight)")
    _constants(op, max_delay, alpha, beta, threshold, syn_scale, min_denominator, reg_strength, reg_target)
    if max_spikes < -1:
        raise ValueError(f"{op}: max_spikes: expected -1 (no limit) or a count >= 0, got {max_spikes}")


def eventprop_lif_backward(grad_spk: torch.Tensor, grad_mem: torch.Tensor, x_idx: torch.Tensor,
                           s_idx: torch.Tensor, s_rise: torch.Tensor, weight: torch.Tensor, d_ff: torch.Tensor,
                           rec_weight: Optional[torch.Tensor], d_rec: Optional[torch.Tensor], T: int, B: int,
                           max_delay: int, alpha: float, beta: float, threshold: float, syn_scale: float,
                           min_denominator: float, reg_strength: float, reg_target: float) -> Tuple[int, int]:
    """Checks of ``eventprop_lif_backward(...)`` (not the index ranges); returns ``(N, F)``."""
    op = "eventprop_lif_backward"
    if weight.dim() != 2:
        raise ValueError(f"{op}: weight: expected a (N, F) tensor, got {weight.dim()} dims")
    _floating(weight, op, "weight")
    n, f = weight.shape
    if T < 0 or B < 0:
        raise ValueError(f"{op}: T, B: expected sizes >= 0, got {T}, {B}")
    if not _integral(d_ff.dtype):
        raise TypeError(f"{op}: d_ff: expected integer delays, got {_dtype(d_ff.dtype)}")
    _on_device_of(d_ff, weight, op, "d_ff", "weight")
    _check_shape(d_ff, weight.shape, op, "d_ff", "(that of weight)")
    for g, name in ((grad_spk, "grad_spk"), (grad_mem, "grad_mem")):
        if g.numel() == 0:
            continue
        _like(g, weight, op, name, "weight")
        _check_shape(g, (T, B, n), op, name, "(T, B, N) or empty")
    for idx, name in ((x_idx, "x_idx"), (s_idx, "s_idx")):
        if not _integral(idx.dtype):
            raise TypeError(f"{op}: {name}: expected integer indices, got {_dtype(idx.dtype)}")
        if idx.dim() != 1:
            raise ValueError(f"{op}: {name}: expected a 1-d tensor, got {idx.dim()} dims")
        _on_device_of(idx, weight, op, name, "weight")
    _like(s_rise, weight, op, "s_rise", "weight")
    _check_shape(s_rise, s_idx.shape, op, "s_rise", "(that of s_idx: one rise per output spike)")
    if (rec_weight is None) != (d_rec is None):
        got = "rec_weight only" if rec_weight is not None else "d_rec only"
        raise ValueError(f"{op}: rec_weight, d_rec: expected both or neither, got {got}")
    if rec_weight is not None and d_rec is not None:
        _like(rec_weight, weight, op, "rec_weight", "weight")
        _check_shape(rec_weight, (n, n), op, "rec_weight", "(N, N) (N = the rows of weight)")
        if not _integral(d_rec.dtype):
            raise TypeError(f"{op}: d_rec: expected integer delays, got {_dtype(d_rec.dtype)}")
        _on_device_of(d_rec, weight, op, "d_rec", "weight")
        _check_shape(d_rec, (n, n), op, "d_rec", "(that of rec_weight)")
    _constants(op, max_delay, alpha, beta, threshold, syn_scale, min_denominator, reg_strength, reg_target)
    return int(n), int(f)
