"""What export and import share: unit conversion, delayed maps as NIR nodes, and reading them back.

Names here are the package's own (this module is private); the flavour modules (``snntorch``,
``norse``, ``eventprop``) register their exporters with :func:`register_exporter`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import nir
import numpy as np
import torch
from torch import nn

from .._delay_layer import DelayLayerMixin
from ..delayed_linear import DelayedLinear
from ..functional.interpolation import round_half_up

#: A module's exporter: ``(name, module, input width, dt, max_hardware_delay) -> (node, output width)``
Exporter = Callable[[str, nn.Module, int, float, Optional[int]], Tuple["nir.NIRNode", int]]
_EXPORTERS: Dict[type, Exporter] = {}


def register_exporter(cls: type, exporter: Exporter) -> None:
    """Export modules of type ``cls`` (and of its subclasses without their own) with ``exporter``."""
    _EXPORTERS[cls] = exporter


def find_exporter(m: nn.Module) -> Optional[Exporter]:
    """The exporter of the nearest class in ``type(m).__mro__`` that has one."""
    for cls in type(m).__mro__:
        if cls in _EXPORTERS:
            return _EXPORTERS[cls]
    return None


def need_inputs(name: str, m: nn.Module, n_in: int, k: int, what: str) -> None:
    """Refuse a module that expects ``k`` inputs after a layer that gives ``n_in``."""
    if k != n_in:
        raise ValueError(
            f"net: module {name!r} ({type(m).__name__}) expects {k} {what}, but the previous "
            f"layer gives {n_in}"
        )


SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.AlphaDropout)


# a Delay holds whole steps when within this many ulps (relative to the lag) of an integer
LAG_ULPS = 4


def check_dt(dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt: expected a float > 0 (the time step in seconds), got {type(dt).__name__} ({dt!r})")
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt: expected a finite float > 0 (the time step in seconds), got {dt}")
    return dt


def to_numpy(t: Union[torch.Tensor, float, np.ndarray]) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def vector(value: Union[torch.Tensor, float], n: int, name: str) -> np.ndarray:
    """Broadcast a scalar or per-neuron parameter to ``(n,)`` (float64 holds float32 exactly)."""
    a = np.asarray(to_numpy(value), dtype=np.float64)
    if a.size not in (1, n):
        raise ValueError(f"{name}: expected a scalar or {n} values, got shape {a.shape}")
    return np.broadcast_to(a.reshape(-1), (n,)).copy() if a.size == 1 else a.reshape(n).copy()


# a decay of 1 (no leak) is written as tau = 2**24 dt, a decay of 1 - 2**-24 per step (the float32
# number below 1): a finite value, because NIR simulators step LIF with (dt / tau) * r, and with
# tau = r = inf that is 0 * inf = NaN. Import reads such a tau (or longer) back as a decay of 1.
NO_LEAK_STEPS = 2.0 ** 24


def tau_of(decay: np.ndarray, dt: float) -> np.ndarray:
    """``dt / (1 - decay)``; ``2**24 dt`` for ``decay >= 1`` (no leak, see ``NO_LEAK_STEPS``)."""
    decay = np.asarray(decay, dtype=np.float64)
    gap = np.maximum(1.0 - decay, 1.0 / NO_LEAK_STEPS)
    return dt / gap


def decay_of(tau: np.ndarray, dt: float) -> np.ndarray:
    """The inverse of :func:`tau_of`: ``1 - dt / tau``, and 1 for ``tau >= 2**24 dt`` (or ``inf``)."""
    tau = np.asarray(tau, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(tau >= NO_LEAK_STEPS * dt, 1.0, 1.0 - dt / tau)


def meta_str(meta: Dict[str, Any], key: str, default: Optional[str] = None) -> Optional[str]:
    v = meta.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO":
        v = v.item()
        v = v.decode() if isinstance(v, bytes) else v
    return v


def delay_steps(layer: DelayLayerMixin, max_hardware_delay: Optional[int], name: str) -> np.ndarray:
    """Whole-step delays of a layer: clamped, rounded half up (never truncated)."""
    d = layer.delays.detach().clamp(float(layer.min_delay), float(layer.max_delay))
    rounded = round_half_up(d)
    # "round" interpolation already reads the rounded lag whatever sigma: exact either way
    if layer.interpolation != "round" and (not torch.equal(rounded, d) or layer.sigma != 0):
        warnings.warn(
            f"export_to_nir: the delays of {name!r} were rounded to whole steps (halves up) "
            f"and sigma={layer.sigma:g} dropped; call snn_delays_ext.quantize_delays(net) "
            "before exporting for an exact export",
            stacklevel=3,
        )
    return within_limit(rounded, max_hardware_delay, name, "")


def within_limit(rounded: torch.Tensor, max_hardware_delay: Optional[int], name: str, kind: str) -> np.ndarray:
    """Whole-step delays as int64, refused above the target's ``max_hardware_delay``."""
    if max_hardware_delay is not None and bool((rounded > max_hardware_delay).any()):
        raise ValueError(
            f"max_hardware_delay: module {name!r} has {int((rounded > max_hardware_delay).sum())} "
            f"rounded {kind}delays above the limit {max_hardware_delay} (largest {int(rounded.max())})"
        )
    return rounded.cpu().numpy().astype(np.int64)


