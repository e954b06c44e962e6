"""Export to and import from NIR, the Neuromorphic Intermediate Representation (``nir``).

:func:`export_to_nir` turns a chain of layers into an :class:`nir.NIRGraph`;
:func:`import_from_nir` builds the equivalent PyTorch network back. Delays become ``nir.Delay``
nodes.

Units and conventions
---------------------
* **Delays are in seconds**, NIR's time unit: a delay of ``l`` steps is written as
  ``l * dt``. Export rounds every delay to whole steps first (halves up, never truncation);
  call :func:`snn_delays_ext.quantize_delays` before exporting to make the exported graph
  compute exactly what the trained network computes (a warning says when delays were not
  integers, or the interpolation width ``sigma`` was not 0).
* **Feed-forward delays** (:class:`~snn_delays_ext.DelayedLinear` and the delayed map of
  :class:`~snn_delays_ext.norse.DelayedLIF`): axonal delays ``(in,)`` are one ``Delay`` before
  the affine map; synaptic delays ``(out, in)`` are split into one branch per distinct delay
  value ``d`` (``Delay(d) -> Linear(W * [L == d])``, the lag-0 branch without ``Delay``), and the
  branches sum into the next node (NIR sums every edge that enters a node); dendritic delays
  ``(out,)`` are a ``Delay`` after the weights (``Linear -> Delay``) with the bias, which is not
  delayed, on a parallel zero-weight ``Affine`` branch. Each delayed map is one sub-graph.
  A connection of weight exactly 0 is in no branch, so every delayed layer's sub-graph also
  records the layer's whole-step delays as ``metadata["delay_steps"]``; :func:`import_from_nir`
  takes the delays of zero-weight connections from there.
* **Recurrent delays**: a recurrent layer is a sub-graph ``input -> neuron -> output`` with the
  recurrent edge ``neuron -> [Delay] -> Affine -> neuron``. The recurrent edge itself carries the
  one-step latency every discrete-time simulator gives a recurrent connection (as in snnTorch's
  own ``RLeaky`` export, which has no ``Delay``), so a recurrent lag of ``l >= 1`` steps is
  written as a ``Delay`` of ``(l - 1) * dt`` (none for lag 1); axonal delays are one ``Delay``
  before the recurrent weights, synaptic delays one branch per distinct lag. One-to-one
  recurrence (``all_to_all=False``, weight ``V``) is the diagonal matrix ``diag(V)``.
  :func:`import_from_nir` also reads such a loop written at the top level (snnTorch's own
  ``RLeaky`` export: ``lif -> w_rec -> lif`` beside the chain, not in a sub-graph).
* **Neurons** follow snnTorch's NIR convention: ``Leaky(beta)`` is ``nir.LIF`` with
  ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``, ``v_reset = 0``; ``Synaptic``
  is ``nir.CubaLIF`` with ``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``,
  ``r = tau_mem / dt``, ``w_in = tau_syn / dt`` (the Euler step of the NIR equations with step
  ``dt`` is then exactly snnTorch's update). A decay of 1 (no leak, e.g. a learned decay
  clipped at 1) is written as ``tau = 2**24 dt`` (a decay of ``1 - 2**-24``, the float32
  number below 1), not ``inf``: NIR simulators step with ``(dt / tau) r``, which is
  ``0 * inf = NaN`` for ``tau = r = inf``; import reads it back as 1.
  :class:`~snn_delays_ext.LeakyReadout` (``mem = beta mem + input``) is ``nir.LI`` with
  ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``; import folds another ``LI``
  input gain ``(dt / tau) r`` into the weights before it. Norse's LIF neurons are ``nir.CubaLIF`` with
  ``tau_syn = 1 / tau_syn_inv``, ``tau_mem = 1 / tau_mem_inv`` (seconds), ``r = 1``,
  ``w_in = tau_syn / dt`` and Norse's ``v_leak``, ``v_th``, ``v_reset``: Norse's update is then
  exactly the Euler step of NIR's ``CubaLIF`` equations, reset included. The EventProp layers
  (:class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic`, readout
  :class:`~snn_delays_ext.eventprop.LeakyIntegrator`) are ``nir.CubaLIF`` / ``nir.CubaLI``
  with ``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``, ``w_in = tau_syn / dt``
  and ``r = c``, the layer's current scale
  (:func:`~snn_delays_ext.eventprop.synaptic_scale`): the Euler step is then exactly the
  layer's update, and its reset to 0 in the step of the spike is NIR's own, so other NIR tools
  simulate these layers exactly. Each is a sub-graph ``input -> [Delay] -> Linear -> neuron``
  (one branch per synaptic delay value) with the recurrent loop as for ``DelayedRecurrentLeaky``.
* NIR's LIF resets to ``v_reset`` in the step of the spike; snnTorch's default is a subtractive
  reset one step later. NIR cannot say that, so each neuron node also carries
  ``metadata`` (``beta``, ``alpha``, ``reset_mechanism``, ``reset_delay``, or Norse's parameters)
  that :func:`import_from_nir` uses to rebuild the exact neuron; without metadata a node is read
  with NIR's semantics. So only ``reset_mechanism="zero", reset_delay=False`` exports to what
  other NIR tools simulate exactly (no warning is given otherwise). ``graded_spikes_factor``
  other than 1, ``inhibition`` and ``state_quant`` have no NIR form: export refuses them.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

try:  # the package is optional: ``pip install snn_delays_ext[nir]``
    import nir
except ImportError as exc:  # pragma: no cover - exercised only without nir
    raise ImportError(
        "snn_delays_ext.nir needs the 'nir' package: pip install nir (or snn_delays_ext[nir])"
    ) from exc
import snntorch as snn

from ._checks import check_int, check_module
from ._delay_layer import DelayLayerMixin
from .delayed_linear import DelayedLinear
from .delayed_recurrent_leaky import DelayedRecurrentLeaky
from .eventprop.functional import synaptic_scale
from .eventprop.layers import DelayedRecurrentSynaptic, LeakyIntegrator
from .functional.interpolation import round_half_up
from .functional.recurrent_leaky import recurrent_delay_shape
from .leaky_readout import LeakyReadout

__all__ = ["export_to_nir", "import_from_nir"]

_SKIP = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.AlphaDropout)
# a Delay holds whole steps when within this many ulps (relative to the lag) of an integer
_LAG_ULPS = 4


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _check_dt(dt: object) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)):
        raise TypeError(f"dt: expected a float > 0 (the time step in seconds), got {type(dt).__name__} ({dt!r})")
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt: expected a finite float > 0 (the time step in seconds), got {dt}")
    return dt


def _np(t: Union[torch.Tensor, float, np.ndarray]) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _vec(value: Union[torch.Tensor, float], n: int, name: str) -> np.ndarray:
    """Broadcast a scalar or per-neuron parameter to ``(n,)`` (float64 holds float32 exactly)."""
    a = np.asarray(_np(value), dtype=np.float64)
    if a.size not in (1, n):
        raise ValueError(f"{name}: expected a scalar or {n} values, got shape {a.shape}")
    return np.broadcast_to(a.reshape(-1), (n,)).copy() if a.size == 1 else a.reshape(n).copy()


# a decay of 1 (no leak) is written as tau = 2**24 dt, a decay of 1 - 2**-24 per step (the float32
# number below 1): a finite value, because NIR simulators step LIF with (dt / tau) * r, and with
# tau = r = inf that is 0 * inf = NaN. Import reads such a tau (or longer) back as a decay of 1.
_NO_LEAK_STEPS = 2.0 ** 24


def _tau(decay: np.ndarray, dt: float) -> np.ndarray:
    """``dt / (1 - decay)``; ``2**24 dt`` for ``decay >= 1`` (no leak, see ``_NO_LEAK_STEPS``)."""
    decay = np.asarray(decay, dtype=np.float64)
    gap = np.maximum(1.0 - decay, 1.0 / _NO_LEAK_STEPS)
    return dt / gap


def _decay(tau: np.ndarray, dt: float) -> np.ndarray:
    """The inverse of :func:`_tau`: ``1 - dt / tau``, and 1 for ``tau >= 2**24 dt`` (or ``inf``)."""
    tau = np.asarray(tau, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(tau >= _NO_LEAK_STEPS * dt, 1.0, 1.0 - dt / tau)


def _meta_str(meta: Dict[str, Any], key: str, default: Optional[str] = None) -> Optional[str]:
    v = meta.get(key, default)
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SUO":
        v = v.item()
        v = v.decode() if isinstance(v, bytes) else v
    return v


def _steps(layer: DelayLayerMixin, max_hardware_delay: Optional[int], name: str) -> np.ndarray:
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
    return _within_limit(rounded, max_hardware_delay, name, "")


def _within_limit(rounded: torch.Tensor, max_hardware_delay: Optional[int], name: str, kind: str) -> np.ndarray:
    """Whole-step delays as int64, refused above the target's ``max_hardware_delay``."""
    if max_hardware_delay is not None and bool((rounded > max_hardware_delay).any()):
        raise ValueError(
            f"max_hardware_delay: module {name!r} has {int((rounded > max_hardware_delay).sum())} "
            f"rounded {kind}delays above the limit {max_hardware_delay} (largest {int(rounded.max())})"
        )
    return rounded.cpu().numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# delayed maps as NIR nodes
