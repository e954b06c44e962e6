"""snnTorch's layers and this package's snnTorch-flavour layers in NIR: exporters, and the readers
of their neurons."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from ..delayed_linear import DelayedLinear
from ..delayed_recurrent_leaky import DelayedRecurrentLeaky
from ..leaky_readout import LeakyReadout
from ._common import (Map, add_delayed_map, affine_node, check_nir_neuron, decay_of, delay_steps, leaky_node, li_node,
                      meta_str, need_inputs, param_value, recurrent_lags, register_exporter, snn_neuron_meta, subgraph,
                      tau_of, to_numpy, to_tensor, vector)


def export_delayed_linear(name: str, m: nn.Module, n_in: int, dt: float,
                          max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """A :class:`~snn_delays_ext.DelayedLinear`: its delayed map as a sub-graph."""
    need_inputs(name, m, n_in, m.in_features, "input features")
    lags = delay_steps(m, max_hw, name)
    nodes: Dict[str, nir.NIRNode] = {}
    edges: List[Tuple[str, str]] = []
    b = None if m.bias is None else to_numpy(m.bias)
    add_delayed_map(nodes, edges, "input", "output", to_numpy(m.weight), b, lags, m.delay_type, dt, "")
    meta = {"module": "DelayedLinear", "delay_type": m.delay_type, "max_delay": int(m.max_delay),
            "delay_steps": lags}
    return subgraph(n_in, m.out_features, nodes, edges, meta), m.out_features


def export_linear(name: str, m: nn.Module, n_in: int, dt: float,
                  max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """``torch.nn.Linear``: ``nir.Affine``."""
    need_inputs(name, m, n_in, m.in_features, "input features")
    return affine_node(to_numpy(m.weight), None if m.bias is None else to_numpy(m.bias)), m.out_features


def export_synaptic(name: str, m: nn.Module, n_in: int, dt: float,
                    max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """snnTorch's ``Synaptic``: ``nir.CubaLIF``."""
    check_nir_neuron(m, name)
    n = n_in
    alpha = vector(m.alpha.clamp(0, 1), n, "alpha")
    beta = vector(m.beta.clamp(0, 1), n, "beta")
    tau_syn, tau_mem = tau_of(alpha, dt), tau_of(beta, dt)
    meta = snn_neuron_meta(m, n)
    meta["alpha"] = alpha
    return nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(n),
        v_threshold=vector(m.threshold, n, "threshold"), v_reset=np.zeros(n),
        w_in=tau_syn / dt, metadata=meta,
    ), n


