"""The EventProp layers in NIR (``CubaLIF`` / ``CubaLI`` sub-graphs): export and import."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import nir
import numpy as np
import torch
from torch import nn

from ..eventprop.functional import synaptic_scale
from ..eventprop.layers import DelayedRecurrentSynaptic, LeakyIntegrator
from ..functional.interpolation import round_half_up
from ._common import (add_delayed_map, delay_steps, io_keys, meta_str, need_inputs, parse_map, parse_map_or_none,
                      register_exporter, subgraph, synaptic_lags, tau_of, to_numpy, to_tensor, within_limit)


def eventprop_neuron(m: nn.Module, dt: float) -> nir.NIRNode:
    """``CubaLIF`` (``CubaLI`` for the readout) whose Euler step is the layer's update.

    With ``tau_syn = dt / (1 - alpha)``, ``w_in = tau_syn / dt``, ``tau_mem = dt / (1 - beta)``
    and ``r = c`` (mlGeNN's current scale, :func:`~snn_delays_ext.eventprop.synaptic_scale`)
    the step ``I += dt/tau_syn (-I + w_in x)``, ``v += dt/tau_mem (-v + r I)`` is
    ``S = alpha S + x``, ``U = beta V + (1 - beta) c S``; the reset to 0 in the step of the
    spike is NIR's own.
    """
    n = m.out_features
    tau_syn = np.full(n, float(tau_of(np.array(m.alpha), dt)))
    tau_mem = np.full(n, float(tau_of(np.array(m.beta), dt)))
    common = dict(tau_syn=tau_syn, tau_mem=tau_mem, r=np.full(n, synaptic_scale(m.alpha)),
                  v_leak=np.zeros(n), w_in=tau_syn / dt)
    meta = {"alpha": float(m.alpha), "beta": float(m.beta)}
    if isinstance(m, LeakyIntegrator):
        return nir.CubaLI(**common, metadata=meta)
    return nir.CubaLIF(**common, v_threshold=np.full(n, float(m.threshold)), v_reset=np.zeros(n),
                       metadata=dict(meta, threshold=float(m.threshold)))


def export_eventprop(name: str, m: nn.Module, dt: float, max_hw: Optional[int]) -> nir.NIRGraph:
    """``input -> [delayed map] -> neuron -> output`` (and the delayed recurrent loop)."""
    n = m.out_features
    key = "li" if isinstance(m, LeakyIntegrator) else "lif"
    nodes: Dict[str, nir.NIRNode] = {key: eventprop_neuron(m, dt)}
    edges: List[Tuple[str, str]] = [(key, "output")]
    steps = delay_steps(m, max_hw, name)
    add_delayed_map(nodes, edges, "input", key, to_numpy(m.weight), None, steps, "synaptic", dt, "in_")
    meta: Dict[str, Any] = {"module": type(m).__name__, "delay_type": "synaptic",
                            "max_delay": int(m.max_delay), "delay_steps": steps, "backward": m.backward}
    if getattr(m, "recurrent", False):
        rec_steps = within_limit(round_half_up(m.rec_delays.detach().clamp(1.0, float(m.max_delay))),
                                  max_hw, name, "recurrent ")
        # the recurrent edge carries one step itself
        add_delayed_map(nodes, edges, key, key, to_numpy(m.rec_weight), None, rec_steps - 1, "synaptic", dt, "rec_")
        meta["rec_delay_steps"] = rec_steps
    return subgraph(m.in_features, n, nodes, edges, meta)


EVENTPROP_MODULES = ("DelayedRecurrentSynaptic", "LeakyIntegrator")


def import_eventprop(key: str, g: nir.NIRGraph, meta: Dict[str, Any], dt: float,
                      max_delay: Optional[int]) -> nn.Module:
    """Rebuild a :class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic` (spikes only, for
    an ``nn.Sequential``) or :class:`~snn_delays_ext.eventprop.LeakyIntegrator` from the
    sub-graph :func:`export_to_nir` writes for it.

    The decays come from the neuron's metadata (``alpha``, ``beta``) or, without it, from the
    time constants (``1 - dt / tau``). A per-neuron input gain other than the layer's
    ``(1 - beta) c`` is folded into that neuron's weights (the current is linear in them, so
    the spikes are unchanged).
    """
    module = meta_str(meta, "module")
    want = nir.CubaLI if module == "LeakyIntegrator" else nir.CubaLIF
    keys = [k for k, v in g.nodes.items() if isinstance(v, want)]
    if len(keys) != 1:
        raise TypeError(f"graph: sub-graph {key!r} ({module}) needs one nir.{want.__name__} node, got {keys}")
    nk = keys[0]
    neuron = g.nodes[nk]
    nmeta = dict(neuron.metadata or {})
    tau_syn = np.asarray(neuron.tau_syn, dtype=np.float64).reshape(-1)
    tau_mem = np.asarray(neuron.tau_mem, dtype=np.float64).reshape(-1)
    if np.any(np.asarray(neuron.v_leak) != 0) or (want is nir.CubaLIF and np.any(np.asarray(neuron.v_reset) != 0)):
        raise TypeError(f"graph: node {key!r}: v_leak or v_reset != 0 has no {module} equivalent")

    def decay(name: str, tau: np.ndarray) -> float:
        if name in nmeta:
            return float(np.asarray(nmeta[name]).reshape(-1)[0])
        d = 1.0 - dt / tau
        if not (np.all(np.isfinite(d)) and np.all(d > 0) and np.allclose(d, d[0], rtol=1e-6, atol=0)):
            raise TypeError(
                f"graph: node {key!r}: {module} needs one decay in (0, 1) for all neurons; "
                f"1 - dt / tau_{'syn' if name == 'alpha' else 'mem'} gives {np.unique(d)[:4].tolist()}"
            )
        return float(d[0])

    alpha, beta = decay("alpha", tau_syn), decay("beta", tau_mem)
    gain = (dt / tau_syn) * np.asarray(neuron.w_in, dtype=np.float64) * (dt / tau_mem) * np.asarray(
        neuron.r, dtype=np.float64)
    scale = np.broadcast_to(gain / ((1.0 - beta) * synaptic_scale(alpha)), tau_mem.shape)
    gin, _ = io_keys(g, key)
    inp = parse_map(g, gin, nk, dt, key)
    if inp is None:
        raise TypeError(f"graph: sub-graph {key!r}: a {module} needs input weights")
    w_in = np.asarray(inp.weight, dtype=np.float64)
    lags = synaptic_lags(inp, meta, 0, key)
    rec = parse_map_or_none(g, nk, nk, dt, key)
    fold = not np.allclose(scale, 1.0, rtol=1e-6, atol=0.0)
    out_f, in_f = w_in.shape
    backward = meta_str(meta, "backward", "surrogate")
    if module == "LeakyIntegrator":
        if rec is not None:
            raise TypeError(f"graph: sub-graph {key!r}: a LeakyIntegrator has no recurrent connections")
        md = max(1, int(lags.max()), int(max_delay or 0))
        layer: nn.Module = LeakyIntegrator(in_f, out_f, md, alpha=alpha, beta=beta, backward=backward,
                                           delay_init=to_tensor(lags))
    else:
        thr = np.asarray(neuron.v_threshold, dtype=np.float64).reshape(-1)
        if not np.all(thr == thr[0]):
            raise TypeError(f"graph: node {key!r}: a DelayedRecurrentSynaptic has one threshold, got several")
        rec_lags = None if rec is None else synaptic_lags(rec, meta, 1, key)
        md = max(1, int(lags.max()), int(max_delay or 0), 0 if rec_lags is None else int(rec_lags.max()) + 1)
        layer = DelayedRecurrentSynaptic(
            in_f, out_f, md, alpha=alpha, beta=beta, threshold=float(thr[0]), recurrent=rec is not None,
            backward=backward, delay_init=to_tensor(lags), return_mem=False,
            rec_delay_init=to_tensor(rec_lags + 1) if rec_lags is not None else "uniform",
        )
        if rec is not None:
            w_rec = np.asarray(rec.weight, dtype=np.float64)
            with torch.no_grad():
                layer.rec_weight.copy_(to_tensor(w_rec * scale[:, None] if fold else w_rec))
    with torch.no_grad():
        layer.weight.copy_(to_tensor(w_in * scale[:, None] if fold else w_in))
    return layer


def export_eventprop_layer(name: str, m: nn.Module, n_in: int, dt: float,
                           max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """The EventProp layers (:func:`export_eventprop`)."""
    need_inputs(name, m, n_in, m.in_features, "input features")
    return export_eventprop(name, m, dt, max_hw), m.out_features


register_exporter(DelayedRecurrentSynaptic, export_eventprop_layer)
register_exporter(LeakyIntegrator, export_eventprop_layer)