# ---------------------------------------------------------------------------------------------
def _affine(weight: np.ndarray, bias: Optional[np.ndarray]) -> nir.NIRNode:
    weight = np.asarray(weight, dtype=np.float32)
    if bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=np.asarray(bias, dtype=np.float32))


def _add_delayed_map(
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
        nodes[f"{tag}affine"] = _affine(weight, bias)
        edges += [(src, f"{tag}affine"), (f"{tag}affine", dst)]
    elif delay_type == "axonal":
        nodes[f"{tag}delay"] = nir.Delay(delay=lags.astype(np.float64) * dt)
        nodes[f"{tag}affine"] = _affine(weight, bias)
        edges += [(src, f"{tag}delay"), (f"{tag}delay", f"{tag}affine"), (f"{tag}affine", dst)]
    elif delay_type == "dendritic":
        nodes[f"{tag}linear"] = _affine(weight, None)
        nodes[f"{tag}delay"] = nir.Delay(delay=lags.astype(np.float64) * dt)
        edges += [(src, f"{tag}linear"), (f"{tag}linear", f"{tag}delay"), (f"{tag}delay", dst)]
        if bias is not None:  # the bias is not delayed: a parallel zero-weight branch
            nodes[f"{tag}bias"] = _affine(np.zeros_like(weight), bias)
            edges += [(src, f"{tag}bias"), (f"{tag}bias", dst)]
    elif delay_type == "synaptic":
        values = sorted(int(v) for v in np.unique(lags))
        n_in = weight.shape[1]
        for j, d in enumerate(values):
            w_d = np.where(lags == d, weight, 0.0).astype(np.float32)
            b_d = bias if j == 0 else None
            if d == 0:
                nodes[f"{tag}w_lag0"] = _affine(w_d, b_d)
                edges += [(src, f"{tag}w_lag0"), (f"{tag}w_lag0", dst)]
            else:
                nodes[f"{tag}delay_lag{d}"] = nir.Delay(delay=np.full(n_in, d * dt, dtype=np.float64))
                nodes[f"{tag}w_lag{d}"] = _affine(w_d, b_d)
                edges += [
                    (src, f"{tag}delay_lag{d}"),
                    (f"{tag}delay_lag{d}", f"{tag}w_lag{d}"),
                    (f"{tag}w_lag{d}", dst),
                ]
    else:  # pragma: no cover - layers validate their delay_type
        raise ValueError(f"delay_type: unknown {delay_type!r}")


def _subgraph(n_in: int, n_out: int, nodes, edges, metadata) -> nir.NIRGraph:
    allnodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    allnodes.update(nodes)
    allnodes["output"] = nir.Output(output_type={"output": np.array([n_out])})
    return nir.NIRGraph(nodes=allnodes, edges=edges, metadata=metadata)


# ---------------------------------------------------------------------------------------------
# module converters
# ---------------------------------------------------------------------------------------------
def _snn_neuron_meta(m: nn.Module, n: int) -> Dict[str, Any]:
    return {
        "reset_mechanism": str(m.reset_mechanism),
        "reset_delay": int(bool(getattr(m, "reset_delay", True))),
        "output": int(bool(getattr(m, "output", False))),
        "beta": _vec(m.beta.clamp(0, 1), n, "beta"),
    }


def _check_nir_neuron(m: nn.Module, name: str) -> None:
    """Refuse the snnTorch neuron options that NIR's ``LIF`` / ``CubaLIF`` cannot represent."""
    found = []
    g = _np(getattr(m, "graded_spikes_factor", 1.0)).reshape(-1)
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


def _leaky_node(m: nn.Module, n: int, dt: float) -> nir.LIF:
    beta = _vec(m.beta.clamp(0, 1), n, "beta")
    tau = _tau(beta, dt)
    return nir.LIF(
        tau=tau, r=tau / dt, v_leak=np.zeros(n), v_threshold=_vec(m.threshold, n, "threshold"),
        v_reset=np.zeros(n), metadata=_snn_neuron_meta(m, n),
    )


def _li_node(beta: np.ndarray, dt: float) -> nir.LI:
    """``nir.LI`` whose Euler step is ``v = beta v + I``: ``tau = dt / (1 - beta)``, ``r = tau / dt``."""
    tau = _tau(beta, dt)
    return nir.LI(tau=tau, r=tau / dt, v_leak=np.zeros(tau.size), metadata={"beta": np.asarray(beta, np.float64)})


def _norse_cubalif(p, n: int, dt: float, module: str) -> nir.CubaLIF:
    tau_syn = 1.0 / _vec(p.tau_syn_inv, n, "tau_syn_inv")
    tau_mem = 1.0 / _vec(p.tau_mem_inv, n, "tau_mem_inv")
    return nir.CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=np.ones(n), v_leak=_vec(p.v_leak, n, "v_leak"),
        v_threshold=_vec(p.v_th, n, "v_th"), v_reset=_vec(p.v_reset, n, "v_reset"),
        w_in=tau_syn / dt,
        metadata={
            "norse": module, "method": str(p.method), "alpha": float(_np(p.alpha).reshape(-1)[0]),
            "tau_syn_inv": _vec(p.tau_syn_inv, n, "tau_syn_inv"),
            "tau_mem_inv": _vec(p.tau_mem_inv, n, "tau_mem_inv"), "dt": dt,
        },
    )


