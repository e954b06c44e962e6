"""Norse's LIF modules and :mod:`snn_delays_ext.norse`'s in NIR (``CubaLIF``): exporters, and the
import of Norse-flavour graphs."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import nir
import numpy as np
import torch
from torch import nn

from ..functional.recurrent_leaky import recurrent_delay_shape
from ._common import (add_delayed_map, as_exported, delay_steps, meta_str, need_inputs, param_value,
                      recurrent_lags, register_exporter, subgraph, to_numpy, to_tensor, vector)
from .snntorch import check_input_gain


def norse_cubalif(p, n: int, dt: float, module: str) -> nir.CubaLIF:
    tau_syn = 1.0 / vector(p.tau_syn_inv, n, "tau_syn_inv")
    tau_mem = 1.0 / vector(p.tau_mem_inv, n, "tau_mem_inv")
    return nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=np.ones(n), v_leak=vector(p.v_leak, n, "v_leak"),
        v_threshold=vector(p.v_th, n, "v_th"), v_reset=vector(p.v_reset, n, "v_reset"),
        w_in=tau_syn / dt,
        metadata={
            "norse": module, "method": str(p.method), "alpha": float(to_numpy(p.alpha).reshape(-1)[0]),
            "tau_syn_inv": vector(p.tau_syn_inv, n, "tau_syn_inv"),
            "tau_mem_inv": vector(p.tau_mem_inv, n, "tau_mem_inv"), "dt": dt,
        },
    )


def check_norse_dt(m: nn.Module, dt: float, name: str) -> None:
    if not math.isclose(float(m.dt), dt, rel_tol=1e-9):
        raise ValueError(
            f"dt: module {name!r} integrates with dt={m.dt} but export_to_nir got dt={dt}; "
            "they must agree"
        )


def norse_types() -> Dict[str, tuple]:
    try:
        import norse.torch as nt

        from ..norse import DelayedLIF, DelayedLIFCell, DelayedLIFRecurrent, DelayedLIFRecurrentCell
    except ImportError:  # pragma: no cover - norse is optional
        return {}
    return {
        "recurrent": (DelayedLIFRecurrentCell, DelayedLIFRecurrent),
        "feedforward": (DelayedLIFCell, DelayedLIF),
        "lif": (nt.LIFCell, nt.LIF),
        "norse_recurrent": (nt.LIFRecurrentCell, nt.LIFRecurrent),
        "sequential": (nt.SequentialState,),
        "lift": (nt.Lift,),
    }


def norse_params(node: nir.CubaLIF, key: str, dt: float):
    from norse.torch import LIFParameters

    meta = dict(node.metadata or {})
    check_input_gain(node, key, dt, np.ones(1), "Norse LIF", "r = 1, w_in = tau_syn / dt")
    tsi = meta.get("tau_syn_inv", 1.0 / np.asarray(node.tau_syn, dtype=np.float64))
    tmi = meta.get("tau_mem_inv", 1.0 / np.asarray(node.tau_mem, dtype=np.float64))
    return LIFParameters(
        tau_syn_inv=torch.as_tensor(param_value(tsi)), tau_mem_inv=torch.as_tensor(param_value(tmi)),
        v_leak=torch.as_tensor(param_value(node.v_leak)), v_th=torch.as_tensor(param_value(node.v_threshold)),
        v_reset=torch.as_tensor(param_value(node.v_reset)),
        method=meta_str(meta, "method", "super"),
        alpha=torch.as_tensor(float(meta.get("alpha", 100.0))),
    )


def import_norse(key, g, neuron, inp, rec, dt, seq, meta, max_delay):
    from ..norse import DelayedLIF, DelayedLIFCell, DelayedLIFRecurrent, DelayedLIFRecurrentCell

    if not isinstance(neuron, nir.CubaLIF):
        raise TypeError(f"graph: sub-graph {key!r}: a Norse layer needs a CubaLIF neuron node")
    p = norse_params(neuron, key, dt)
    if inp is None:
        raise TypeError(f"graph: sub-graph {key!r}: a Norse layer needs input weights")
    n, i = inp.weight.shape
    if rec is not None:
        if inp.lags is not None or inp.bias is not None:
            raise TypeError(f"graph: sub-graph {key!r}: delayed or biased input weights of a recurrent Norse layer")
        autapses = bool(int(meta.get("autapses", 1)))
        if rec.lags is None and meta_str(meta, "module") in ("LIFRecurrentCell", "LIFRecurrent"):
            from norse.torch import LIFRecurrent, LIFRecurrentCell

            ncls = LIFRecurrent if seq else LIFRecurrentCell
            return ncls(i, n, p=p, dt=dt, autapses=autapses,
                        input_weights=nn.Parameter(to_tensor(inp.weight)),
                        recurrent_weights=nn.Parameter(to_tensor(rec.weight)))
        shape = recurrent_delay_shape(meta_str(meta, "delay_type") or rec.delay_type or "axonal", n)
        dtype, lags, md = recurrent_lags(rec, meta, n, key, max_delay, shape)
        cls = DelayedLIFRecurrent if seq else DelayedLIFRecurrentCell
        return cls(i, n, max_delay=md, p=p, dt=dt, delay_type=dtype, autapses=autapses,
                   input_weights=to_tensor(inp.weight), recurrent_weights=to_tensor(rec.weight),
                   delay_init=to_tensor(lags + 1))
    inp = as_exported(inp, meta, key)
    lags = inp.lags
    dtype = inp.delay_type or "axonal"
    if lags is None:
        lags = np.zeros((i,), dtype=np.int64)
    md = max(1, int(lags.max()), int(max_delay or 0))
    cls = DelayedLIF if seq else DelayedLIFCell
    layer = cls(i, n, max_delay=md, p=p, dt=dt, delay_type=dtype, bias=inp.bias is not None,
                weight=to_tensor(inp.weight), delay_init=to_tensor(lags))
    if inp.bias is not None:
        with torch.no_grad():
            layer.bias.copy_(to_tensor(inp.bias))
    return layer


def export_delayed_lif_recurrent(name: str, m: nn.Module, n_in: int, dt: float,
                                 max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """:class:`~snn_delays_ext.norse.DelayedLIFRecurrentCell` / ``DelayedLIFRecurrent``:
    ``CubaLIF`` with the delayed recurrent loop."""
    need_inputs(name, m, n_in, m.input_size, "input features")
    n = m.hidden_size
    nodes = {"lif": norse_cubalif(m.p, n, m.dt, type(m).__name__)}
    edges = [("lif", "output")]
    add_delayed_map(nodes, edges, "input", "lif", to_numpy(m.input_weights), None, None, "axonal", dt, "in_")
    steps = delay_steps(m, max_hw, name)
    lags = steps - 1
    if not lags.any():
        lags = None
    add_delayed_map(nodes, edges, "lif", "lif", to_numpy(m.effective_recurrent_weights()), None,
                     lags, m.delay_type, dt, "rec_")
    meta = {"module": type(m).__name__, "delay_type": m.delay_type,
            "max_delay": int(m.max_delay), "autapses": int(m.autapses), "delay_steps": steps}
    check_norse_dt(m, dt, name)
    return subgraph(n_in, n, nodes, edges, meta), n


def export_norse_lif_recurrent(name: str, m: nn.Module, n_in: int, dt: float,
                               max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """Norse's own ``LIFRecurrent(Cell)``: lag 1 everywhere, no ``Delay`` node."""
    # Norse's own LIFRecurrent(Cell): lag 1 everywhere, no Delay node
    need_inputs(name, m, n_in, int(m.input_size), "input features")
    n = int(m.hidden_size)
    nodes = {"lif": norse_cubalif(m.p, n, m.dt, type(m).__name__)}
    edges = [("lif", "output")]
    add_delayed_map(nodes, edges, "input", "lif", to_numpy(m.input_weights), None, None, "axonal", dt, "in_")
    add_delayed_map(nodes, edges, "lif", "lif", to_numpy(m.recurrent_weights), None, None, "axonal", dt, "rec_")
    meta = {"module": type(m).__name__, "autapses": int(m.autapses)}
    check_norse_dt(m, dt, name)
    return subgraph(n_in, n, nodes, edges, meta), n