def export_leaky(name: str, m: nn.Module, n_in: int, dt: float,
                 max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """snnTorch's ``Leaky``: ``nir.LIF``."""
    check_nir_neuron(m, name)
    return leaky_node(m, n_in, dt), n_in


def export_leaky_readout(name: str, m: nn.Module, n_in: int, dt: float,
                         max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """:class:`~snn_delays_ext.LeakyReadout`: ``nir.LI``."""
    if m.beta.dim() == 1:
        need_inputs(name, m, n_in, m.beta.numel(), "input features (one per beta)")
    return li_node(vector(m.beta, n_in, "beta"), dt), n_in


def export_rleaky(name: str, m: nn.Module, n_in: int, dt: float,
                  max_hw: Optional[int]) -> Tuple[nir.NIRNode, int]:
    """snnTorch's ``RLeaky`` and :class:`~snn_delays_ext.DelayedRecurrentLeaky`: ``input -> lif ->
    output`` with the (delayed) recurrent loop."""
    check_nir_neuron(m, name)
    rec = getattr(m, "recurrent", None)
    if m.all_to_all and not isinstance(rec, nn.Linear):
        raise TypeError(
            f"net: module {name!r} (RLeaky with convolutional recurrence) is not supported by "
            "export_to_nir"
        )
    if isinstance(m, DelayedRecurrentLeaky):
        n = int(m.linear_features)
        w_t, b_t = m.recurrent_weights()  # all_to_all=False: the diagonal matrix of V
        w, b = to_numpy(w_t), None if b_t is None else to_numpy(b_t)
    elif m.all_to_all:
        n = rec.out_features
        w, b = to_numpy(rec.weight), None if rec.bias is None else to_numpy(rec.bias)
    else:  # snnTorch's one-to-one recurrence x * V: a diagonal weight matrix
        n = n_in
        v = to_numpy(m.V).reshape(-1)
        if v.size not in (1, n):
            raise ValueError(
                f"net: module {name!r} (RLeaky, all_to_all=False) has V of {v.size} values, "
                f"but the previous layer gives {n} features (expected 1 or {n})"
            )
        w, b = np.diag(np.broadcast_to(v, (n,))).astype(np.float32), None
    need_inputs(name, m, n_in, n, "input features (linear_features)")
    nodes = {"lif": leaky_node(m, n, dt)}
    edges = [("input", "lif"), ("lif", "output")]
    if isinstance(m, DelayedRecurrentLeaky):
        steps = delay_steps(m, max_hw, name)
        lags = steps - 1  # the recurrent edge carries one step itself
        if not lags.any():
            lags = None
        add_delayed_map(nodes, edges, "lif", "lif", w, b, lags, m.delay_type, dt, "rec_")
        meta = {"module": "DelayedRecurrentLeaky", "delay_type": m.delay_type,
                "max_delay": int(m.max_delay), "delay_steps": steps,
                "all_to_all": int(bool(m.all_to_all))}
    else:
        add_delayed_map(nodes, edges, "lif", "lif", w, b, None, "axonal", dt, "rec_")
        meta = {"module": "RLeaky", "all_to_all": int(bool(m.all_to_all))}
    return subgraph(n, n, nodes, edges, meta), n


register_exporter(DelayedLinear, export_delayed_linear)
register_exporter(nn.Linear, export_linear)
register_exporter(snn.Synaptic, export_synaptic)
register_exporter(snn.Leaky, export_leaky)
register_exporter(LeakyReadout, export_leaky_readout)
register_exporter(snn.RLeaky, export_rleaky)  # DelayedRecurrentLeaky too (a subclass)


def snn_neuron(node: nir.NIRNode, key: str, dt: float, recurrent_n: Optional[int] = None):
    """snnTorch neuron kwargs from a LIF / CubaLIF node."""
    meta = dict(node.metadata or {})
    if np.any(np.asarray(node.v_leak) != 0) or np.any(np.asarray(node.v_reset) != 0):
        raise TypeError(f"graph: node {key!r}: v_leak or v_reset != 0 has no snnTorch equivalent")
    if isinstance(node, nir.LIF):
        tau = np.asarray(node.tau, dtype=np.float64)
        beta = meta["beta"] if "beta" in meta else decay_of(tau, dt)
        if "beta" not in meta and not np.allclose(np.asarray(node.r), tau / dt, rtol=1e-6):
            raise TypeError(
                f"graph: node {key!r}: r != tau / dt (dt={dt} s) has no snnTorch Leaky "
                "equivalent; check dt (snnTorch's own export_to_nir writes r = tau / 1e-4: "
                "import its graphs with dt=1e-4)"
            )
        kw = {"beta": param_value(beta)}
    else:
        tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
        tau_mem = np.asarray(node.tau_mem, dtype=np.float64)
        alpha = meta["alpha"] if "alpha" in meta else decay_of(tau_syn, dt)
        beta = meta["beta"] if "beta" in meta else decay_of(tau_mem, dt)
        if "alpha" not in meta or "beta" not in meta:
            check_input_gain(node, key, dt, dt / tau_mem, "snnTorch Synaptic", "r = tau_mem / dt, w_in = tau_syn / dt")
        kw = {"alpha": param_value(alpha), "beta": param_value(beta)}
    kw["threshold"] = param_value(node.v_threshold)
    # NIR semantics (no metadata): reset to zero in the step of the spike
    kw["reset_mechanism"] = meta_str(meta, "reset_mechanism", "zero")
    kw["reset_delay"] = bool(int(meta.get("reset_delay", 0)))
    kw["output"] = bool(int(meta.get("output", 0)))  # return (spk, mem) with init_hidden
    return kw


def check_input_gain(node: nir.CubaLIF, key: str, dt: float, mem_step: np.ndarray, target: str,
                      convention: str) -> None:
    """Refuse a ``CubaLIF`` whose input gain has no equivalent in ``target``.

    The Euler step of NIR's ``CubaLIF`` adds ``(dt / tau_syn) w_in x`` to the current and
    ``(dt / tau_mem) r I`` to the voltage; snnTorch's ``Synaptic`` adds ``x`` and ``I``
    (``mem_step = dt / tau_mem``), Norse's ``LIF`` adds ``x`` and ``(dt / tau_mem) I``
    (``mem_step = 1``). The spikes agree exactly when ``(dt / tau_syn) w_in r mem_step == 1``
    for every neuron (a rescaled current is not seen); otherwise the import would silently
    change the network, so it raises instead.
    """
    tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
    gain = (dt / tau_syn) * np.asarray(node.w_in, dtype=np.float64) * np.asarray(node.r, dtype=np.float64)
    gain = np.broadcast_to(gain * np.asarray(mem_step, dtype=np.float64), np.broadcast(gain, mem_step).shape)
    finite = np.isfinite(tau_syn) & np.isfinite(np.asarray(mem_step, dtype=np.float64))
    finite = np.broadcast_to(finite, gain.shape)
    if not np.allclose(gain[finite], 1.0, rtol=1e-5, atol=0.0):
        bad = float(gain[finite][~np.isclose(gain[finite], 1.0, rtol=1e-5, atol=0.0)][0])
        raise TypeError(
            f"graph: node {key!r}: this CubaLIF's input gain (dt / tau_syn) * w_in * r"
            f"{' * dt / tau_mem' if target.startswith('snnTorch') else ''} is {bad:g}, not 1 with "
            f"dt={dt} s, and a {target} neuron has no input gain: expected {convention} (check dt: "
            "snnTorch's own export_to_nir writes time constants with dt=1e-4; or fold the gain into "
            "the weights before the neuron)"
        )


def import_li(key: str, node: nir.LI, dt: float, prev: Optional[nn.Module], flavour: str,
               seq: bool) -> nn.Module:
    """A :class:`~snn_delays_ext.LeakyReadout` (Norse flavour: ``LIBoxCell``) from an ``LI`` node.

    The Euler step of NIR's ``LI`` is ``v <- (1 - dt / tau) v + (dt / tau) r I``. The module adds
    ``I`` itself (``LIBoxCell``: ``(dt / tau) I``); another input gain is folded into the weights
    and bias of the map before the node, which must then be an ``Affine`` / ``Linear`` (or a
    delayed map).
    """
    n = np.asarray(node.tau).size
    if np.any(np.asarray(node.v_leak) != 0):
        raise TypeError(f"graph: node {key!r}: an LI with v_leak != 0 has no equivalent here (expected 0)")
    tau = vector(node.tau, n, f"graph: node {key!r}: tau")
    if np.any(~(tau > 0)):
        raise ValueError(f"graph: node {key!r}: expected LI time constants tau > 0, got {tau.tolist()}")
    meta = dict(node.metadata or {})
    beta = vector(meta["beta"], n, f"graph: node {key!r}: metadata beta") if "beta" in meta else decay_of(tau, dt)
    r = vector(node.r, n, f"graph: node {key!r}: r")
    # what the node adds per unit of input, over what the module adds (1, or dt / tau for LIBoxCell)
    gain = r if flavour == "norse" else (dt / tau) * r
    if flavour == "norse" and seq:  # before the gain is folded into the previous map
        raise TypeError(f"graph: node {key!r}: an LI node in a Norse sequence graph is not supported; "
                        "export the network with step cells")
    if not np.allclose(gain, 1.0, rtol=1e-6, atol=0.0):
        if not isinstance(prev, (nn.Linear, DelayedLinear)):
            raise TypeError(
                f"graph: node {key!r}: this LI's input gain (dt / tau) * r is not 1 (dt={dt} s) and the "
                f"node before it is {type(prev).__name__ if prev is not None else 'the input'}, not a "
                "weight map to fold it into (check dt)")
        g = to_tensor(gain).to(prev.weight.dtype)
        with torch.no_grad():
            prev.weight.mul_(g.view(-1, *([1] * (prev.weight.dim() - 1))))
            if prev.bias is not None:
                prev.bias.mul_(g)
    if flavour == "norse":
        from norse.torch import LIBoxCell, LIBoxParameters

        return LIBoxCell(p=LIBoxParameters(tau_mem_inv=to_tensor(1.0 / tau), v_leak=torch.zeros(n)), dt=dt)
    return LeakyReadout(param_value(beta))


def import_recurrent(key: str, nk: str, neuron: nir.NIRNode, rec: Map, meta: Dict[str, Any],
                     max_delay: Optional[int], dt: float) -> nn.Module:
    """A recurrent snnTorch-flavour layer: ``RLeaky`` (one-to-one where it was exported so), or
    :class:`~snn_delays_ext.DelayedRecurrentLeaky` where the loop has delays."""
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