def affine_node(weight: np.ndarray, bias: Optional[np.ndarray]) -> nir.NIRNode:
    weight = np.asarray(weight, dtype=np.float32)
    if bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=np.asarray(bias, dtype=np.float32))


def add_delayed_map(
    nodes: Dict[str, nir.NIRNode],
    edges: List[Tuple[str, str]],
    src: str,
    dst: str,
    weight: np.ndarray,
    bias: Optional[np.ndarray],
    lags: Optional[np.ndarray],
    delay_type: str,
    dt: float,
    tag: str,
) -> None:
    """Add nodes computing ``dst += delayed(W) src + b`` (lags in whole steps)."""
    if lags is None:
        nodes[f"{tag}affine"] = affine_node(weight, bias)
        edges += [(src, f"{tag}affine"), (f"{tag}affine", dst)]
    elif delay_type == "axonal":
        nodes[f"{tag}delay"] = nir.Delay(delay=lags.astype(np.float64) * dt)
        nodes[f"{tag}affine"] = affine_node(weight, bias)
        edges += [(src, f"{tag}delay"), (f"{tag}delay", f"{tag}affine"), (f"{tag}affine", dst)]
    elif delay_type == "dendritic":
        nodes[f"{tag}linear"] = affine_node(weight, None)
        nodes[f"{tag}delay"] = nir.Delay(delay=lags.astype(np.float64) * dt)
        edges += [(src, f"{tag}linear"), (f"{tag}linear", f"{tag}delay"), (f"{tag}delay", dst)]
        if bias is not None:  # the bias is not delayed: a parallel zero-weight branch
            nodes[f"{tag}bias"] = affine_node(np.zeros_like(weight), bias)
            edges += [(src, f"{tag}bias"), (f"{tag}bias", dst)]
    elif delay_type == "synaptic":
        values = sorted(int(v) for v in np.unique(lags))
        n_in = weight.shape[1]
        for j, d in enumerate(values):
            w_d = np.where(lags == d, weight, 0.0).astype(np.float32)
            b_d = bias if j == 0 else None
            if d == 0:
                nodes[f"{tag}w_lag0"] = affine_node(w_d, b_d)
                edges += [(src, f"{tag}w_lag0"), (f"{tag}w_lag0", dst)]
            else:
                nodes[f"{tag}delay_lag{d}"] = nir.Delay(delay=np.full(n_in, d * dt, dtype=np.float64))
                nodes[f"{tag}w_lag{d}"] = affine_node(w_d, b_d)
                edges += [
                    (src, f"{tag}delay_lag{d}"),
                    (f"{tag}delay_lag{d}", f"{tag}w_lag{d}"),
                    (f"{tag}w_lag{d}", dst),
                ]
    else:  # pragma: no cover - layers validate their delay_type
        raise ValueError(f"delay_type: unknown {delay_type!r}")


def subgraph(n_in: int, n_out: int, nodes, edges, metadata) -> nir.NIRGraph:
    allnodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    allnodes.update(nodes)
    allnodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    return nir.NIRGraph(nodes=allnodes, edges=edges, metadata=metadata)