def _eventprop_neuron(m: nn.Module, dt: float) -> nir.NIRNode:
    """``CubaLIF`` (``CubaLI`` for the readout) whose Euler step is the layer's update.

    With ``tau_syn = dt / (1 - alpha)``, ``w_in = tau_syn / dt``, ``tau_mem = dt / (1 - beta)``
    and ``r = c`` (mlGeNN's current scale, :func:`~snn_delays_ext.eventprop.synaptic_scale`)
    the step ``I += dt/tau_syn (-I + w_in x)``, ``v += dt/tau_mem (-v + r I)`` is
    ``S = alpha S + x``, ``U = beta V + (1 - beta) c S``; the reset to 0 in the step of the
    spike is NIR's own.
    """
    n = m.out_features
    tau_syn = np.full(n, float(_tau(np.array(m.alpha), dt)))
    tau_mem = np.full(n, float(_tau(np.array(m.beta), dt)))
    common = dict(tau_syn=tau_syn, tau_mem=tau_mem, r=np.full(n, synaptic_scale(m.alpha)),
                  v_leak=np.zeros(n), w_in=tau_syn / dt)
    meta = {"alpha": float(m.alpha), "beta": float(m.beta)}
    if isinstance(m, LeakyIntegrator):
        return nir.CubaLI(**common, metadata=meta)
    return nir.CubaLIF(**common, v_threshold=np.full(n, float(m.threshold)), v_reset=np.zeros(n),
                       metadata=dict(meta, threshold=float(m.threshold)))


def _export_eventprop(name: str, m: nn.Module, dt: float, max_hw: Optional[int]) -> nir.NIRGraph:
    """``input -> [delayed map] -> neuron -> output`` (and the delayed recurrent loop)."""
    n = m.out_features
    key = "li" if isinstance(m, LeakyIntegrator) else "lif"
    nodes: Dict[str, nir.NIRNode] = {key: _eventprop_neuron(m, dt)}
    edges: List[Tuple[str, str]] = [(key, "output")]
    steps = _steps(m, max_hw, name)
    _add_delayed_map(nodes, edges, "input", key, _np(m.weight), None, steps, "synaptic", dt, "in_")
    meta: Dict[str, Any] = {"module": type(m).__name__, "delay_type": "synaptic",
                            "max_delay": int(m.max_delay), "delay_steps": steps, "backward": m.backward}
    if getattr(m, "recurrent", False):
        rec_steps = _within_limit(round_half_up(m.rec_delays.detach().clamp(1.0, float(m.max_delay))),
                                  max_hw, name, "recurrent ")
        # the recurrent edge carries one step itself
        _add_delayed_map(nodes, edges, key, key, _np(m.rec_weight), None, rec_steps - 1, "synaptic", dt, "rec_")
        meta["rec_delay_steps"] = rec_steps
    return _subgraph(m.in_features, n, nodes, edges, meta)