def export_delayed_lif(name: str, m: nn.Module, n_in: int, dt: float,
                       max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """:class:`~snn_delays_ext.norse.DelayedLIFCell` / ``DelayedLIF``: the delayed map into
    ``CubaLIF``."""
    need_inputs(name, m, n_in, m.input_size, "input features")
    n = m.hidden_size
    nodes = {"lif": norse_cubalif(m.p, n, m.dt, type(m).__name__)}
    edges = [("lif", "output")]
    b = None if m.bias is None else to_numpy(m.bias)
    steps = delay_steps(m, max_hw, name)
    add_delayed_map(nodes, edges, "input", "lif", to_numpy(m.weight), b, steps, m.delay_type, dt, "in_")
    meta = {"module": type(m).__name__, "delay_type": m.delay_type, "max_delay": int(m.max_delay),
            "delay_steps": steps}
    check_norse_dt(m, dt, name)
    return subgraph(n_in, n, nodes, edges, meta), n


def export_norse_lif(name: str, m: nn.Module, n_in: int, dt: float,
                     max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """Norse's ``LIF(Cell)``: ``CubaLIF``."""
    check_norse_dt(m, dt, name)
    return norse_cubalif(m.p, n_in, m.dt, type(m).__name__), n_in



def _register() -> None:
    types = norse_types()
    if not types:  # norse is optional
        return
    for cls in types["recurrent"]:
        register_exporter(cls, export_delayed_lif_recurrent)
    for cls in types["norse_recurrent"]:
        register_exporter(cls, export_norse_lif_recurrent)
    for cls in types["feedforward"]:
        register_exporter(cls, export_delayed_lif)
    for cls in types["lif"]:
        register_exporter(cls, export_norse_lif)


_register()
