"""Inconsistent calls of the compiled ops and of the public functions that call them.

Every op (``torch.ops.snn_delays_ext.*``) and wrapper is described by a builder of a valid call
(random sizes and dtype) and the symbols of its tensors' dimensions. An *inconsistent* call
changes one thing: a tensor's number of dims, the size of a dimension that another tensor
shares, a dtype, a device (``meta`` among CPU tensors), an optional tensor given alone, a
scalar or code out of its range, or a value out of range (start lags, spike indices, integer
delays, non-binary spikes). Each must raise ``ValueError`` / ``TypeError`` naming an argument:
never a result, never a crash.

Run as a script, in a subprocess (a crash must not take pytest down with it)::

    python tests/_op_fuzz.py report [--seed S]   # every mutation of one base case per op
    python tests/_op_fuzz.py hypothesis N        # N random cases (hypothesis) per op

``report`` prints one JSON line per case and a summary; a case that kills the process is
recorded as a crash and the run continues in a fresh process.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass
class Case:
    """A valid call: named arguments in order, dimension symbols of the tensors, the call."""

    op: str
    args: Dict[str, Any]
    dims: Dict[str, Tuple[str, ...]]  # tensor argument -> dimension symbols
    kinds: Dict[str, str]  # tensor argument -> "float", "binary", "int64", "uint8", "index", "delay"
    call: Callable[[Dict[str, Any]], Any]
    bad_scalars: Dict[str, List[Any]] = field(default_factory=dict)
    bad_values: List[Tuple[str, Callable[[Dict[str, Any]], Dict[str, Any]]]] = field(default_factory=list)
    pairs: List[Tuple[str, str]] = field(default_factory=list)  # optional tensors given together


def _float(g: torch.Generator, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.rand(tuple(shape), generator=g, dtype=torch.float64).to(dtype)


def _set(name: str, flat_index: int, value: Any) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    def apply(a: Dict[str, Any]) -> Dict[str, Any]:
        t = a[name].clone()
        t.view(-1)[flat_index] = value
        return {**a, name: t}
    return apply


def _append(name: str, value: int, partner: Optional[str] = None) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    def apply(a: Dict[str, Any]) -> Dict[str, Any]:
        out = {**a, name: torch.cat([a[name], a[name].new_tensor([value])])}
        if partner is not None:
            out[partner] = torch.cat([a[partner], a[partner].new_ones(1)])
        return out
    return apply


def _start_values(name: str = "start") -> List[Tuple[str, Callable]]:
    return [(f"{name}={v}", _set(name, 0, v)) for v in (INT64_MIN, INT64_MAX, 2**31, -(2**31) - 1)]


# ---- the raw ops ---------------------------------------------------------------------------
def _ops() -> Any:
    import snn_delays_ext.ops  # noqa: F401  (registers the ops)

    return torch.ops.snn_delays_ext


def delay_channels(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, backward: bool) -> Case:
    T, B, C, W = s["T"], s["B"], s["C"], s["W"]
    args: Dict[str, Any] = {}
    dims: Dict[str, Tuple[str, ...]] = {}
    if backward:
        args["grad_y"], dims["grad_y"] = _float(g, (T, B, C), dt), ("T", "B", "C")
    args["x"], dims["x"] = _float(g, (T, B, C), dt), ("T", "B", "C")
    args["start"], dims["start"] = torch.randint(-2, 4, (C,), generator=g), ("C",)
    args["vals"], dims["vals"] = _float(g, (C, W), dt), ("C", "W")
    kinds = {n: ("int64" if n == "start" else "float") for n in args}
    name = "delay_channels_backward" if backward else "delay_channels"
    return Case(name, args, dims, kinds, lambda a: getattr(_ops(), name)(*a.values()),
                bad_values=_start_values())


def synaptic_delay(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, backward: bool) -> Case:
    T, B, I, O, W = s["T"], s["B"], s["I"], s["O"], s["W"]
    args: Dict[str, Any] = {}
    dims: Dict[str, Tuple[str, ...]] = {}
    if backward:
        args["grad_y"], dims["grad_y"] = _float(g, (T, B, O), dt), ("T", "B", "O")
    args["x"], dims["x"] = _float(g, (T, B, I), dt), ("T", "B", "I")
    args["weight"], dims["weight"] = _float(g, (O, I), dt), ("O", "I")
    args["start"], dims["start"] = torch.randint(-2, 4, (O, I), generator=g), ("O", "I")
    args["vals"], dims["vals"] = _float(g, (O, I, W), dt), ("O", "I", "W")
    kinds = {n: ("int64" if n == "start" else "float") for n in args}
    name = "synaptic_delay_backward" if backward else "synaptic_delay"
    return Case(name, args, dims, kinds, lambda a: getattr(_ops(), name)(*a.values()),
                bad_values=_start_values())


def recurrent_lif(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, backward: bool,
                  synaptic: bool) -> Case:
    T, B, N, W = s["T"], s["B"], s["N"], s["W"]
    delay_dims = ("N", "N") if synaptic else ("N",)
    delay_shape = (N, N) if synaptic else (N,)
    args: Dict[str, Any] = {}
    dims: Dict[str, Tuple[str, ...]] = {}
    if backward:
        args["grad_spk"], dims["grad_spk"] = _float(g, (T, B, N), dt), ("T", "B", "N")
        args["grad_mem"], dims["grad_mem"] = _float(g, (T, B, N), dt), ("T", "B", "N")
    else:
        args["x"], dims["x"] = _float(g, (T, B, N), dt), ("T", "B", "N")
    args["weight"], dims["weight"] = _float(g, (N, N), dt), ("N", "N")
    if not backward:
        args["bias"], dims["bias"] = _float(g, (N,), dt), ("N",)
    args["start"], dims["start"] = torch.randint(0, 4, delay_shape, generator=g), delay_dims
    args["vals"], dims["vals"] = _float(g, delay_shape + (W,), dt), delay_dims + ("W",)
    args["beta"], dims["beta"] = _float(g, (N,), dt), ("N",)
    args["threshold"], dims["threshold"] = _float(g, (N,), dt) + 0.5, ("N",)
    if backward:
        args["mem"], dims["mem"] = _float(g, (T, B, N), dt), ("T", "B", "N")
        args["spk_bits"], dims["spk_bits"] = torch.randint(0, 2, (T, B, N), generator=g, dtype=torch.uint8), \
            ("T", "B", "N")
        args["pre_mem"], dims["pre_mem"] = _float(g, (T, B, N), dt), ("T", "B", "N")
    args.update(reset=0, surrogate=0, surrogate_param=2.0, synaptic=synaptic, reset_delay=not backward,
                detach_reset=False)
    args["rec_scale"], dims["rec_scale"] = _float(g, (B, N), dt), ("B", "N")  # recurrent dropout factors
    kinds = {n: {"start": "int64", "spk_bits": "uint8"}.get(n, "float") for n in dims}
    # the backward case runs the same-step reset (reset_delay=False), which reads pre_mem
    name = "recurrent_lif_backward" if backward else "recurrent_lif"
    # codes 3, 4 (reset once, spikingjelly's) are valid with reset_delay=False only (the backward case)
    bad = {"reset": [-1, 5, INT64_MIN] + ([] if backward else [3, 4]), "surrogate": [-1, 7, 2**40],
           "surrogate_param": [math.nan, math.inf]}
    return Case(name, args, dims, kinds, lambda a: getattr(_ops(), name)(*a.values()), bad_scalars=bad,
                bad_values=_start_values())


def neuron_sequence(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, op: str, backward: bool) -> Case:
    """``leaky_sequence`` / ``synaptic_sequence`` and their backward ops (the backward case runs
    the same-step reset, reset_delay=False, which reads pre_mem)."""
    T, B, N = s["T"], s["B"], s["N"]
    synaptic = op == "synaptic_sequence"
    seq, cur = ("T", "B", "N"), ("syn",) if synaptic else ()
    names = ((("grad_spk", "grad_syn") if synaptic else ("grad_spk",)) + ("grad_mem",)) if backward else ("x",)
    names += (("alpha",) if synaptic else ()) + ("beta", "threshold") + ((cur + ("mem", "pre_mem")) if backward else ())
    dims: Dict[str, Tuple[str, ...]] = {n: (("N",) if n in ("alpha", "beta", "threshold") else seq) for n in names}
    sizes = {"T": T, "B": B, "N": N}
    args: Dict[str, Any] = {n: _float(g, tuple(sizes[d] for d in dims[n]), dt) for n in names}
    args["threshold"] = args["threshold"] + 0.5
    args.update(reset=0, surrogate=0, surrogate_param=2.0, reset_delay=not backward, detach_reset=False)
    kinds = {n: "float" for n in dims}
    # codes 3, 4 (reset once) are valid with reset_delay=False only (the backward case)
    bad = {"reset": [-1, 5, INT64_MIN] + ([] if backward else [3, 4]), "surrogate": [-1, 7, 2**40],
           "surrogate_param": [math.nan, math.inf]}
    name = op + ("_backward" if backward else "")
    return Case(name, args, dims, kinds, lambda a: getattr(_ops(), name)(*a.values()), bad_scalars=bad)


_EP_CONSTANTS = dict(alpha=0.9, beta=0.8, threshold=1.0, syn_scale=1.0, min_denominator=1e-6,
                     reg_strength=0.0, reg_target=0.0)
_EP_BAD = {"max_delay": [0, -1, 2**30, INT64_MIN], "alpha": [0.0, 1.0, math.nan, -0.5],
           "beta": [0.0, 1.5, math.nan], "threshold": [0.0, -1.0, math.nan],
           "syn_scale": [0.0, math.inf, math.nan], "min_denominator": [0.0, -1.0, math.nan],
           "reg_strength": [-1.0, math.nan, math.inf], "reg_target": [-1.0, math.nan]}


def eventprop_forward(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, recurrent: bool) -> Case:
    T, B, F, N, D = s["T"], s["B"], s["I"], s["N"], s["D"]
    args: Dict[str, Any] = {
        "x": (torch.rand((T, B, F), generator=g) < 0.3).to(dt),
        "weight": _float(g, (N, F), dt) * 3,
        "delays": _float(g, (N, F), dt) * D,
        "rec_weight": _float(g, (N, N), dt) if recurrent else None,
        "rec_delays": _float(g, (N, N), dt) * D if recurrent else None,
        "max_delay": D, **_EP_CONSTANTS, "max_spikes": -1, "record_mem": True,
    }
    dims = {"x": ("T", "B", "F"), "weight": ("N", "F"), "delays": ("N", "F")}
    if recurrent:
        dims.update(rec_weight=("N", "N"), rec_delays=("N", "N"))
    kinds = {n: "binary" if n == "x" else "float" for n in dims}
    bad = {**_EP_BAD, "max_spikes": [-2, INT64_MIN]}
    values = [(f"x={v}", _set("x", 0, v)) for v in (0.5, 2.0, -1.0, math.nan)]
    return Case("eventprop_lif_forward", args, dims, kinds,
                lambda a: _ops().eventprop_lif_forward(*a.values()), bad_scalars=bad, bad_values=values,
                pairs=[("rec_weight", "rec_delays")] if recurrent else [])


def eventprop_backward(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, recurrent: bool) -> Case:
    T, B, F, N, D = s["T"], s["B"], s["I"], s["N"], s["D"]
    n_x, n_s = max(1, (T * B * F) // 3), max(1, (T * B * N) // 3)
    x_idx = torch.randperm(T * B * F, generator=g)[:n_x].sort().values.to(torch.int32)
    s_idx = torch.randperm(T * B * N, generator=g)[:n_s].sort().values.to(torch.int32)
    args: Dict[str, Any] = {
        "grad_spk": _float(g, (T, B, N), dt), "grad_mem": _float(g, (T, B, N), dt),
        "x_idx": x_idx, "s_idx": s_idx, "s_rise": _float(g, (len(s_idx),), dt) + 0.1,
        "weight": _float(g, (N, F), dt),
        "d_ff": torch.randint(0, D + 1, (N, F), generator=g, dtype=torch.int16),
        "rec_weight": _float(g, (N, N), dt) if recurrent else None,
        "d_rec": torch.randint(1, D + 1, (N, N), generator=g, dtype=torch.int16) if recurrent else None,
        "T": T, "B": B, "max_delay": D, **_EP_CONSTANTS,
    }
    dims = {"grad_spk": ("T", "B", "N"), "grad_mem": ("T", "B", "N"), "x_idx": ("E",), "s_idx": ("S",),
            "s_rise": ("S",), "weight": ("N", "F"), "d_ff": ("N", "F")}
    if recurrent:
        dims.update(rec_weight=("N", "N"), d_rec=("N", "N"))
    kinds = {n: {"x_idx": "index", "s_idx": "index", "d_ff": "delay", "d_rec": "delay", "grad_spk": "grad",
                 "grad_mem": "grad"}.get(n, "float") for n in dims}
    values = [("x_idx=TBF", _append("x_idx", T * B * F)), ("x_idx=-1", _append("x_idx", -1)),
              ("s_idx=TBN", _append("s_idx", T * B * N, "s_rise")), ("s_idx=-1", _append("s_idx", -1, "s_rise")),
              ("d_ff=D+1", _set("d_ff", 0, D + 1)), ("d_ff=-1", _set("d_ff", 0, -1))]
    if recurrent:
        values += [("d_rec=0", _set("d_rec", 0, 0)), ("d_rec=D+1", _set("d_rec", 0, D + 1))]
    bad = {**_EP_BAD, "T": [-1, T + 1], "B": [-1, B + 1]}
    return Case("eventprop_lif_backward", args, dims, kinds,
                lambda a: _ops().eventprop_lif_backward(*a.values()), bad_scalars=bad, bad_values=values,
                pairs=[("rec_weight", "d_rec")] if recurrent else [])


# ---- the public wrappers (the checks of the functional API) ---------------------------------
def wrapper_delayed_linear(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, delay_type: str) -> Case:
    from snn_delays_ext.functional import delayed_linear

    T, B, I, O, D = s["T"], s["B"], s["I"], s["O"], s["D"]
    ddims = {"synaptic": ("O", "I"), "axonal": ("I",), "dendritic": ("O",)}[delay_type]
    sizes = {"O": O, "I": I}
    args = {"x": _float(g, (T, B, I), dt), "weight": _float(g, (O, I), dt), "bias": _float(g, (O,), dt),
            "delays": _float(g, tuple(sizes[d] for d in ddims), dt) * D, "max_delay": D}
    dims = {"x": ("T", "B", "I"), "weight": ("O", "I"), "bias": ("O",), "delays": ddims}
    kinds = {n: "float" for n in dims}
    bad = {"max_delay": [0, -1, 2**40, 2.5]}
    values = [("delays=nan", _set("delays", 0, math.nan)), ("x=inf", _set("x", 0, math.inf))]
    return Case(f"delayed_linear[{delay_type}]", args, dims, kinds,
                lambda a: delayed_linear(*a.values(), delay_type=delay_type, backend="compiled"),
                bad_scalars=bad, bad_values=values)


def wrapper_recurrent_leaky(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, delay_type: str) -> Case:
    from snn_delays_ext.functional import RecurrentLeakyParameters, recurrent_leaky_sequence

    T, B, N, D = s["T"], s["B"], s["N"], s["D"]
    ddims = ("N", "N") if delay_type == "synaptic" else ("N",)
    args = {"x": _float(g, (T, B, N), dt), "weight": _float(g, (N, N), dt), "bias": _float(g, (N,), dt),
            "delays": _float(g, (N,) * len(ddims), dt) * D, "beta": _float(g, (N,), dt),
            "threshold": _float(g, (N,), dt) + 0.5, "max_delay": D}
    dims = {"x": ("T", "B", "N"), "weight": ("N", "N"), "bias": ("N",), "delays": ddims, "beta": ("N",),
            "threshold": ("N",)}
    kinds = {n: "param" if n in ("beta", "threshold") else "float" for n in dims}

    def call(a: Dict[str, Any]) -> Any:
        import snntorch as snn

        params = RecurrentLeakyParameters(a["beta"], a["threshold"], snn.surrogate.atan())
        return recurrent_leaky_sequence(a["x"], None, a["weight"], a["bias"], a["delays"], params, a["max_delay"],
                                        delay_type=delay_type, backend="compiled")

    bad = {"max_delay": [0, -1, 2**40, 2.5]}
    values = [("delays=nan", _set("delays", 0, math.nan)), ("beta=nan", _set("beta", 0, math.nan))]
    return Case(f"recurrent_leaky_sequence[{delay_type}]", args, dims, kinds, call, bad_scalars=bad,
                bad_values=values)


def wrapper_eventprop(g: torch.Generator, s: Dict[str, int], dt: torch.dtype, recurrent: bool) -> Case:
    from snn_delays_ext.eventprop import EventPropConfig, eventprop_lif

    base = eventprop_forward(g, s, dt, recurrent)
    args = {k: base.args[k] for k in ("x", "weight", "delays", "rec_weight", "rec_delays")}

    def call(a: Dict[str, Any]) -> Any:
        cfg = EventPropConfig(alpha=0.9, beta=0.8, max_delay=s["D"])
        return eventprop_lif(a["x"], a["weight"], a["delays"], a["rec_weight"], a["rec_delays"], config=cfg,
                             backend="compiled")

    return Case(f"eventprop_lif[rec={recurrent}]", args, base.dims, base.kinds, call,
                bad_values=[v for v in base.bad_values if not v[0].startswith("x=nan")], pairs=base.pairs)


BUILDERS: Dict[str, Callable[[torch.Generator, Dict[str, int], torch.dtype], Case]] = {
    "delay_channels": lambda g, s, dt: delay_channels(g, s, dt, False),
    "delay_channels_backward": lambda g, s, dt: delay_channels(g, s, dt, True),
    "synaptic_delay": lambda g, s, dt: synaptic_delay(g, s, dt, False),
    "synaptic_delay_backward": lambda g, s, dt: synaptic_delay(g, s, dt, True),
    "recurrent_lif[axonal]": lambda g, s, dt: recurrent_lif(g, s, dt, False, False),
    "recurrent_lif[synaptic]": lambda g, s, dt: recurrent_lif(g, s, dt, False, True),
    "recurrent_lif_backward[axonal]": lambda g, s, dt: recurrent_lif(g, s, dt, True, False),
    "recurrent_lif_backward[synaptic]": lambda g, s, dt: recurrent_lif(g, s, dt, True, True),
    "leaky_sequence": lambda g, s, dt: neuron_sequence(g, s, dt, "leaky_sequence", False),
    "leaky_sequence_backward": lambda g, s, dt: neuron_sequence(g, s, dt, "leaky_sequence", True),
    "synaptic_sequence": lambda g, s, dt: neuron_sequence(g, s, dt, "synaptic_sequence", False),
    "synaptic_sequence_backward": lambda g, s, dt: neuron_sequence(g, s, dt, "synaptic_sequence", True),
    "eventprop_lif_forward": lambda g, s, dt: eventprop_forward(g, s, dt, False),
    "eventprop_lif_forward[rec]": lambda g, s, dt: eventprop_forward(g, s, dt, True),
    "eventprop_lif_backward": lambda g, s, dt: eventprop_backward(g, s, dt, False),
    "eventprop_lif_backward[rec]": lambda g, s, dt: eventprop_backward(g, s, dt, True),
    "delayed_linear[synaptic]": lambda g, s, dt: wrapper_delayed_linear(g, s, dt, "synaptic"),
    "delayed_linear[axonal]": lambda g, s, dt: wrapper_delayed_linear(g, s, dt, "axonal"),
    "delayed_linear[dendritic]": lambda g, s, dt: wrapper_delayed_linear(g, s, dt, "dendritic"),
    "recurrent_leaky_sequence[axonal]": lambda g, s, dt: wrapper_recurrent_leaky(g, s, dt, "axonal"),
    "recurrent_leaky_sequence[synaptic]": lambda g, s, dt: wrapper_recurrent_leaky(g, s, dt, "synaptic"),
    "eventprop_lif[rec=False]": lambda g, s, dt: wrapper_eventprop(g, s, dt, False),
    "eventprop_lif[rec=True]": lambda g, s, dt: wrapper_eventprop(g, s, dt, True),
}
RAW_OPS = [k for k in BUILDERS if not k.startswith(("delayed_linear", "recurrent_leaky_sequence", "eventprop_lif["))]


# ---- mutations -------------------------------------------------------------------------------
_OTHER_DTYPES = {
    "float": [None, torch.float16, torch.int32],  # None: the other of float32 / float64
    "grad": [None, torch.float16, torch.int32],
    "binary": [None, torch.int32],
    "int64": [torch.int32, torch.float32],
    "uint8": [torch.bool, torch.float32],
    "index": [torch.float32],
    "delay": [torch.float32],
    "param": [torch.int32],  # a neuron constant: any floating dtype (cast), a scalar or one per neuron
}


def mutations(case: Case) -> List[Tuple[str, bool, Callable[[Dict[str, Any]], Dict[str, Any]]]]:
    """Every inconsistent variant of a valid call: ``(label, reads_values, make_args)``."""
    out: List[Tuple[str, bool, Callable[[Dict[str, Any]], Dict[str, Any]]]] = []
    uses: Dict[str, int] = {}
    for d in case.dims.values():
        for sym in set(d):
            uses[sym] = uses.get(sym, 0) + 1
    for name, d in case.dims.items():
        def put(fn: Callable[[torch.Tensor], torch.Tensor], name: str = name) -> Callable:
            return lambda a: {**a, name: fn(a[name])}

        out.append((f"{name}: one more dim", False, put(lambda t: t.unsqueeze(0))))
        if len(d) >= 1 and case.kinds[name] != "param":
            out.append((f"{name}: one dim less", False, put(lambda t: t[0])))
        for k, sym in enumerate(d):
            if uses[sym] > 1 or d.count(sym) > 1:
                def grow(t: torch.Tensor, k: int = k) -> torch.Tensor:
                    shape = list(t.shape)
                    shape[k] += 1
                    return torch.zeros(shape, dtype=t.dtype)
                out.append((f"{name}: dim {k} ({sym}) one larger", False, put(grow)))
        for other in _OTHER_DTYPES[case.kinds[name]]:
            def cast(t: torch.Tensor, other: Optional[torch.dtype] = other) -> torch.Tensor:
                if other is None:
                    other = torch.float64 if t.dtype == torch.float32 else torch.float32
                return t.to(other)
            out.append((f"{name}: dtype {other or 'other float'}", False, put(cast)))
        if case.kinds[name] not in ("grad", "index"):  # no gradient, no events: valid
            out.append((f"{name}: empty", False, put(lambda t: t.new_empty(0))))
        out.append((f"{name}: on meta", False, put(lambda t: t.to("meta"))))
    for a, b in case.pairs:
        out.append((f"{a} without {b}", False, lambda x, b=b: {**x, b: None}))
        out.append((f"{b} without {a}", False, lambda x, a=a: {**x, a: None}))
    for name, bads in case.bad_scalars.items():
        for v in bads:
            out.append((f"{name}={v}", False, lambda a, name=name, v=v: {**a, name: v}))
    for label, fn in case.bad_values:
        out.append((label, True, fn))
    return out


def base_case(op: str, seed: int = 0, dtype: torch.dtype = torch.float32,
              sizes: Optional[Dict[str, int]] = None) -> Case:
    g = torch.Generator().manual_seed(seed)
    s = {"T": 5, "B": 2, "C": 3, "I": 3, "O": 2, "N": 3, "W": 2, "D": 4, **(sizes or {})}
    return BUILDERS[op](g, s, dtype)


def names_an_argument(case: Case, message: str) -> bool:
    """Whether an error message names one of the call's arguments (``name:`` or ``name=``)."""
    names = set(case.args) | {"max_delay", "backend", "mem", "past", "config"}
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = re.sub(r"^(snn_delays_ext::)?\w+: (?=\S+[:,])", "", first)  # a raw op's "op: " prefix
    head = re.split(r"[:,]", first, maxsplit=1)[0].removeprefix("params.").removeprefix("state.")
    return head in names


