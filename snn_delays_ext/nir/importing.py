"""Import: the PyTorch network an :class:`nir.NIRGraph` describes (:func:`import_from_nir`)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import nir
import numpy as np
import snntorch as snn
from torch import nn

from ..eventprop.layers import DelayedRecurrentSynaptic, LeakyIntegrator
from ._common import (Map, as_exported, check_dt, delayed_linear_from, io_keys, lags_of, meta_str, neuron_key,
                      parse_map, parse_map_or_none, weight_bias)
from .eventprop import EVENTPROP_MODULES, import_eventprop
from .norse import import_norse, norse_params
from .snntorch import import_li, import_recurrent, snn_neuron

__all__ = ["import_from_nir"]


def _import_map(key: str, node: nir.NIRNode, dt: float, flavour: str, seq: bool) -> nn.Module:
    """``Affine`` / ``Linear``: a linear map (Norse's ``Lift`` of it for a Norse sequence graph)."""
    w, b = weight_bias(node)
    lin = delayed_linear_from(Map(w, b, None, None), None)
    if flavour == "norse" and seq:
        from norse.torch import Lift

        return Lift(lin)
    return lin


def _import_neuron(key: str, node: nir.NIRNode, dt: float, flavour: str, seq: bool) -> nn.Module:
    """``LIF`` / ``CubaLIF``: snnTorch's ``Leaky`` / ``Synaptic`` (Norse's ``LIF(Cell)`` for a
    Norse graph's ``CubaLIF``)."""
    if flavour == "norse" and isinstance(node, nir.CubaLIF):
        from norse.torch import LIF, LIFCell

        return (LIF if seq else LIFCell)(p=norse_params(node, key, dt), dt=dt)
    kw = snn_neuron(node, key, dt)
    cls = snn.Leaky if isinstance(node, nir.LIF) else snn.Synaptic
    return cls(init_hidden=True, **kw)


def _import_subgraph(key: str, node: nir.NIRNode, dt: float, flavour: str, seq: bool) -> nn.Module:
    """A sub-graph as export writes them: an EventProp layer, a delayed map, or a neuron with its
    input map and recurrent loop (snnTorch or Norse flavour)."""
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
    return import_recurrent(key, nk, neuron, rec, meta, max_delay, dt)


#: node type -> its importer ``(key, node, dt, flavour, seq) -> module``
_IMPORTERS: Dict[type, Any] = {nir.Affine: _import_map, nir.Linear: _import_map, nir.LIF: _import_neuron,
                               nir.CubaLIF: _import_neuron, nir.NIRGraph: _import_subgraph}


def _import_node(key: str, node: nir.NIRNode, dt: float, flavour: str, seq: bool) -> nn.Module:
    for cls in type(node).__mro__:
        if cls in _IMPORTERS:
            return _IMPORTERS[cls](key, node, dt, flavour, seq)
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
