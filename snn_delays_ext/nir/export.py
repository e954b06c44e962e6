"""Export: a chain of layers to an :class:`nir.NIRGraph` (:func:`export_to_nir`)."""

from __future__ import annotations

import warnings
from typing import Dict, List, Optional, Tuple

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from .._checks import check_int, check_module
from .._delay_layer import DelayLayerMixin
from ..delayed_leaky import DelayedLeaky
from ..delayed_linear import DelayedLinear
from ..leaky_readout import LeakyReadout
from . import eventprop as _eventprop_nir  # noqa: F401  (registers the EventProp exporters)
from . import snntorch as _snntorch_nir  # noqa: F401  (registers the snnTorch exporters)
from ._common import SKIP, check_dt, find_exporter, li_node
from .norse import norse_types

__all__ = ["export_to_nir", "append_readout"]


def _export_module(
    name: str, m: nn.Module, n_in: int, dt: float, max_hw: Optional[int]
) -> Tuple[nir.NIRNode, int]:
    """Convert one module with the exporter registered for its type (the nearest class in its
    MRO, see ``register_exporter``); returns its NIR node and output width."""
    exporter = find_exporter(m)
    if exporter is None:
        raise TypeError(
            f"net: module {name!r} of type {type(m).__module__}.{type(m).__qualname__} is not "
            "supported by export_to_nir (supported: torch.nn.Linear, snn_delays_ext.DelayedLinear, DelayedLeaky, "
            "snntorch.Leaky, snntorch.Synaptic, snntorch.RLeaky, snn_delays_ext.DelayedRecurrentLeaky, "
            "snn_delays_ext.LeakyReadout, snn_delays_ext.eventprop.DelayedRecurrentSynaptic, LeakyIntegrator, "
            "snn_delays_ext.norse.DelayedLIF[Cell], DelayedLIFRecurrent[Cell], norse LIF[Cell], "
            "LIFRecurrent[Cell]; "
            "Identity and Dropout are skipped)"
        )
    return exporter(name, m, n_in, dt, max_hw)


def _is_atom(m: nn.Module) -> bool:
    known = (nn.Linear, DelayedLinear, DelayedLeaky, snn.SpikingNeuron, DelayLayerMixin, LeakyReadout) + SKIP
    nm = norse_types()
    if nm:
        known = known + nm["lif"] + nm["norse_recurrent"]
    return isinstance(m, known) or len(list(m.children())) == 0


def _expand(chain: List[Tuple[str, nn.Module]]) -> List[Tuple[str, nn.Module]]:
    """A :class:`~snn_delays_ext.DelayedLeaky` is its two parts in the chain: the delayed map
    ``linear`` and the ``Leaky`` neurons ``lif`` (what its forward pass computes)."""
    out: List[Tuple[str, nn.Module]] = []
    for name, m in chain:
        if isinstance(m, DelayedLeaky):
            out += [(f"{name}.linear", m.linear), (f"{name}.lif", m.lif)]
        else:
            out.append((name, m))
    return out


def _unwrap(m: nn.Module) -> nn.Module:
    nm = norse_types()
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
    from ..utils import reset

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
    uncalled = [n for n, m in atoms if id(m) not in seen and not isinstance(m, SKIP)]
    if uncalled:
        warnings.warn(f"export_to_nir: modules never called on sample_data are left out: {uncalled}",
                      stacklevel=3)
    return order


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
        :class:`~snn_delays_ext.DelayedLinear`, :class:`~snn_delays_ext.DelayedLeaky` (written as its
        delayed map followed by an ``nir.LIF``), ``snntorch.Leaky``, ``snntorch.Synaptic``,
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
    dt = check_dt(dt)
    if not isinstance(sample_data, torch.Tensor):
        raise TypeError(f"sample_data: expected a torch.Tensor, got {type(sample_data).__name__}")
    if sample_data.dim() not in (2, 3):
        raise ValueError(
            f"sample_data: expected a tensor of rank 2 (B, F) or 3 (T, B, F), got shape "
            f"{tuple(sample_data.shape)}"
        )
    if max_hardware_delay is not None:
        max_hardware_delay = check_int("max_hardware_delay", max_hardware_delay, minimum=0)
    nm = norse_types()
    unwrapped = _unwrap(net)
    if isinstance(unwrapped, nn.Sequential):
        chain = _sequential_chain(unwrapped)
    elif _is_atom(unwrapped):
        chain = [(type(unwrapped).__name__, unwrapped)]
    else:
        chain = _traced_chain(net, sample_data)
    chain = [(n, m) for n, m in _expand(chain) if not isinstance(m, SKIP)]
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



def append_readout(graph: "nir.NIRGraph", beta: float, n: int, dt: float, key: str = "readout") -> None:
    """Put a leaky-integrator readout (``v = beta v + I``, :class:`~snn_delays_ext.LeakyReadout`)
    before ``graph``'s output as an ``nir.LI`` node ``key``, so that the graph ends at the
    voltage a training run reduced over time.

    Examples
    --------
    >>> import numpy as np, nir
    >>> g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "w": nir.Linear(np.eye(2)),
    ...                         "output": nir.Output(np.array([2]))},
    ...                  edges=[("input", "w"), ("w", "output")])
    >>> append_readout(g, 0.5, 2, 1e-3)
    >>> sorted(g.edges)
    [('input', 'w'), ('readout', 'output'), ('w', 'readout')]
    """
    (last,) = [a for a, b in graph.edges if b == "output"]
    graph.nodes[key] = li_node(np.full(n, float(beta)), dt)
    graph.edges.remove((last, "output"))
    graph.edges += [(last, key), (key, "output")]