def outcome(case: Case, args: Dict[str, Any]) -> Tuple[str, str]:
    """``("raise", message)`` for a ValueError/TypeError naming an argument, ``("raise-other",
    ...)`` for any other exception, ``("result", ...)`` when the call returned."""
    try:
        case.call(args)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        return ("raise" if names_an_argument(case, msg) else "raise-unnamed"), msg.splitlines()[0][:200]
    except Exception as exc:  # noqa: BLE001 - the category is the point
        return "raise-other", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return "result", ""


# ---- the script ------------------------------------------------------------------------------
def _report_child(start: int, seed: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    index = 0
    for op in BUILDERS:
        case = base_case(op, seed)
        try:
            case.call(case.args)
        except Exception as exc:  # the valid call itself must work
            print(json.dumps({"i": -1, "op": op, "label": "VALID CALL", "outcome": "raise-other",
                              "message": str(exc)[:200]}), flush=True)
        for label, _, make in mutations(case):
            if index >= start:
                print(json.dumps({"start": index, "op": op, "label": label}), flush=True)
                kind, msg = outcome(case, make(case.args))
                print(json.dumps({"i": index, "op": op, "label": label, "outcome": kind, "message": msg}),
                      flush=True)
            index += 1


def report(seed: int = 0) -> List[Dict[str, Any]]:
    """Every mutation of every op's base case, each crash isolated: one record per case."""
    records: List[Dict[str, Any]] = []
    start = 0
    while True:
        proc = subprocess.run([sys.executable, __file__, "_child", str(start), str(seed)], capture_output=True,
                              text=True, env={**os.environ, "PYTHONFAULTHANDLER": "0"})
        last = None
        for line in proc.stdout.splitlines():
            rec = json.loads(line)
            if "start" in rec:
                last = rec
            else:
                records.append(rec)
                last = None
        if proc.returncode == 0:
            return records
        if last is None:
            raise RuntimeError(f"the fuzz child failed outside a case:\n{proc.stderr[-2000:]}")
        records.append({"i": last["start"], "op": last["op"], "label": last["label"], "outcome": "crash",
                        "message": f"exit status {proc.returncode}"})
        start = last["start"] + 1


def hypothesis_run(examples: int) -> None:
    """Random sizes, dtype and mutation per op; on CPU tensors and on meta tensors (the fake
    implementations); every inconsistent call must raise ValueError/TypeError naming an argument."""
    import warnings

    from hypothesis import strategies as st

    warnings.simplefilter("ignore")
    sizes = st.fixed_dictionaries({k: st.integers(1, 4) for k in ("T", "B", "C", "I", "O", "N", "W", "D")})

    for op in BUILDERS:
        check = _hypothesis_check(op, examples, sizes)
        check()
        print(f"{op}: {examples} inconsistent calls raised", flush=True)


def _hypothesis_check(op: str, examples: int, sizes: Any) -> Callable[[], None]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(s=sizes, double=st.booleans(), seed=st.integers(0, 2**16), data=st.data())
    def check(s: Dict[str, int], double: bool, seed: int, data: Any) -> None:
        case = base_case(op, seed, torch.float64 if double else torch.float32, s)
        case.call(case.args)  # the valid call runs (the checks refuse nothing consistent)
        muts = mutations(case)
        label, reads_values, make = data.draw(st.sampled_from(muts), label="mutation")
        args = make(case.args)
        kind, msg = outcome(case, args)
        assert kind == "raise", f"{op} / {label}: {kind} {msg}"
        if reads_values or op not in RAW_OPS or label.endswith("on meta"):  # (all-meta: consistent)
            return
        # the fake implementation (meta tensors: torch.compile, shape propagation) agrees
        meta = {k: v.to("meta") if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        kind_meta, msg_meta = outcome(case, meta)
        assert kind_meta == "raise", f"{op} / {label} on meta: {kind_meta} {msg_meta}"
        assert msg_meta.split(": expected")[0] == msg.split(": expected")[0], (msg, msg_meta)


    return check


if __name__ == "__main__":
    if sys.argv[1] == "_child":
        _report_child(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "report":
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
        recs = report(seed)
        for r in recs:
            print(json.dumps(r))
        kinds: Dict[str, int] = {}
        for r in recs:
            kinds[r["outcome"]] = kinds.get(r["outcome"], 0) + 1
        raw = [r for r in recs if r["op"] in RAW_OPS]
        raw_kinds: Dict[str, int] = {}
        for r in raw:
            raw_kinds[r["outcome"]] = raw_kinds.get(r["outcome"], 0) + 1
        print(json.dumps({"summary": {"all": kinds, "raw_ops": raw_kinds, "total": len(recs),
                                      "raw_total": len(raw)}}))
    elif sys.argv[1] == "hypothesis":
        hypothesis_run(int(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
