"""Import: the PyTorch network an :class:`nir.NIRGraph` describes (:func:`import_from_nir`)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from ..delayed_recurrent_leaky import DelayedRecurrentLeaky
from ..eventprop.layers import DelayedRecurrentSynaptic, LeakyIntegrator
from ._common import (Map, as_exported, check_dt, delayed_linear_from, io_keys, lags_of, meta_str, neuron_key,
                      parse_map, parse_map_or_none, recurrent_lags, to_tensor, weight_bias)
from .eventprop import EVENTPROP_MODULES, import_eventprop
from .norse import import_norse, norse_params
from .snntorch import import_li, snn_neuron

__all__ = ["import_from_nir"]


def _import_node(key: str, node: nir.NIRNode, dt: float, flavour: str, seq: bool) -> nn.Module:
    if isinstance(node, (nir.Affine, nir.Linear)):
        w, b = weight_bias(node)
        lin = delayed_linear_from(Map(w, b, None, None), None)
        if flavour == "norse" and seq:
            from norse.torch import Lift

            return Lift(lin)
        return lin
    if isinstance(node, (nir.LIF, nir.CubaLIF)):
        if flavour == "norse" and isinstance(node, nir.CubaLIF):
            from norse.torch import LIF, LIFCell

            return (LIF if seq else LIFCell)(p=norse_params(node, key, dt), dt=dt)
        kw = snn_neuron(node, key, dt)
        cls = snn.Leaky if isinstance(node, nir.LIF) else snn.Synaptic
        return cls(init_hidden=True, **kw)
    if isinstance(node, nir.NIRGraph):
        meta = dict(node.metadata or {})
        max_delay = int(meta["max_delay"]) if "max_delay" in meta else None
        if meta_str(meta, "module") in EVENTPROP_MODULES:
            return import_eventprop(key, node, meta, dt, max_delay)
        nk = neuron_key(node)
        gin, gout = io_keys(node, key)
        if nk is None:
            mp = parse_map(node, gin, gout, dt, key)
            if mp is None:
                return nn.Identity()
            return delayed_linear_from(as_exported(mp, meta, key), max_delay)
        neuron = node.nodes[nk]
        rec = parse_map_or_none(node, nk, nk, dt, key)
        inp = parse_map(node, gin, nk, dt, key)
        if flavour == "norse":
            return import_norse(key, node, neuron, inp, rec, dt, seq, meta, max_delay)
        if inp is not None:
            raise TypeError(f"graph: sub-graph {key!r}: an snnTorch neuron sub-graph must take its input directly")
        if rec is None:
            return _import_node(nk, neuron, dt, flavour, seq)
        if isinstance(neuron, nir.CubaLIF):
            raise TypeError(
                f"graph: sub-graph {key!r}: recurrent CubaLIF is not supported by import_from_nir: NIR "
                "resets in the step of the spike, and snnTorch 1.0's RSynaptic cannot (its "
                "reset_delay=False path reads an unset spike and fails)"
            )
        kw = snn_neuron(neuron, nk, dt)
        n = rec.weight.shape[0]
        has_delays = rec.lags is not None
        # one-to-one recurrence (all_to_all=False) when exported so and still diagonal, unbiased
        diag = np.diag(np.asarray(rec.weight, dtype=np.float64)).copy()
        one_to_one = (
            not bool(int(meta.get("all_to_all", 1))) and rec.bias is None
            and np.array_equal(np.asarray(rec.weight), np.diag(diag))
            and (not has_delays or rec.lags.ndim == 1)
        )
        v_kw = {"all_to_all": False, "V": to_tensor(diag)} if one_to_one else {}
        if has_delays or meta_str(meta, "module") == "DelayedRecurrentLeaky":
            dtype, lags, md = recurrent_lags(rec, meta, n, key, max_delay, (n,))
            layer = DelayedRecurrentLeaky(
                linear_features=n, max_delay=md, delay_type=dtype, init_hidden=True,
                bias=rec.bias is not None, delay_init=to_tensor(lags + 1), **v_kw, **kw,
            )
            if one_to_one:
                return layer
        elif one_to_one:
            return snn.RLeaky(init_hidden=True, **v_kw, **kw)
        else:
            layer = snn.RLeaky(linear_features=n, init_hidden=True, **kw)
            if rec.bias is None:
                layer.recurrent = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            layer.recurrent.weight.copy_(to_tensor(rec.weight))
            if rec.bias is not None:
                layer.recurrent.bias.copy_(to_tensor(rec.bias))
        return layer
    raise TypeError(
        f"graph: node {key!r} of type nir.{type(node).__name__} is not supported by import_from_nir "
        "(supported: Affine, Linear, LIF, CubaLIF, LI and the sub-graphs export_to_nir writes)"
    )


def _reach(nodes: Dict[str, Any], edges: List[Tuple[str, str]], start: str, forward: bool) -> set:
    """Nodes reached from ``start`` along (``forward``) or against the edges, without passing
    through ``start`` itself or an Input / Output node."""
    seen: set = set()
    stack = [start]
    while stack:
        cur = stack.pop()
        for a, b in edges:
            nxt = b if forward and a == cur else a if not forward and b == cur else None
            if nxt is None or nxt in seen or nxt == start:
                continue
            if isinstance(nodes[nxt], (nir.Input, nir.Output)):
                continue
            seen.add(nxt)
            stack.append(nxt)
    return seen


def _fold_top_level_loops(graph: "nir.NIRGraph") -> "nir.NIRGraph":
    """Move each top-level recurrent loop into a sub-graph.

    snnTorch's own export of an ``RLeaky`` (through nirtorch) writes the recurrent layer at the
    top level: ``prev -> lif``, ``lif -> w_rec -> lif``, ``lif -> next``. The loop through a
    neuron node (the nodes it reaches that reach it back) becomes the sub-graph
    ``input -> lif -> output`` with the loop inside, under the neuron's key: the layout
    :func:`export_to_nir` writes. Returns ``graph`` itself when it has no such loop.
    """
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    folded = False
    for key, neuron in graph.nodes.items():
        if not isinstance(neuron, (nir.LIF, nir.CubaLIF)):
            continue
        loop = _reach(nodes, edges, key, True) & _reach(nodes, edges, key, False)
        if not loop and (key, key) not in edges:
            continue
        expected = (
            "import_from_nir reads a top-level loop only as a neuron node and a recurrent map "
            "between its output and its own input (neuron -> [Delay] -> Affine/Linear -> "
            "[Delay] -> neuron, as snnTorch's RLeaky export writes)"
        )
        others = sorted(k for k in loop if isinstance(nodes[k], (nir.LIF, nir.CubaLIF, nir.NIRGraph)))
        if others:
            raise TypeError(
                f"graph: the top-level loop through neuron node {key!r} also passes through "
                f"{others}; {expected}"
            )
        leaks = sorted((a, b) for a, b in edges if (a in loop) != (b in loop) and key not in (a, b))
        if leaks:
            raise TypeError(
                f"graph: the top-level loop through neuron node {key!r} ({sorted(loop)}) has edges "
                f"to or from other nodes: {leaks}; {expected}"
            )
        members = loop | {key}
        shape = np.asarray(neuron.input_type["input"])
        inner = {"input": nir.Input(input_type={"input": shape.copy()}), key: neuron}
        inner.update({k: nodes[k] for k in loop})
        inner["output"] = nir.Output(output_type={"output": shape.copy()})
        inner_edges = [("input", key)] + [(a, b) for a, b in edges if a in members and b in members]
        inner_edges.append((key, "output"))
        for k in loop:
            del nodes[k]
        nodes[key] = nir.NIRGraph(nodes=inner, edges=inner_edges, metadata={}, type_check=False)
        edges = [(a, b) for a, b in edges if not (a in members and b in members)]
        folded = True
    if not folded:
        return graph
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}), type_check=False)


def import_from_nir(graph: "nir.NIRGraph", dt: Optional[float] = None) -> nn.Module:
    """Build the PyTorch network an NIR graph describes.

    Parameters
    ----------
    graph : nir.NIRGraph
        A chain ``input -> ... -> output`` of ``Affine`` / ``Linear`` / ``LIF`` / ``CubaLIF``
        / ``LI`` / ``Delay`` nodes and of sub-graphs as :func:`export_to_nir` writes them (delayed maps,
        recurrent layers with or without ``Delay`` nodes); a recurrent loop
        ``lif -> [Delay] -> Affine/Linear -> lif`` may also sit at the top level, as snnTorch's
        own export writes ``RLeaky`` (its graphs need ``dt=1e-4``, the step it writes time
        constants with). ``Delay`` values must be whole multiples of ``dt`` up to a few units in
        the last place of their dtype.
    dt : float, optional
        Time step in seconds (default: ``graph.metadata["dt"]``, which export writes). Delays
        must be whole multiples of it.

    Returns
    -------
    torch.nn.Module
        snnTorch flavour: an ``nn.Sequential`` of ``nn.Linear``,
        :class:`~snn_delays_ext.DelayedLinear` (where a map has delays), ``snntorch.Leaky`` /
        ``Synaptic`` / ``RLeaky`` and :class:`~snn_delays_ext.DelayedRecurrentLeaky` (where
        recurrent delays occur) and :class:`~snn_delays_ext.LeakyReadout` (``LI``), all with
        ``init_hidden=True``: call it on one step ``(B, F)``
        at a time and reset it between samples with :func:`snn_delays_ext.reset`.
        Norse flavour (graphs exported from Norse modules): a ``norse.torch.SequentialState`` of
        the :mod:`snn_delays_ext.norse` modules (step cells or sequence modules, as exported).
        Graphs of EventProp layers: an ``nn.Sequential`` of
        :class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic` (``return_mem=False``: it
        returns the spikes) and :class:`~snn_delays_ext.eventprop.LeakyIntegrator`, called on a
        whole sequence ``(T, B, F)``; it returns the readout voltage ``(T, B, C)``. A
        ``CubaLIF`` / ``CubaLI`` input gain other than the layer's is folded into the weights.

    Examples
    --------
    >>> import torch, snntorch as snn
    >>> import snn_delays_ext as sde
    >>> from snn_delays_ext.nir import export_to_nir, import_from_nir
    >>> net = torch.nn.Sequential(sde.DelayedLinear(3, 4, max_delay=5, delay_init=2.0),
    ...                           snn.Leaky(beta=0.9, init_hidden=True))
    >>> net2 = import_from_nir(export_to_nir(net, torch.rand(1, 3), dt=1e-3))
    >>> type(net2[0]).__name__, net2[0].delay_type, net2[0].delays.unique().tolist()
    ('DelayedLinear', 'synaptic', [2.0])
    """
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph: expected a nir.NIRGraph, got {type(graph).__name__}")
    meta = dict(graph.metadata or {})
    if dt is None:
        if "dt" not in meta:
            raise ValueError("dt: the graph records no time step; pass dt (seconds)")
        dt = float(meta["dt"])
    dt = check_dt(dt)
    graph = _fold_top_level_loops(graph)
    flavour = meta_str(meta, "flavour", "snntorch")
    seq = meta_str(meta, "norse_mode", "step") == "sequence"
    succ: Dict[str, List[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"graph: expected one Input node, got {inputs}")
    modules: List[nn.Module] = []
    cur = inputs[0]
    visited = {cur}
    while True:
        nxt = succ.get(cur, [])
        if len(nxt) != 1:
            raise TypeError(
                f"graph: node {cur!r} feeds {nxt}; import_from_nir expects a chain at the top "
                "level (put branches inside sub-graphs)"
            )
        cur = nxt[0]
        if cur in visited:
            raise TypeError(f"graph: the top level has a cycle through {cur!r}; put recurrence in a sub-graph")
        visited.add(cur)
        node = graph.nodes[cur]
        if isinstance(node, nir.Output):
            break
        if isinstance(node, nir.Delay):
            # a bare Delay: merged with a following Affine / Linear into an axonal DelayedLinear,
            # else a DelayedLinear with identity weights
            lags = lags_of(node.delay, dt, cur)
            nxt = succ.get(cur, [])
            if len(nxt) == 1 and isinstance(graph.nodes[nxt[0]], (nir.Affine, nir.Linear)):
                cur = nxt[0]
                visited.add(cur)
                w, b = weight_bias(graph.nodes[cur])
            else:
                w, b = np.eye(lags.size, dtype=np.float32), None
            layer = delayed_linear_from(Map(w, b, lags, "axonal"), None)
            if flavour == "norse" and seq:
                raise TypeError(f"graph: node {cur!r}: a bare Delay in a Norse sequence graph is not supported")
            modules.append(layer)
            continue
        if isinstance(node, nir.LI):
            modules.append(import_li(cur, node, dt, modules[-1] if modules else None, flavour, seq))
            continue
        modules.append(_import_node(cur, node, dt, flavour, seq))
    if flavour == "norse":
        from norse.torch import SequentialState

        return SequentialState(*modules)
    eventprop = [type(m).__name__ for m in modules if isinstance(m, (DelayedRecurrentSynaptic, LeakyIntegrator))]
    stepwise = [type(m).__name__ for m in modules if isinstance(m, snn.SpikingNeuron)]
    if eventprop and stepwise:
        raise TypeError(
            f"graph: mixes EventProp layers ({sorted(set(eventprop))}), which run whole sequences, with "
            f"snnTorch step modules ({sorted(set(stepwise))}); import_from_nir builds one or the other"
        )
    return nn.Sequential(*modules)