def snn_neuron_meta(m: nn.Module, n: int) -> Dict[str, Any]:
    return {
        "reset_mechanism": str(m.reset_mechanism),
        "reset_delay": int(bool(getattr(m, "reset_delay", True))),
        "output": int(bool(getattr(m, "output", False))),
        "beta": vector(m.beta.clamp(0, 1), n, "beta"),
    }


def check_nir_neuron(m: nn.Module, name: str) -> None:
    """Refuse the snnTorch neuron options that NIR's ``LIF`` / ``CubaLIF`` cannot represent."""
    found = []
    g = to_numpy(getattr(m, "graded_spikes_factor", 1.0)).reshape(-1)
    if g.size and not np.all(g == 1.0):
        found.append(f"graded_spikes_factor={float(g[0]) if g.size == 1 else g[:4].tolist()}")
    if bool(getattr(m, "inhibition", False)):
        found.append("inhibition=True")
    if getattr(m, "state_quant", False) not in (False, None):
        found.append("state_quant set")
    if found:
        raise ValueError(
            f"net: module {name!r} ({type(m).__name__}) has {', '.join(found)}, which NIR's "
            "LIF/CubaLIF neuron cannot represent: expected graded_spikes_factor=1, "
            "inhibition=False and state_quant=False"
        )


def leaky_node(m: nn.Module, n: int, dt: float) -> nir.LIF:
    beta = vector(m.beta.clamp(0, 1), n, "beta")
    tau = tau_of(beta, dt)
    return nir.LIF(
        tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=vector(m.threshold, n, "threshold"),
        v_reset=np.zeros(n), metadata=snn_neuron_meta(m, n),
    )


def li_node(beta: np.ndarray, dt: float) -> nir.LI:
    """``nir.LI`` whose Euler step is ``v = beta v + I``: ``tau = dt / (1 - beta)``, ``r = tau / dt``."""
    tau = tau_of(beta, dt)
    return nir.LI(tau=tau, r=tau / dt, v_leak=np.zeros(tau.size), metadata={"beta": np.asarray(beta, np.float64)})


def lags_of(delay: np.ndarray, dt: float, where: str) -> np.ndarray:
    """Whole-step lags of a ``Delay`` node's delays (seconds).

    A delay counts as whole when it is within a few units in the last place of a whole number
    of steps: ``|steps - round(steps)| <= 4 * eps * max(|steps|, 1)``, ``eps`` the machine
    epsilon of the node's floating dtype, and at least float32's (``l * dt`` stored as float32,
    or written with a float32 ``dt``, is off by about ``eps32 * l`` steps, more than a fixed
    tolerance allows for long delays); a genuinely fractional delay (3.4 steps) is refused.
    """
    arr = np.asarray(delay)
    eps = float(np.finfo(np.float32).eps)
    if np.issubdtype(arr.dtype, np.floating):
        eps = max(eps, float(np.finfo(arr.dtype).eps))
    steps = arr.astype(np.float64) / dt
    if not np.all(np.isfinite(steps)):
        raise ValueError(f"graph: the Delay node {where!r} holds non-finite delays")
    rounded = np.floor(steps + 0.5)
    tol = LAG_ULPS * eps * np.maximum(np.abs(steps), 1.0)
    off = np.abs(steps - rounded) > tol
    if off.any():
        bad = steps[off].ravel()
        raise ValueError(
            f"dt: the Delay node {where!r} holds delays that are not whole multiples of "
            f"dt={dt} s: {arr[off].ravel()[:4].tolist()} s = {bad[:4].tolist()} steps"
        )
    if (rounded < 0).any():
        raise ValueError(f"graph: the Delay node {where!r} holds negative delays")
    return rounded.astype(np.int64)


def weight_bias(node: nir.NIRNode) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    w = np.asarray(node.weight)
    b = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
    return w, b


class Map:
    """A parsed (possibly delayed) linear map: weight, bias, lags and delay type."""

    def __init__(self, weight, bias, lags, delay_type):
        self.weight, self.bias, self.lags, self.delay_type = weight, bias, lags, delay_type