def _export_module(
    name: str, m: nn.Module, n_in: int, dt: float, max_hw: Optional[int]
) -> Tuple[nir.NIRNode, int]:
    """Convert one module; returns its NIR node and output width."""
    norse_mods = _norse_types()

    def need_in(k: int, what: str) -> None:
        if k != n_in:
            raise ValueError(
                f"net: module {name!r} ({type(m).__name__}) expects {k} {what}, but the previous "
                f"layer gives {n_in}"
            )

    if isinstance(m, (DelayedRecurrentSynaptic, LeakyIntegrator)):
        need_in(m.in_features, "input features")
        return _export_eventprop(name, m, dt, max_hw), m.out_features

    if isinstance(m, DelayedLinear):
        need_in(m.in_features, "input features")
        lags = _steps(m, max_hw, name)
        nodes: Dict[str, nir.NIRNode] = {}
        edges: List[Tuple[str, str]] = []
        b = None if m.bias is None else _np(m.bias)
        _add_delayed_map(nodes, edges, "input", "output", _np(m.weight), b, lags, m.delay_type, dt, "")
        meta = {"module": "DelayedLinear", "delay_type": m.delay_type, "max_delay": int(m.max_delay),
                "delay_steps": lags}
        return _subgraph(n_in, m.out_features, nodes, edges, meta), m.out_features
    if isinstance(m, nn.Linear):
        need_in(m.in_features, "input features")
        return _affine(_np(m.weight), None if m.bias is None else _np(m.bias)), m.out_features
    if isinstance(m, snn.Synaptic) and not isinstance(m, snn.RSynaptic):
        _check_nir_neuron(m, name)
        n = n_in
        alpha = _vec(m.alpha.clamp(0, 1), n, "alpha")
        beta = _vec(m.beta.clamp(0, 1), n, "beta")
        tau_syn, tau_mem = _tau(alpha, dt), _tau(beta, dt)
        meta = _snn_neuron_meta(m, n)
        meta["alpha"] = alpha
        return nir.CubaLIF(
            tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.zeros(n),
            v_threshold=_vec(m.threshold, n, "threshold"), v_reset=np.zeros(n),
            w_in=tau_syn / dt, metadata=meta,
        ), n
    if isinstance(m, snn.Leaky) and not isinstance(m, snn.RLeaky):
        _check_nir_neuron(m, name)
        return _leaky_node(m, n_in, dt), n_in
    if isinstance(m, LeakyReadout):
        if m.beta.dim() == 1:
            need_in(m.beta.numel(), "input features (one per beta)")
        return _li_node(_vec(m.beta, n_in, "beta"), dt), n_in
    if isinstance(m, snn.RLeaky):
        _check_nir_neuron(m, name)
        rec = getattr(m, "recurrent", None)
        if m.all_to_all and not isinstance(rec, nn.Linear):
            raise TypeError(
                f"net: module {name!r} (RLeaky with convolutional recurrence) is not supported by "
                "export_to_nir"
            )
        if isinstance(m, DelayedRecurrentLeaky):
            n = int(m.linear_features)
            w_t, b_t = m._weights()  # all_to_all=False: the diagonal matrix of V
            w, b = _np(w_t), None if b_t is None else _np(b_t)
        elif m.all_to_all:
            n = rec.out_features
            w, b = _np(rec.weight), None if rec.bias is None else _np(rec.bias)
        else:  # snnTorch's one-to-one recurrence x * V: a diagonal weight matrix
            n = n_in
            v = _np(m.V).reshape(-1)
            if v.size not in (1, n):
                raise ValueError(
                    f"net: module {name!r} (RLeaky, all_to_all=False) has V of {v.size} values, "
                    f"but the previous layer gives {n} features (expected 1 or {n})"
                )
            w, b = np.diag(np.broadcast_to(v, (n,))).astype(np.float32), None
        need_in(n, "input features (linear_features)")
        nodes = {"lif": _leaky_node(m, n, dt)}
        edges = [("input", "lif"), ("lif", "output")]
        if isinstance(m, DelayedRecurrentLeaky):
            steps = _steps(m, max_hw, name)
            lags = steps - 1  # the recurrent edge carries one step itself
            if not lags.any():
                lags = None
            _add_delayed_map(nodes, edges, "lif", "lif", w, b, lags, m.delay_type, dt, "rec_")
            meta = {"module": "DelayedRecurrentLeaky", "delay_type": m.delay_type,
                    "max_delay": int(m.max_delay), "delay_steps": steps,
                    "all_to_all": int(bool(m.all_to_all))}
        else:
            _add_delayed_map(nodes, edges, "lif", "lif", w, b, None, "axonal", dt, "rec_")
            meta = {"module": "RLeaky", "all_to_all": int(bool(m.all_to_all))}
        return _subgraph(n, n, nodes, edges, meta), n
    if norse_mods and isinstance(m, norse_mods["recurrent"]):
        need_in(m.input_size, "input features")
        n = m.hidden_size
        nodes = {"lif": _norse_cubalif(m.p, n, m.dt, type(m).__name__)}
        edges = [("lif", "output")]
        _add_delayed_map(nodes, edges, "input", "lif", _np(m.input_weights), None, None, "axonal", dt, "in_")
        steps = _steps(m, max_hw, name)
        lags = steps - 1
        if not lags.any():
            lags = None
        _add_delayed_map(nodes, edges, "lif", "lif", _np(m.effective_recurrent_weights()), None,
                         lags, m.delay_type, dt, "rec_")
        meta = {"module": type(m).__name__, "delay_type": m.delay_type,
                "max_delay": int(m.max_delay), "autapses": int(m.autapses), "delay_steps": steps}
        _check_norse_dt(m, dt, name)
        return _subgraph(n_in, n, nodes, edges, meta), n
    if norse_mods and isinstance(m, norse_mods["norse_recurrent"]):
        # Norse's own LIFRecurrent(Cell): lag 1 everywhere, no Delay node
        need_in(int(m.input_size), "input features")
        n = int(m.hidden_size)
        nodes = {"lif": _norse_cubalif(m.p, n, m.dt, type(m).__name__)}
        edges = [("lif", "output")]
        _add_delayed_map(nodes, edges, "input", "lif", _np(m.input_weights), None, None, "axonal", dt, "in_")
        _add_delayed_map(nodes, edges, "lif", "lif", _np(m.recurrent_weights), None, None, "axonal", dt, "rec_")
        meta = {"module": type(m).__name__, "autapses": int(m.autapses)}
        _check_norse_dt(m, dt, name)
        return _subgraph(n_in, n, nodes, edges, meta), n
    if norse_mods and isinstance(m, norse_mods["feedforward"]):
        need_in(m.input_size, "input features")
        n = m.hidden_size
        nodes = {"lif": _norse_cubalif(m.p, n, m.dt, type(m).__name__)}
        edges = [("lif", "output")]
        b = None if m.bias is None else _np(m.bias)
        steps = _steps(m, max_hw, name)
        _add_delayed_map(nodes, edges, "input", "lif", _np(m.weight), b, steps, m.delay_type, dt, "in_")
        meta = {"module": type(m).__name__, "delay_type": m.delay_type, "max_delay": int(m.max_delay),
                "delay_steps": steps}
        _check_norse_dt(m, dt, name)
        return _subgraph(n_in, n, nodes, edges, meta), n
    if norse_mods and isinstance(m, norse_mods["lif"]):
        _check_norse_dt(m, dt, name)
        return _norse_cubalif(m.p, n_in, m.dt, type(m).__name__), n_in
    raise TypeError(
        f"net: module {name!r} of type {type(m).__module__}.{type(m).__qualname__} is not "
        "supported by export_to_nir (supported: torch.nn.Linear, snn_delays_ext.DelayedLinear, "
        "snntorch.Leaky, snntorch.Synaptic, snntorch.RLeaky, snn_delays_ext.DelayedRecurrentLeaky, "
        "snn_delays_ext.eventprop.DelayedRecurrentSynaptic, LeakyIntegrator, "
        "snn_delays_ext.norse.DelayedLIF[Cell], DelayedLIFRecurrent[Cell], norse LIF[Cell], "
        "LIFRecurrent[Cell]; "
        "Identity and Dropout are skipped)"
    )


def _check_norse_dt(m: nn.Module, dt: float, name: str) -> None:
    if not math.isclose(float(m.dt), dt, rel_tol=1e-9):
        raise ValueError(
            f"dt: module {name!r} integrates with dt={m.dt} but export_to_nir got dt={dt}; "
            "they must agree"
        )


def _norse_types() -> Dict[str, tuple]:
    try:
        import norse.torch as nt

        from .norse import DelayedLIF, DelayedLIFCell, DelayedLIFRecurrent, DelayedLIFRecurrentCell
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


# ---------------------------------------------------------------------------------------------
# finding the chain of layers
# ---------------------------------------------------------------------------------------------
def _is_atom(m: nn.Module) -> bool:
    known = (nn.Linear, DelayedLinear, snn.SpikingNeuron, DelayLayerMixin, LeakyReadout) + _SKIP
    nm = _norse_types()
    if nm:
        known = known + nm["lif"] + nm["norse_recurrent"]
    return isinstance(m, known) or len(list(m.children())) == 0


def _unwrap(m: nn.Module) -> nn.Module:
    nm = _norse_types()
    while nm and isinstance(m, nm["lift"]):
        m = m.lifted_module
    return m


def _sequential_chain(net: nn.Module, prefix: str = "") -> List[Tuple[str, nn.Module]]:
    out: List[Tuple[str, nn.Module]] = []
    for name, child in net.named_children():
        full = f"{prefix}{name}"
        child = _unwrap(child)
        if isinstance(child, nn.Sequential):
            out += _sequential_chain(child, full + ".")
        else:
            out.append((full, child))
    return out


def _traced_chain(net: nn.Module, sample_data: torch.Tensor) -> List[Tuple[str, nn.Module]]:
    """The atoms of ``net`` in the order of their first call on ``sample_data``."""
    from .utils import reset

    order: List[Tuple[str, nn.Module]] = []
    seen = set()
    handles = []
    atoms = []

    def walk(m: nn.Module, name: str) -> None:
        m = _unwrap(m)
        if _is_atom(m):
            atoms.append((name, m))
            return
        for cname, c in m.named_children():
            walk(c, f"{name}.{cname}" if name else cname)

    walk(net, "")
    for name, m in atoms:
        def hook(mod, inp, out, name=name):
            if id(mod) not in seen:
                seen.add(id(mod))
                order.append((name or type(mod).__name__, mod))
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(sample_data)
    except Exception as exc:
        raise ValueError(
            f"sample_data: running the network on it failed ({type(exc).__name__}: {exc}); pass "
            "an input the network accepts (one step (B, F) or a sequence (T, B, F))"
        ) from exc
    finally:
        for h in handles:
            h.remove()
        reset(net)
    uncalled = [n for n, m in atoms if id(m) not in seen and not isinstance(m, _SKIP)]
    if uncalled:
        warnings.warn(f"export_to_nir: modules never called on sample_data are left out: {uncalled}",
                      stacklevel=3)
    return order


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
def export_to_nir(
    net: nn.Module,
    sample_data: torch.Tensor,
    dt: float,
    max_hardware_delay: Optional[int] = None,
) -> "nir.NIRGraph":
    """Export a chain of layers with delays to an NIR graph.

    Parameters
    ----------
    net : torch.nn.Module
        An ``nn.Sequential`` (or Norse ``SequentialState``, ``Lift`` wrappers are looked
        through), a single layer, or a module whose ``forward`` calls its layers one after the
        other (found by running ``sample_data`` through it with forward hooks: tensor operations
        outside modules, skip connections and a layer used at two places in the chain are not
        seen, so keep such a module a plain chain). Supported layers: ``torch.nn.Linear``,
        :class:`~snn_delays_ext.DelayedLinear`, ``snntorch.Leaky``, ``snntorch.Synaptic``,
        ``snntorch.RLeaky`` (dense or one-to-one, not convolutional),
        :class:`~snn_delays_ext.DelayedRecurrentLeaky`, :class:`~snn_delays_ext.LeakyReadout`
        (``nir.LI``), the EventProp layers
        :class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic` and
        :class:`~snn_delays_ext.eventprop.LeakyIntegrator` (and so the training CLI's
        ``EventPropSNN``: pass binary ``sample_data``, e.g. zeros), the
        Norse-flavour modules of :mod:`snn_delays_ext.norse` and Norse's ``LIFCell``, ``LIF``,
        ``LIFRecurrentCell`` and ``LIFRecurrent``;
        ``Identity`` and ``Dropout`` are skipped. Anything else raises a ``TypeError`` naming
        the module; a neuron with ``graded_spikes_factor`` other than 1, ``inhibition=True`` or
        ``state_quant`` raises a ``ValueError`` (NIR's neurons cannot represent them).
    sample_data : torch.Tensor
        An input ``(B, F)`` or ``(T, B, F)``: gives the input width and, for a module that is not
        a ``Sequential``, the call order of its layers (the network is run once on it without
        gradients and its state is reset afterwards).
    dt : float
        Simulation time step in **seconds**; delays are written as ``steps * dt`` and time
        constants as in the module docstring.
    max_hardware_delay : int, optional
        Largest delay (in steps) the target supports; a larger rounded delay raises a
        ``ValueError``.

    Returns
    -------
    nir.NIRGraph
        ``input -> layer_1 -> ... -> output``; every layer with delays, and every recurrent
        layer, is a sub-graph. The graph has passed NIR's structure and type checks;
        ``graph.metadata`` records ``dt`` and the flavour.

    Examples
    --------
    >>> import torch, snntorch as snn
    >>> import snn_delays_ext as sde
    >>> from snn_delays_ext.nir import export_to_nir
    >>> net = torch.nn.Sequential(
    ...     sde.DelayedLinear(3, 4, max_delay=5, delay_type="axonal", delay_init=2.0),
    ...     snn.Leaky(beta=0.9, init_hidden=True))
    >>> g = export_to_nir(net, torch.rand(1, 3), dt=1e-3)
    >>> sorted(g.nodes)
    ['0', '1', 'input', 'output']
    >>> g.nodes['0'].nodes['delay'].delay        # 2 steps of 1 ms, in seconds
    array([0.002, 0.002, 0.002])
    """
    check_module("net", net)
    dt = _check_dt(dt)
    if not isinstance(sample_data, torch.Tensor):
        raise TypeError(f"sample_data: expected a torch.Tensor, got {type(sample_data).__name__}")
    if sample_data.dim() not in (2, 3):
        raise ValueError(
            f"sample_data: expected a tensor of rank 2 (B, F) or 3 (T, B, F), got shape "
            f"{tuple(sample_data.shape)}"
        )
    if max_hardware_delay is not None:
        max_hardware_delay = check_int("max_hardware_delay", max_hardware_delay, minimum=0)
    nm = _norse_types()
    unwrapped = _unwrap(net)
    if isinstance(unwrapped, nn.Sequential):
        chain = _sequential_chain(unwrapped)
    elif _is_atom(unwrapped):
        chain = [(type(unwrapped).__name__, unwrapped)]
    else:
        chain = _traced_chain(net, sample_data)
    chain = [(n, m) for n, m in chain if not isinstance(m, _SKIP)]
    if not chain:
        raise ValueError("net: found no layer to export")
    flavour = "snntorch"
    if nm and any(isinstance(m, nm["recurrent"] + nm["feedforward"] + nm["lif"] + nm["norse_recurrent"])
                  for _, m in chain):
        flavour = "norse"
    sequence_mode = nm and any(
        isinstance(m, (nm["recurrent"][1], nm["feedforward"][1], nm["lif"][1], nm["norse_recurrent"][1]))
        for _, m in chain
    )
    n = int(sample_data.shape[-1])
    n_in = n
    nodes: Dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([n])})}
    edges: List[Tuple[str, str]] = []
    prev = "input"
    used = {"input", "output"}
    for name, m in chain:
        node, n = _export_module(name, m, n, dt, max_hardware_delay)
        key = name.replace(".", "_") or type(m).__name__
        while key in used:
            key += "_"
        used.add(key)
        nodes[key] = node
        edges.append((prev, key))
        prev = key
    nodes["output"] = nir.Output(output_type={"output": np.array([n])})
    edges.append((prev, "output"))
    meta = {"dt": dt, "flavour": flavour, "time_unit": "s", "n_in": n_in,
            "norse_mode": "sequence" if sequence_mode else "step"}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    _validate(graph)
    return graph


def _validate(graph: "nir.NIRGraph") -> None:
    """NIR's own checks: edges name existing nodes, no duplicates, types agree."""
    if hasattr(graph, "validate_structure"):
        graph.validate_structure()
    graph.check_types()


# ---------------------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------------------
def _lags_of(delay: np.ndarray, dt: float, where: str) -> np.ndarray:
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
    tol = _LAG_ULPS * eps * np.maximum(np.abs(steps), 1.0)
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