def parse_map(g: nir.NIRGraph, src: str, dst: str, dt: float, where: str) -> Optional[Map]:
    """The linear map on the paths from ``src`` to ``dst`` (``None`` for a direct edge)."""
    succ: Dict[str, List[str]] = {}
    for a, b in g.edges:
        succ.setdefault(a, []).append(b)
    branches = []
    direct = False
    for s in succ.get(src, []):
        if s == dst:
            direct = True
            continue
        chain: Optional[List[str]] = []
        cur = s
        while cur != dst:
            node = g.nodes[cur]
            if isinstance(node, (nir.Output, nir.Input)) or cur == src:
                chain = None  # a path that leaves the map (e.g. neuron -> output)
                break
            chain.append(cur)
            nxt = succ.get(cur, [])
            if len(chain) > 2 or len(nxt) != 1:
                raise TypeError(
                    f"graph: sub-graph {where!r} has a path {src} -> {' -> '.join(chain)} -> {nxt} "
                    "that import_from_nir does not map to a layer (expected Affine/Linear with at "
                    "most one Delay before or after it)"
                )
            cur = nxt[0]
        if chain is not None:
            branches.append(chain)
    if direct and not branches:
        return None
    if direct or not branches:
        raise ValueError(f"graph: sub-graph {where!r} mixes a direct edge {src}->{dst} with other paths")
    kinds = []
    for br in branches:
        types = tuple(type(g.nodes[k]).__name__ for k in br)
        if types in (("Affine",), ("Linear",)):
            w, b = weight_bias(g.nodes[br[0]])
            kinds.append(("lag0", w, b, None))
        elif types in (("Delay", "Affine"), ("Delay", "Linear")):
            w, b = weight_bias(g.nodes[br[1]])
            kinds.append(("pre", w, b, lags_of(g.nodes[br[0]].delay, dt, br[0])))
        elif types in (("Affine", "Delay"), ("Linear", "Delay")):
            w, b = weight_bias(g.nodes[br[0]])
            kinds.append(("post", w, b, lags_of(g.nodes[br[1]].delay, dt, br[1])))
        else:
            raise TypeError(
                f"graph: sub-graph {where!r} has a path {src} -> {' -> '.join(br)} -> {dst} of node "
                f"types {types}, which import_from_nir does not map to a layer"
            )
    out_f, in_f = kinds[0][1].shape
    weight = np.zeros((out_f, in_f), dtype=np.float32)
    bias = None
    for _, w, b, _ in kinds:
        weight = weight + w
        if b is not None:
            bias = (bias if bias is not None else 0) + b
    if all(k[0] == "lag0" for k in kinds):
        return Map(weight, bias, None, None)
    if len(kinds) == 1 and kinds[0][0] == "pre":
        return Map(weight, bias, kinds[0][3], "axonal")
    posts = [k for k in kinds if k[0] == "post"]
    if len(posts) == 1 and all(k[0] == "post" or (k[0] == "lag0" and not np.any(k[1])) for k in kinds):
        return Map(weight, bias, posts[0][3], "dendritic")
    if all(k[0] in ("lag0", "pre") for k in kinds):
        lags = np.zeros((out_f, in_f), dtype=np.int64)
        n_syn = sum((np.asarray(k[1]) != 0).astype(np.int64) for k in kinds)
        if np.any(n_syn > 1):
            i, j = (int(v) for v in np.argwhere(n_syn > 1)[0])
            raise TypeError(
                f"graph: sub-graph {where!r}: the connection from input {j} to output {i} has "
                f"non-zero weights in {int(n_syn[i, j])} parallel branches (two synapses with "
                "different delays); a delay layer holds one delay per connection, so expected "
                "at most one branch with a non-zero weight per connection"
            )
        for kind, w, _, lg in kinds:
            if kind == "pre":
                if len(np.unique(lg)) != 1:
                    raise TypeError(
                        f"graph: sub-graph {where!r}: parallel Delay branches must each hold one "
                        "delay value (one branch per synaptic delay)"
                    )
                lags = np.where(w != 0, lg[0], lags)
        return Map(weight, bias, lags, "synaptic")
    raise TypeError(f"graph: sub-graph {where!r}: cannot map its delay pattern to a layer")


def neuron_key(g: nir.NIRGraph) -> Optional[str]:
    keys = [k for k, v in g.nodes.items() if isinstance(v, (nir.LIF, nir.CubaLIF))]
    if len(keys) > 1:
        raise TypeError(f"graph: a sub-graph holds {len(keys)} neuron nodes {keys}; expected at most one")
    return keys[0] if keys else None


def to_tensor(a, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def param_value(a: np.ndarray) -> Union[float, torch.Tensor]:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if np.all(a == a[0]):
        return float(np.float32(a[0]))
    return to_tensor(a)


def with_saved_lags(
    lags: np.ndarray, weight: np.ndarray, meta: Dict[str, Any], offset: int, where: str,
    key: str = "delay_steps",
) -> np.ndarray:
    """Complete a synaptic lag matrix parsed from a graph with the one the exporter saved.

    A branch ``Delay(d) -> Linear(W * [L == d])`` says nothing about the lag of a connection
    whose weight is exactly 0, so the parsed lag of such a connection is 0. The exporter saves
    the layer's whole-step delays as ``metadata["delay_steps"]`` (for a recurrent layer
    including the one step of the recurrent edge, hence ``offset``); they fill in the lags of
    zero-weight connections. The graph decides every other lag, so a graph edited after export
    is still read as it now is. Graphs without that metadata (other tools) are unchanged.
    ``key`` names the metadata entry (the EventProp layers save their recurrent lags as
    ``"rec_delay_steps"`` beside the feed-forward ones).
    """
    if key not in meta or lags.ndim != 2:
        return lags
    saved = np.asarray(meta[key])
    ok = saved.shape == lags.shape and saved.dtype.kind in "iuf"
    if ok:
        saved = saved.astype(np.float64) - offset
        ok = bool(np.all(np.isfinite(saved)) and np.all(saved == np.round(saved)) and np.all(saved >= 0))
    if not ok:
        warnings.warn(
            f"import_from_nir: sub-graph {where!r}: metadata[{key!r}] (shape "
            f"{saved.shape}) does not fit the {lags.shape} synaptic delays of the graph, or holds "
            "values that are not whole steps; ignored",
            stacklevel=4,
        )
        return lags
    return np.where(np.asarray(weight) != 0, lags, saved.astype(np.int64))


def as_exported(mp: Map, meta: Dict[str, Any], where: str) -> Map:
    """Give a parsed map the delay type the exporter recorded (an all-zero or all-equal
    synaptic delay matrix has the structure of a plain or an axonal map) and the saved lags of
    its zero-weight connections."""
    want = meta_str(meta, "delay_type")
    if meta_str(meta, "module") not in ("DelayedLinear", "DelayedLIF", "DelayedLIFCell") or not want:
        return mp
    out_f, in_f = mp.weight.shape
    shapes = {"synaptic": (out_f, in_f), "axonal": (in_f,), "dendritic": (out_f,)}
    if want not in shapes:
        return mp
    shape = shapes[want]
    if mp.lags is None:
        mp = Map(mp.weight, mp.bias, np.zeros(shape, dtype=np.int64), want)
    elif want == "synaptic" and mp.delay_type == "axonal":
        mp = Map(mp.weight, mp.bias, np.broadcast_to(mp.lags[None, :], shape).copy(), want)
    if mp.delay_type == "synaptic":
        mp = Map(mp.weight, mp.bias, with_saved_lags(mp.lags, mp.weight, meta, 0, where), "synaptic")
    return mp


def delayed_linear_from(mp: Map, max_delay: Optional[int]) -> nn.Module:
    out_f, in_f = mp.weight.shape
    if mp.lags is None:
        lin = nn.Linear(in_f, out_f, bias=mp.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(to_tensor(mp.weight))
            if mp.bias is not None:
                lin.bias.copy_(to_tensor(mp.bias))
        return lin
    md = max(1, int(mp.lags.max()), int(max_delay or 0))
    layer = DelayedLinear(in_f, out_f, max_delay=md, delay_type=mp.delay_type,
                          bias=mp.bias is not None, delay_init=to_tensor(mp.lags))
    with torch.no_grad():
        layer.weight.copy_(to_tensor(mp.weight))
        if mp.bias is not None:
            layer.bias.copy_(to_tensor(mp.bias))
    return layer


def io_keys(g: nir.NIRGraph, where: str) -> Tuple[str, str]:
    ins = [k for k, v in g.nodes.items() if isinstance(v, nir.Input)]
    outs = [k for k, v in g.nodes.items() if isinstance(v, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise TypeError(
            f"graph: sub-graph {where!r} needs one Input and one Output node, got {ins} and {outs}"
        )
    return ins[0], outs[0]


def parse_map_or_none(g, src, dst, dt, where) -> Optional[Map]:
    """The recurrent map of neuron node ``src`` (``== dst``), or ``None`` without a loop.

    A direct self-loop edge ``(src, src)`` alone is an identity recurrence: each neuron's own
    spike of the previous step enters its input with weight 1 (NIR: edges sum into their
    target; the edge that closes a cycle carries the previous step's output).
    """
    if src == dst and (src, src) in g.edges:
        others = [b for a, b in g.edges if a == src and b != src and reaches(g, b, src)]
        if others:
            raise ValueError(
                f"graph: sub-graph {where!r} mixes a direct self-loop edge {src}->{src} with other "
                f"recurrent paths (through {others}); expected one of them"
            )
        n = int(np.prod(np.asarray(g.nodes[src].input_type["input"])))
        return Map(np.eye(n, dtype=np.float32), None, None, None)
    has_cycle = any(a == src for a, _ in g.edges) and reaches(g, src, dst)
    return parse_map(g, src, dst, dt, where) if has_cycle else None


def reaches(g, src, dst) -> bool:
    succ: Dict[str, List[str]] = {}
    for a, b in g.edges:
        succ.setdefault(a, []).append(b)
    stack, seen = list(succ.get(src, [])), set()
    while stack:
        k = stack.pop()
        if k == dst:
            return True
        if k in seen:
            continue
        seen.add(k)
        stack += succ.get(k, [])
    return False


def synaptic_lags(mp: Map, meta: Dict[str, Any], offset: int, where: str) -> np.ndarray:
    """The ``(out, in)`` whole-step lags of a parsed map (zero-weight connections from the
    exporter's saved ``delay_steps``, a plain or axonal map broadcast)."""
    out_f, in_f = mp.weight.shape
    if mp.lags is None:
        lags = np.zeros((out_f, in_f), dtype=np.int64)
    elif mp.delay_type == "axonal":
        lags = np.broadcast_to(mp.lags[None, :], (out_f, in_f)).copy()
    elif mp.delay_type == "dendritic":
        lags = np.broadcast_to(mp.lags[:, None], (out_f, in_f)).copy()
    else:
        lags = mp.lags
    if mp.bias is not None and np.any(mp.bias != 0):
        raise TypeError(f"graph: sub-graph {where!r}: an EventProp layer has no bias, but its map has one")
    return with_saved_lags(lags, mp.weight, meta, offset, where, "rec_delay_steps" if offset else "delay_steps")


def recurrent_lags(rec: "Map", meta: Dict[str, Any], n: int, key: str, max_delay: Optional[int],
                   axonal_shape: Tuple[int, ...]) -> Tuple[str, np.ndarray, int]:
    """The delay type, whole-step recurrent lags (the exported ones, ``rec.lags + 1`` being the
    layer's lags) and ``max_delay`` of a recurrent map read from a graph. ``axonal_shape``: the
    zero lags' shape where the map has none."""
    dtype = meta_str(meta, "delay_type") or rec.delay_type or "axonal"
    lags = rec.lags if rec.lags is not None else np.zeros(axonal_shape, dtype=np.int64)
    if dtype == "synaptic" and lags.ndim == 1:
        lags = np.broadcast_to(lags[None, :], (n, n))
    if dtype == "axonal" and lags.ndim == 2:
        dtype = "synaptic"
    if dtype == "synaptic":
        lags = with_saved_lags(lags, rec.weight, meta, 1, key)
    return dtype, lags, max(1, int(lags.max()) + 1, int(max_delay or 0))