def _wb(node: nir.NIRNode) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    w = np.asarray(node.weight)
    b = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
    return w, b


class _Map:
    """A parsed (possibly delayed) linear map: weight, bias, lags and delay type."""

    def __init__(self, weight, bias, lags, delay_type):
        self.weight, self.bias, self.lags, self.delay_type = weight, bias, lags, delay_type


def _parse_map(g: nir.NIRGraph, src: str, dst: str, dt: float, where: str) -> Optional[_Map]:
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
            w, b = _wb(g.nodes[br[0]])
            kinds.append(("lag0", w, b, None))
        elif types in (("Delay", "Affine"), ("Delay", "Linear")):
            w, b = _wb(g.nodes[br[1]])
            kinds.append(("pre", w, b, _lags_of(g.nodes[br[0]].delay, dt, br[0])))
        elif types in (("Affine", "Delay"), ("Linear", "Delay")):
            w, b = _wb(g.nodes[br[0]])
            kinds.append(("post", w, b, _lags_of(g.nodes[br[1]].delay, dt, br[1])))
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
        return _Map(weight, bias, None, None)
    if len(kinds) == 1 and kinds[0][0] == "pre":
        return _Map(weight, bias, kinds[0][3], "axonal")
    posts = [k for k in kinds if k[0] == "post"]
    if len(posts) == 1 and all(k[0] == "post" or (k[0] == "lag0" and not np.any(k[1])) for k in kinds):
        return _Map(weight, bias, posts[0][3], "dendritic")
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
        return _Map(weight, bias, lags, "synaptic")
    raise TypeError(f"graph: sub-graph {where!r}: cannot map its delay pattern to a layer")


def _neuron_key(g: nir.NIRGraph) -> Optional[str]:
    keys = [k for k, v in g.nodes.items() if isinstance(v, (nir.LIF, nir.CubaLIF))]
    if len(keys) > 1:
        raise TypeError(f"graph: a sub-graph holds {len(keys)} neuron nodes {keys}; expected at most one")
    return keys[0] if keys else None


def _t(a, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def _param(a: np.ndarray) -> Union[float, torch.Tensor]:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    if np.all(a == a[0]):
        return float(np.float32(a[0]))
    return _t(a)


def _snn_neuron(node: nir.NIRNode, key: str, dt: float, recurrent_n: Optional[int] = None):
    """snnTorch neuron kwargs from a LIF / CubaLIF node."""
    meta = dict(node.metadata or {})
    if np.any(np.asarray(node.v_leak) != 0) or np.any(np.asarray(node.v_reset) != 0):
        raise TypeError(f"graph: node {key!r}: v_leak or v_reset != 0 has no snnTorch equivalent")
    if isinstance(node, nir.LIF):
        tau = np.asarray(node.tau, dtype=np.float64)
        beta = meta["beta"] if "beta" in meta else _decay(tau, dt)
        if "beta" not in meta and not np.allclose(np.asarray(node.r), tau / dt, rtol=1e-6):
            raise TypeError(
                f"graph: node {key!r}: r != tau / dt (dt={dt} s) has no snnTorch Leaky "
                "equivalent; check dt (snnTorch's own export_to_nir writes r = tau / 1e-4: "
                "import its graphs with dt=1e-4)"
            )
        kw = {"beta": _param(beta)}
    else:
        tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
        tau_mem = np.asarray(node.tau_mem, dtype=np.float64)
        alpha = meta["alpha"] if "alpha" in meta else _decay(tau_syn, dt)
        beta = meta["beta"] if "beta" in meta else _decay(tau_mem, dt)
        if "alpha" not in meta or "beta" not in meta:
            _check_input_gain(node, key, dt, dt / tau_mem, "snnTorch Synaptic", "r = tau_mem / dt, w_in = tau_syn / dt")
        kw = {"alpha": _param(alpha), "beta": _param(beta)}
    kw["threshold"] = _param(node.v_threshold)
    # NIR semantics (no metadata): reset to zero in the step of the spike
    kw["reset_mechanism"] = _meta_str(meta, "reset_mechanism", "zero")
    kw["reset_delay"] = bool(int(meta.get("reset_delay", 0)))
    kw["output"] = bool(int(meta.get("output", 0)))  # return (spk, mem) with init_hidden
    return kw


def _check_input_gain(node: nir.CubaLIF, key: str, dt: float, mem_step: np.ndarray, target: str,
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


def _import_li(key: str, node: nir.LI, dt: float, prev: Optional[nn.Module], flavour: str,
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
    tau = _vec(node.tau, n, f"graph: node {key!r}: tau")
    if np.any(~(tau > 0)):
        raise ValueError(f"graph: node {key!r}: expected LI time constants tau > 0, got {tau.tolist()}")
    meta = dict(node.metadata or {})
    beta = _vec(meta["beta"], n, f"graph: node {key!r}: metadata beta") if "beta" in meta else _decay(tau, dt)
    r = _vec(node.r, n, f"graph: node {key!r}: r")
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
        g = _t(gain).to(prev.weight.dtype)
        with torch.no_grad():
            prev.weight.mul_(g.view(-1, *([1] * (prev.weight.dim() - 1))))
            if prev.bias is not None:
                prev.bias.mul_(g)
    if flavour == "norse":
        from norse.torch import LIBoxCell, LIBoxParameters

        return LIBoxCell(p=LIBoxParameters(tau_mem_inv=_t(1.0 / tau), v_leak=torch.zeros(n)), dt=dt)
    return LeakyReadout(_param(beta))


def _norse_params(node: nir.CubaLIF, key: str, dt: float):
    from norse.torch import LIFParameters

    meta = dict(node.metadata or {})
    _check_input_gain(node, key, dt, np.ones(1), "Norse LIF", "r = 1, w_in = tau_syn / dt")
    tsi = meta.get("tau_syn_inv", 1.0 / np.asarray(node.tau_syn, dtype=np.float64))
    tmi = meta.get("tau_mem_inv", 1.0 / np.asarray(node.tau_mem, dtype=np.float64))
    return LIFParameters(
        tau_syn_inv=torch.as_tensor(_param(tsi)), tau_mem_inv=torch.as_tensor(_param(tmi)),
        v_leak=torch.as_tensor(_param(node.v_leak)), v_th=torch.as_tensor(_param(node.v_threshold)),
        v_reset=torch.as_tensor(_param(node.v_reset)),
        method=_meta_str(meta, "method", "super"),
        alpha=torch.as_tensor(float(meta.get("alpha", 100.0))),
    )


def _with_saved_lags(
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


def _as_exported(mp: _Map, meta: Dict[str, Any], where: str) -> _Map:
    """Give a parsed map the delay type the exporter recorded (an all-zero or all-equal
    synaptic delay matrix has the structure of a plain or an axonal map) and the saved lags of
    its zero-weight connections."""
    want = _meta_str(meta, "delay_type")
    if _meta_str(meta, "module") not in ("DelayedLinear", "DelayedLIF", "DelayedLIFCell") or not want:
        return mp
    out_f, in_f = mp.weight.shape
    shapes = {"synaptic": (out_f, in_f), "axonal": (in_f,), "dendritic": (out_f,)}
    if want not in shapes:
        return mp
    shape = shapes[want]
    if mp.lags is None:
        mp = _Map(mp.weight, mp.bias, np.zeros(shape, dtype=np.int64), want)
    elif want == "synaptic" and mp.delay_type == "axonal":
        mp = _Map(mp.weight, mp.bias, np.broadcast_to(mp.lags[None, :], shape).copy(), want)
    if mp.delay_type == "synaptic":
        mp = _Map(mp.weight, mp.bias, _with_saved_lags(mp.lags, mp.weight, meta, 0, where), "synaptic")
    return mp


def _delayed_linear_from(mp: _Map, max_delay: Optional[int]) -> nn.Module:
    out_f, in_f = mp.weight.shape
    if mp.lags is None:
        lin = nn.Linear(in_f, out_f, bias=mp.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(_t(mp.weight))
            if mp.bias is not None:
                lin.bias.copy_(_t(mp.bias))
        return lin
    md = max(1, int(mp.lags.max()), int(max_delay or 0))
    layer = DelayedLinear(in_f, out_f, max_delay=md, delay_type=mp.delay_type,
                          bias=mp.bias is not None, delay_init=_t(mp.lags))
    with torch.no_grad():
        layer.weight.copy_(_t(mp.weight))
        if mp.bias is not None:
            layer.bias.copy_(_t(mp.bias))
    return layer


def _import_node(key: str, node: nir.NIRNode, dt: float, flavour: str, seq: bool) -> nn.Module:
    if isinstance(node, (nir.Affine, nir.Linear)):
        w, b = _wb(node)
        lin = _delayed_linear_from(_Map(w, b, None, None), None)
        if flavour == "norse" and seq:
            from norse.torch import Lift

            return Lift(lin)
        return lin
    if isinstance(node, (nir.LIF, nir.CubaLIF)):
        if flavour == "norse" and isinstance(node, nir.CubaLIF):
            from norse.torch import LIF, LIFCell

            return (LIF if seq else LIFCell)(p=_norse_params(node, key, dt), dt=dt)
        kw = _snn_neuron(node, key, dt)
        cls = snn.Leaky if isinstance(node, nir.LIF) else snn.Synaptic
        return cls(init_hidden=True, **kw)
    if isinstance(node, nir.NIRGraph):
        meta = dict(node.metadata or {})
        max_delay = int(meta["max_delay"]) if "max_delay" in meta else None
        if _meta_str(meta, "module") in _EVENTPROP_MODULES:
            return _import_eventprop(key, node, meta, dt, max_delay)
        nk = _neuron_key(node)
        gin, gout = _io_keys(node, key)
        if nk is None:
            mp = _parse_map(node, gin, gout, dt, key)
            if mp is None:
                return nn.Identity()
            return _delayed_linear_from(_as_exported(mp, meta, key), max_delay)
        neuron = node.nodes[nk]
        rec = _parse_map_or_none(node, nk, nk, dt, key)
        inp = _parse_map(node, gin, nk, dt, key)
        if flavour == "norse":
            return _import_norse(key, node, neuron, inp, rec, dt, seq, meta, max_delay)
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
        kw = _snn_neuron(neuron, nk, dt)
        n = rec.weight.shape[0]
        has_delays = rec.lags is not None
        # one-to-one recurrence (all_to_all=False) when exported so and still diagonal, unbiased
        diag = np.diag(np.asarray(rec.weight, dtype=np.float64)).copy()
        one_to_one = (
            not bool(int(meta.get("all_to_all", 1))) and rec.bias is None
            and np.array_equal(np.asarray(rec.weight), np.diag(diag))
            and (not has_delays or rec.lags.ndim == 1)
        )
        v_kw = {"all_to_all": False, "V": _t(diag)} if one_to_one else {}
        if has_delays or _meta_str(meta, "module") == "DelayedRecurrentLeaky":
            dtype = _meta_str(meta, "delay_type") or rec.delay_type or "axonal"
            lags = rec.lags if has_delays else np.zeros((n,), dtype=np.int64)
            if dtype == "synaptic" and lags.ndim == 1:
                lags = np.broadcast_to(lags[None, :], (n, n))
            if dtype == "axonal" and lags.ndim == 2:
                dtype = "synaptic"
            if dtype == "synaptic":
                lags = _with_saved_lags(lags, rec.weight, meta, 1, key)
            md = max(1, int(lags.max()) + 1, int(max_delay or 0))
            layer = DelayedRecurrentLeaky(
                linear_features=n, max_delay=md, delay_type=dtype, init_hidden=True,
                bias=rec.bias is not None, delay_init=_t(lags + 1), **v_kw, **kw,
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
            layer.recurrent.weight.copy_(_t(rec.weight))
            if rec.bias is not None:
                layer.recurrent.bias.copy_(_t(rec.bias))
        return layer
    raise TypeError(
        f"graph: node {key!r} of type nir.{type(node).__name__} is not supported by import_from_nir "
        "(supported: Affine, Linear, LIF, CubaLIF, LI and the sub-graphs export_to_nir writes)"
    )


_EVENTPROP_MODULES = ("DelayedRecurrentSynaptic", "LeakyIntegrator")


def _synaptic_lags(mp: _Map, meta: Dict[str, Any], offset: int, where: str) -> np.ndarray:
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
    return _with_saved_lags(lags, mp.weight, meta, offset, where, "rec_delay_steps" if offset else "delay_steps")


def _import_eventprop(key: str, g: nir.NIRGraph, meta: Dict[str, Any], dt: float,
                      max_delay: Optional[int]) -> nn.Module:
    """Rebuild a :class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic` (spikes only, for
    an ``nn.Sequential``) or :class:`~snn_delays_ext.eventprop.LeakyIntegrator` from the
    sub-graph :func:`export_to_nir` writes for it.

    The decays come from the neuron's metadata (``alpha``, ``beta``) or, without it, from the
    time constants (``1 - dt / tau``). A per-neuron input gain other than the layer's
    ``(1 - beta) c`` is folded into that neuron's weights (the current is linear in them, so
    the spikes are unchanged).
    """
    module = _meta_str(meta, "module")
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
    gin, _ = _io_keys(g, key)
    inp = _parse_map(g, gin, nk, dt, key)
    if inp is None:
        raise TypeError(f"graph: sub-graph {key!r}: a {module} needs input weights")
    w_in = np.asarray(inp.weight, dtype=np.float64)
    lags = _synaptic_lags(inp, meta, 0, key)
    rec = _parse_map_or_none(g, nk, nk, dt, key)
    fold = not np.allclose(scale, 1.0, rtol=1e-6, atol=0.0)
    out_f, in_f = w_in.shape
    backward = _meta_str(meta, "backward", "surrogate")
    if module == "LeakyIntegrator":
        if rec is not None:
            raise TypeError(f"graph: sub-graph {key!r}: a LeakyIntegrator has no recurrent connections")
        md = max(1, int(lags.max()), int(max_delay or 0))
        layer: nn.Module = LeakyIntegrator(in_f, out_f, md, alpha=alpha, beta=beta, backward=backward,
                                           delay_init=_t(lags))
    else:
        thr = np.asarray(neuron.v_threshold, dtype=np.float64).reshape(-1)
        if not np.all(thr == thr[0]):
            raise TypeError(f"graph: node {key!r}: a DelayedRecurrentSynaptic has one threshold, got several")
        rec_lags = None if rec is None else _synaptic_lags(rec, meta, 1, key)
        md = max(1, int(lags.max()), int(max_delay or 0), 0 if rec_lags is None else int(rec_lags.max()) + 1)
        layer = DelayedRecurrentSynaptic(
            in_f, out_f, md, alpha=alpha, beta=beta, threshold=float(thr[0]), recurrent=rec is not None,
            backward=backward, delay_init=_t(lags), return_mem=False,
            rec_delay_init=_t(rec_lags + 1) if rec_lags is not None else "uniform",
        )
        if rec is not None:
            w_rec = np.asarray(rec.weight, dtype=np.float64)
            with torch.no_grad():
                layer.rec_weight.copy_(_t(w_rec * scale[:, None] if fold else w_rec))
    with torch.no_grad():
        layer.weight.copy_(_t(w_in * scale[:, None] if fold else w_in))
    return layer


def _io_keys(g: nir.NIRGraph, where: str) -> Tuple[str, str]:
    ins = [k for k, v in g.nodes.items() if isinstance(v, nir.Input)]
    outs = [k for k, v in g.nodes.items() if isinstance(v, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise TypeError(
            f"graph: sub-graph {where!r} needs one Input and one Output node, got {ins} and {outs}"
        )
    return ins[0], outs[0]


def _parse_map_or_none(g, src, dst, dt, where) -> Optional[_Map]:
    """The recurrent map of neuron node ``src`` (``== dst``), or ``None`` without a loop.

    A direct self-loop edge ``(src, src)`` alone is an identity recurrence: each neuron's own
    spike of the previous step enters its input with weight 1 (NIR: edges sum into their
    target; the edge that closes a cycle carries the previous step's output).
    """
    if src == dst and (src, src) in g.edges:
        others = [b for a, b in g.edges if a == src and b != src and _reaches(g, b, src)]
        if others:
            raise ValueError(
                f"graph: sub-graph {where!r} mixes a direct self-loop edge {src}->{src} with other "
                f"recurrent paths (through {others}); expected one of them"
            )
        n = int(np.prod(np.asarray(g.nodes[src].input_type["input"])))
        return _Map(np.eye(n, dtype=np.float32), None, None, None)
    has_cycle = any(a == src for a, _ in g.edges) and _reaches(g, src, dst)
    return _parse_map(g, src, dst, dt, where) if has_cycle else None


def _reaches(g, src, dst) -> bool:
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


def _import_norse(key, g, neuron, inp, rec, dt, seq, meta, max_delay):
    from .norse import DelayedLIF, DelayedLIFCell, DelayedLIFRecurrent, DelayedLIFRecurrentCell

    if not isinstance(neuron, nir.CubaLIF):
        raise TypeError(f"graph: sub-graph {key!r}: a Norse layer needs a CubaLIF neuron node")
    p = _norse_params(neuron, key, dt)
    if inp is None:
        raise TypeError(f"graph: sub-graph {key!r}: a Norse layer needs input weights")
    n, i = inp.weight.shape
    if rec is not None:
        if inp.lags is not None or inp.bias is not None:
            raise TypeError(f"graph: sub-graph {key!r}: delayed or biased input weights of a recurrent Norse layer")
        autapses = bool(int(meta.get("autapses", 1)))
        if rec.lags is None and _meta_str(meta, "module") in ("LIFRecurrentCell", "LIFRecurrent"):
            from norse.torch import LIFRecurrent, LIFRecurrentCell

            ncls = LIFRecurrent if seq else LIFRecurrentCell
            return ncls(i, n, p=p, dt=dt, autapses=autapses,
                        input_weights=nn.Parameter(_t(inp.weight)),
                        recurrent_weights=nn.Parameter(_t(rec.weight)))
        dtype = _meta_str(meta, "delay_type") or rec.delay_type or "axonal"
        lags = rec.lags if rec.lags is not None else np.zeros(recurrent_delay_shape(dtype, n), dtype=np.int64)
        if dtype == "synaptic" and lags.ndim == 1:
            lags = np.broadcast_to(lags[None, :], (n, n))
        if dtype == "axonal" and lags.ndim == 2:
            dtype = "synaptic"
        if dtype == "synaptic":
            lags = _with_saved_lags(lags, rec.weight, meta, 1, key)
        md = max(1, int(lags.max()) + 1, int(max_delay or 0))
        cls = DelayedLIFRecurrent if seq else DelayedLIFRecurrentCell
        return cls(i, n, max_delay=md, p=p, dt=dt, delay_type=dtype, autapses=autapses,
                   input_weights=_t(inp.weight), recurrent_weights=_t(rec.weight),
                   delay_init=_t(lags + 1))
    inp = _as_exported(inp, meta, key)
    lags = inp.lags
    dtype = inp.delay_type or "axonal"
    if lags is None:
        lags = np.zeros((i,), dtype=np.int64)
    md = max(1, int(lags.max()), int(max_delay or 0))
    cls = DelayedLIF if seq else DelayedLIFCell
    layer = cls(i, n, max_delay=md, p=p, dt=dt, delay_type=dtype, bias=inp.bias is not None,
                weight=_t(inp.weight), delay_init=_t(lags))
    if inp.bias is not None:
        with torch.no_grad():
            layer.bias.copy_(_t(inp.bias))
    return layer


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
    dt = _check_dt(dt)
    graph = _fold_top_level_loops(graph)
    flavour = _meta_str(meta, "flavour", "snntorch")
    seq = _meta_str(meta, "norse_mode", "step") == "sequence"
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
            lags = _lags_of(node.delay, dt, cur)
            nxt = succ.get(cur, [])
            if len(nxt) == 1 and isinstance(graph.nodes[nxt[0]], (nir.Affine, nir.Linear)):
                cur = nxt[0]
                visited.add(cur)
                w, b = _wb(graph.nodes[cur])
            else:
                w, b = np.eye(lags.size, dtype=np.float32), None
            layer = _delayed_linear_from(_Map(w, b, lags, "axonal"), None)
            if flavour == "norse" and seq:
                raise TypeError(f"graph: node {cur!r}: a bare Delay in a Norse sequence graph is not supported")
            modules.append(layer)
            continue
        if isinstance(node, nir.LI):
            modules.append(_import_li(cur, node, dt, modules[-1] if modules else None, flavour, seq))
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
