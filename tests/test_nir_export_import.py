"""NIR export and import: graph structure, NIR semantics, round trips, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")
import snntorch as snn  # noqa: E402

import snn_delays_ext as sde  # noqa: E402
from snn_delays_ext.nir import export_to_nir, import_from_nir  # noqa: E402

DT = 1e-3


from _nir_sim import NirSim  # noqa: E402


def _run_steps(net, x):
    sde.reset(net)
    with torch.no_grad():
        return torch.stack([net(x[t]) for t in range(x.shape[0])])


def _spikes_of(net, x):
    """Output of every spiking layer at every step (to check the whole network, not the end)."""
    rec = {}
    hooks = []
    for name, m in net.named_modules():
        if isinstance(m, snn.SpikingNeuron):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, name=name: rec.setdefault(name, []).append(o[0] if isinstance(o, tuple) else o)))
    out = _run_steps(net, x)
    for h in hooks:
        h.remove()
    return out, {k: torch.stack(v) for k, v in rec.items()}


def _mixed_net(reset_mechanism="subtract", reset_delay=True, dtype=torch.float32):
    kw = {"init_hidden": True, "reset_mechanism": reset_mechanism, "reset_delay": reset_delay}
    net = nn.Sequential(
        sde.DelayedLinear(4, 6, max_delay=6, delay_type="synaptic"),
        snn.Leaky(beta=0.9, threshold=0.5, **kw),
        sde.DelayedLinear(6, 5, max_delay=5, delay_type="axonal"),
        sde.DelayedRecurrentLeaky(beta=0.8, linear_features=5, max_delay=4, delay_type="synaptic", **kw),
        nn.Linear(5, 4),
        snn.Synaptic(alpha=0.7, beta=0.85, threshold=0.4, **kw),
        sde.DelayedLinear(4, 4, max_delay=5, delay_type="dendritic"),
        sde.DelayedRecurrentLeaky(beta=0.9, linear_features=4, max_delay=3, delay_type="axonal", **kw),
        nn.Linear(4, 3),
        snn.RLeaky(beta=0.9, linear_features=3, threshold=0.3, **kw),
    ).to(dtype)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Linear, sde.DelayedLinear)) and m.weight.shape[1] >= 4:
                m.weight.mul_(2.5)
    sde.quantize_delays(net)
    return net


def _input(T=100, B=3, F=4, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(T, B, F, generator=g) < 0.35).to(dtype) * 1.5)


# ---------------------------------------------------------------------------------------------
def test_round_trip_identical_spikes_100_steps(tmp_path):
    torch.manual_seed(0)
    net = _mixed_net()
    x = _input()
    graph = export_to_nir(net, x[0], dt=DT)
    path = tmp_path / "net.nir"
    nir.write(str(path), graph)
    net2 = import_from_nir(nir.read(str(path)))
    out1, spk1 = _spikes_of(net, x)
    out2, spk2 = _spikes_of(net2, x)
    assert torch.equal(out1, out2)
    assert spk1.keys() == spk2.keys() and len(spk1) == 5
    for k in spk1:
        assert torch.equal(spk1[k], spk2[k]), k
        assert 0 < float(spk1[k].mean()) < 1, f"layer {k} must spike, but not always"
    # our layers come back where delays occur, snnTorch's own elsewhere
    kinds = [type(m).__name__ for m in net2]
    assert kinds == [type(m).__name__ for m in net]
    for a, b in zip(net, net2):
        if isinstance(a, sde.DelayedLinear):
            assert a.delay_type == b.delay_type and torch.equal(a.delays, b.delays)


def test_exported_graph_means_what_nir_says():
    """Simulate the NIR graph with NIR's own equations (no metadata) and compare."""
    torch.manual_seed(1)
    # (float32 network, float64 simulation: spikes agree unless a membrane lands within
    # rounding error of the threshold, which these continuous random weights make unlikely)
    net = _mixed_net(reset_mechanism="zero", reset_delay=False)
    x = _input(T=60, seed=2)
    graph = export_to_nir(net, x[0], dt=DT)
    ref = NirSim.run(graph, DT, x)
    out, spk = _spikes_of(net, x)
    assert all(0 < float(s.mean()) < 1 for s in spk.values())
    np.testing.assert_array_equal(out.numpy(), ref)


def test_structure_axonal_synaptic_dendritic_recurrent():
    d_ax = torch.tensor([0.0, 2.0, 3.0])
    d_syn = torch.tensor([[1.0, 1.0, 4.0], [0.0, 4.0, 1.0]])
    net = nn.Sequential(
        sde.DelayedLinear(3, 3, max_delay=5, delay_type="axonal", delay_init=d_ax),
        sde.DelayedLinear(3, 2, max_delay=5, delay_type="synaptic", delay_init=d_syn, bias=True),
        sde.DelayedLinear(2, 2, max_delay=5, delay_type="dendritic", delay_init=torch.tensor([3.0, 1.0])),
        sde.DelayedRecurrentLeaky(beta=0.5, linear_features=2, max_delay=4,
                                  delay_init=torch.tensor([1.0, 3.0]), init_hidden=True),
    )
    g = export_to_nir(net, torch.zeros(1, 3), dt=0.5e-3)
    ax = g.nodes["0"]
    assert ax.edges == [("input", "delay"), ("delay", "affine"), ("affine", "output")]
    np.testing.assert_allclose(ax.nodes["delay"].delay, [0.0, 1e-3, 1.5e-3])  # seconds
    syn = g.nodes["1"]
    # one branch per distinct delay value (0, 1 and 4 steps), summed into the output
    assert sorted(k for k in syn.nodes if k.startswith("w_lag")) == ["w_lag0", "w_lag1", "w_lag4"]
    assert sum(1 for a, b in syn.edges if b == "output") == 3
    np.testing.assert_allclose(syn.nodes["delay_lag4"].delay, [2e-3] * 3)
    w = net[1].weight.detach().numpy()
    np.testing.assert_array_equal(syn.nodes["w_lag4"].weight, np.where(d_syn.numpy() == 4, w, 0))
    total = sum(np.asarray(syn.nodes[k].weight) for k in ("w_lag0", "w_lag1", "w_lag4"))
    np.testing.assert_array_equal(total, w)
    den = g.nodes["2"]
    assert ("linear", "delay") in den.edges and ("delay", "output") in den.edges
    assert ("bias", "output") in den.edges and not np.any(den.nodes["bias"].weight)
    rec = g.nodes["3"]
    # lag 1 is the recurrent edge itself: Delay holds lag - 1 steps
    np.testing.assert_allclose(rec.nodes["rec_delay"].delay, [0.0, 1e-3])
    assert ("lif", "rec_delay") in rec.edges and ("rec_affine", "lif") in rec.edges
    np.testing.assert_allclose(rec.nodes["lif"].tau, 0.5e-3 / 0.5)
    np.testing.assert_allclose(rec.nodes["lif"].r, 2.0)


def test_snntorch_network_with_rleaky_leaky_linear_and_our_layers_validates(tmp_path):
    net = nn.Sequential(
        nn.Linear(5, 8),
        snn.RLeaky(beta=0.9, linear_features=8, init_hidden=True),
        sde.DelayedLinear(8, 6, max_delay=7),
        snn.Leaky(beta=0.8, init_hidden=True),
        sde.DelayedRecurrentLeaky(beta=0.9, linear_features=6, max_delay=5, init_hidden=True),
        nn.Dropout(0.1),
        nn.Linear(6, 2, bias=False),
        snn.Leaky(beta=0.95, init_hidden=True, output=True),
    )
    sde.quantize_delays(net)
    g = export_to_nir(net, torch.rand(2, 5), dt=DT)
    g.validate_structure()
    assert g.check_types()
    types = [type(g.nodes[k]).__name__ for k in ("0", "1", "2", "3", "4", "6", "7")]
    assert types == ["Affine", "NIRGraph", "NIRGraph", "LIF", "NIRGraph", "Linear", "LIF"]
    assert "5" not in g.nodes  # dropout skipped
    assert not any(isinstance(n, nir.Delay) for n in g.nodes["1"].nodes.values())  # plain RLeaky
    path = tmp_path / "g.nir"
    nir.write(str(path), g)
    g2 = nir.read(str(path))
    assert set(g2.nodes) == set(g.nodes)
    sub, sub2 = g.nodes["2"], g2.nodes["2"]
    assert set(sub2.nodes) == set(sub.nodes) and sorted(sub2.edges) == sorted(sub.edges)
    for k, node in sub.nodes.items():
        for attr in ("weight", "bias", "delay"):
            if hasattr(node, attr):
                np.testing.assert_array_equal(getattr(sub2.nodes[k], attr), getattr(node, attr))
    np.testing.assert_allclose(np.asarray(g2.nodes["3"].tau), DT / (1 - 0.8), rtol=1e-6)
    assert g2.metadata["dt"] == DT
    back = import_from_nir(g2)
    assert back[-1].output and not back[3].output  # the last Leaky returns (spk, mem) as before


class _Custom(nn.Module):
    """snnTorch-style module, layers registered in another order than called."""

    def __init__(self):
        super().__init__()
        self.lif2 = snn.Leaky(beta=0.9)
        self.fc2 = nn.Linear(6, 3)
        self.fc1 = sde.DelayedLinear(4, 6, max_delay=4, delay_init=2.0)
        self.lif1 = sde.DelayedRecurrentLeaky(beta=0.9, linear_features=6, max_delay=4)

    def forward(self, x):  # one step
        if not hasattr(self, "_m2"):
            self._m2 = None
        spk1, _ = self.lif1(self.fc1(x))
        spk2, self._m2 = self.lif2(self.fc2(spk1), self._m2)
        return spk2


def test_traced_custom_module_uses_call_order():
    torch.manual_seed(3)
    net = _Custom()
    g = export_to_nir(net, torch.rand(2, 4), dt=DT)
    chain = []
    cur = "input"
    while cur != "output":
        cur = [b for a, b in g.edges if a == cur][0]
        chain.append(cur)
    assert chain == ["fc1", "lif1", "fc2", "lif2", "output"]
    net2 = import_from_nir(g)
    assert [type(m).__name__ for m in net2] == ["DelayedLinear", "DelayedRecurrentLeaky", "Linear", "Leaky"]


def test_rounding_is_half_up_never_truncation_through_export():
    d = torch.tensor([0.5, 1.5, 2.5, 2.49, 3.7])
    layer = sde.DelayedLinear(5, 2, max_delay=6, delay_type="axonal", delay_init=d)
    with pytest.warns(UserWarning, match="rounded"):
        g = export_to_nir(layer, torch.zeros(1, 5), dt=DT)
    steps = np.asarray(g.nodes["DelayedLinear"].nodes["delay"].delay) / DT
    # half up: 0.5 -> 1, 1.5 -> 2, 2.5 -> 3 (torch.round gives 0, 2, 2; truncation 0, 1, 2)
    np.testing.assert_allclose(steps, [1, 2, 3, 2, 4])
    # and the hardware limit is checked on the rounded values
    with pytest.raises(ValueError, match="max_hardware_delay"):
        export_to_nir(layer, torch.zeros(1, 5), dt=DT, max_hardware_delay=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_to_nir(layer, torch.zeros(1, 5), dt=DT, max_hardware_delay=4)
    # quantize_delays then export: the same integers, no warning
    sde.quantize_delays(layer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        g2 = export_to_nir(layer, torch.zeros(1, 5), dt=DT)
    np.testing.assert_allclose(np.asarray(g2.nodes["DelayedLinear"].nodes["delay"].delay) / DT, [1, 2, 3, 2, 4])


def test_unsupported_module_error_names_it():
    net = nn.Sequential(nn.Linear(4, 4), nn.Conv1d(1, 1, 3), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(TypeError, match=r"'1'.*Conv1d"):
        export_to_nir(net, torch.rand(1, 4), dt=DT)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    with pytest.raises(TypeError, match="ReLU"):
        export_to_nir(net, torch.rand(1, 4), dt=DT)


@pytest.mark.parametrize("dt, err", [(0.0, ValueError), (-1e-3, ValueError), (math.nan, ValueError),
                                      (math.inf, ValueError), ("1ms", TypeError), (True, TypeError)])
def test_bad_dt(dt, err):
    net = nn.Sequential(sde.DelayedLinear(2, 2, max_delay=3))
    with pytest.raises(err, match="dt"):
        export_to_nir(net, torch.rand(1, 2), dt=dt)


def test_import_bad_dt_and_bad_graph():
    net = nn.Sequential(sde.DelayedLinear(2, 2, max_delay=3, delay_init=1.0))
    g = export_to_nir(net, torch.rand(1, 2), dt=DT)
    with pytest.raises(ValueError, match="dt"):
        import_from_nir(g, dt=0.3e-3)  # 1 ms is not a whole number of 0.3 ms steps
    with pytest.raises(ValueError, match="dt"):
        import_from_nir(g, dt=-1.0)
    # the same graph read with half the step: delays become 2 steps
    back = import_from_nir(g, dt=0.5e-3)[0]
    assert back.delay_type == "synaptic" and torch.equal(back.delays.detach(), torch.full((2, 2), 2.0))
    with pytest.raises(TypeError, match="graph"):
        import_from_nir("not a graph")
    g.metadata.pop("dt")
    with pytest.raises(ValueError, match="dt"):
        import_from_nir(g)


def test_bad_sample_data_and_net():
    net = nn.Sequential(sde.DelayedLinear(2, 2, max_delay=3))
    with pytest.raises(ValueError, match="sample_data"):
        export_to_nir(net, torch.rand(2), dt=DT)
    with pytest.raises(TypeError, match="net"):
        export_to_nir("net", torch.rand(1, 2), dt=DT)
    with pytest.raises(ValueError, match="expects 2 input features"):
        export_to_nir(net, torch.rand(1, 3), dt=DT)


def test_import_foreign_graph_without_metadata_follows_nir_semantics():
    """A hand-written graph (no metadata, a bare top-level Delay) imports with NIR's semantics:
    reset to zero in the step of the spike; compared with the independent simulator."""
    rng = np.random.default_rng(0)
    n_in, n = 3, 4
    tau = np.full(n, 5e-3)
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([n_in])}),
            "delay": nir.Delay(delay=np.array([0.0, 2e-3, 5e-3])),
            "affine": nir.Affine(weight=rng.normal(0, 1.5, (n, n_in)).astype(np.float32),
                                 bias=np.full(n, 0.05, dtype=np.float32)),
            "lif": nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.full(n, 0.6)),
            "output": nir.Output(output_type={"output": np.array([n])}),
        },
        edges=[("input", "delay"), ("delay", "affine"), ("affine", "lif"), ("lif", "output")],
    )
    net = import_from_nir(graph, dt=DT)
    assert isinstance(net[0], sde.DelayedLinear) and net[0].delay_type == "axonal"
    assert net[0].delays.tolist() == [0.0, 2.0, 5.0]
    assert net[1].reset_mechanism == "zero" and not net[1].reset_delay
    x = _input(T=60, F=n_in, seed=4)
    out = _run_steps(net, x)
    ref = NirSim.run(graph, DT, x)
    assert 0 < out.mean() < 1
    np.testing.assert_array_equal(out.numpy(), ref)


def test_import_unsupported_nodes_named():
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2)),
                               nir.Scale(scale=np.ones(2)))
    with pytest.raises(TypeError, match="scale"):
        import_from_nir(g, dt=DT)
    sub = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([2])}),
            "a": nir.Linear(weight=np.eye(2)),
            "b": nir.Linear(weight=np.eye(2)),
            "c": nir.Linear(weight=np.eye(2)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[("input", "a"), ("a", "b"), ("b", "c"), ("c", "output")],
    )
    g = nir.NIRGraph.from_list(sub)
    with pytest.raises(TypeError, match="does not map"):
        import_from_nir(g, dt=DT)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:

    @settings(max_examples=20, deadline=None)
    @given(
        out_f=st.integers(1, 4), in_f=st.integers(1, 4), max_delay=st.integers(1, 6),
        delay_type=st.sampled_from(["synaptic", "axonal", "dendritic"]), seed=st.integers(0, 10_000),
        bias=st.booleans(),
    )
    def test_delayed_linear_round_trip_property(out_f, in_f, max_delay, delay_type, seed, bias):
        g = torch.Generator().manual_seed(seed)
        shape = {"synaptic": (out_f, in_f), "axonal": (in_f,), "dendritic": (out_f,)}[delay_type]
        d = torch.randint(0, max_delay + 1, shape, generator=g).float()
        layer = sde.DelayedLinear(in_f, out_f, max_delay=max_delay, delay_type=delay_type,
                                  delay_init=d, bias=bias)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(out_f, in_f, generator=g) + 3.0)  # no zero weights
        back = import_from_nir(export_to_nir(layer, torch.zeros(1, in_f), dt=DT))
        # an all-equal synaptic delay matrix may come back as axonal: same map
        m = back[0]
        assert isinstance(m, sde.DelayedLinear)
        torch.testing.assert_close(m.weight, layer.weight, rtol=0, atol=0)
        if bias:
            torch.testing.assert_close(m.bias, layer.bias, rtol=0, atol=0)
        x = torch.randn(12, 2, in_f, generator=g)
        torch.testing.assert_close(m(x), layer(x))
        if m.delay_type == delay_type:
            assert torch.equal(m.delays, d)


def test_round_interpolation_exports_exactly_without_quantizing():
    """A layer trained in "round" mode computes with the rounded lags already: no warning, and
    the imported network reproduces it exactly."""
    torch.manual_seed(5)
    net = nn.Sequential(
        sde.DelayedLinear(3, 4, max_delay=6, interpolation="round", sigma=2.0,
                          delay_init=torch.tensor([[0.5, 2.49, 5.5]] * 4)),
        snn.Leaky(beta=0.9, threshold=0.4, init_hidden=True),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        g = export_to_nir(net, torch.zeros(1, 3), dt=DT)
    net2 = import_from_nir(g)
    assert torch.equal(net2[0].delays.detach(), torch.tensor([[1.0, 2.0, 6.0]] * 4))
    x = _input(T=40, F=3, seed=6)
    out = _run_steps(net, x)
    assert 0 < float(out.mean()) < 1
    torch.testing.assert_close(_run_steps(net2, x), out, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# float32 Delay nodes, zero-weight delays, snnTorch's own RLeaky layout, one-to-one recurrence
# ---------------------------------------------------------------------------------------------
def _float32_delays(graph):
    """The graph with every Delay node's delays stored as float32 (as some tools write them)."""
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph):
            _float32_delays(node)
        elif isinstance(node, nir.Delay):
            node.delay = np.asarray(node.delay, dtype=np.float32)
    return graph


def test_float32_delay_nodes_with_long_lags_import_exactly():
    lags = torch.tensor([0.0, 3.0, 37.0, 64.0, 129.0, 200.0])
    net = nn.Sequential(
        sde.DelayedLinear(6, 4, max_delay=200, delay_type="axonal", delay_init=lags),
        sde.DelayedLinear(4, 3, max_delay=200, delay_type="synaptic",
                          delay_init=torch.tensor([[0.0, 33.0, 150.0, 199.0]] * 3)),
    )
    g = _float32_delays(export_to_nir(net, torch.zeros(1, 6), dt=DT))
    assert g.nodes["0"].nodes["delay"].delay.dtype == np.float32
    # float32(200 * 1e-3) / 1e-3 is 200.0000029...: whole up to float32 rounding
    back = import_from_nir(g)
    assert torch.equal(back[0].delays.detach(), lags)
    assert torch.equal(back[1].delays.detach(), net[1].delays.detach())
    x = torch.rand(220, 2, 6)
    torch.testing.assert_close(back(x), net(x), rtol=0, atol=0)
    # a genuinely fractional delay (3.4 steps) is still refused, whatever its dtype
    for dtype in (np.float32, np.float64):
        g.nodes["0"].nodes["delay"].delay = np.asarray([0.0, 3.4, 37, 64, 129, 200], dtype) * DT
        with pytest.raises(ValueError, match=r"not whole multiples of dt.*3\.4"):
            import_from_nir(g)
    g.nodes["0"].nodes["delay"].delay = np.asarray([0, 3, 37, 64, 129, 200.4], np.float32) * DT
    with pytest.raises(ValueError, match="not whole multiples of dt"):
        import_from_nir(g)


def test_zero_weight_connections_keep_their_delays_through_export_and_import(tmp_path):
    """Pruned (exactly zero) weights: the graph's branches cannot say their delays, so the
    exporter saves every delay in the sub-graph's metadata and the importer uses it."""
    torch.manual_seed(7)
    d_ff = torch.randint(0, 5, (6, 4)).float()
    d_ff[:, 1] = 5.0  # lag 5 only on the pruned input 1: an all-zero branch
    d_rec = torch.randint(1, 5, (6, 6)).float()
    net = nn.Sequential(
        sde.DelayedLinear(4, 6, max_delay=5, delay_type="synaptic", delay_init=d_ff),
        sde.DelayedRecurrentLeaky(beta=0.85, linear_features=6, max_delay=4, delay_type="synaptic",
                                  threshold=0.5, delay_init=d_rec, init_hidden=True),
    )
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[0].weight[:, 1] = 0.0
        net[0].weight[2, 3] = 0.0
        net[1].recurrent.weight[torch.rand(6, 6) < 0.4] = 0.0
    assert bool((net[1].recurrent.weight == 0).any())
    x = _input(T=80, seed=8)
    path = tmp_path / "pruned.nir"
    nir.write(str(path), export_to_nir(net, x[0], dt=DT))
    g = nir.read(str(path))
    net2 = import_from_nir(g)
    assert torch.equal(net2[0].delays.detach(), d_ff)
    assert torch.equal(net2[1].delays.detach(), d_rec)
    out, spk = _spikes_of(net, x)
    assert 0 < float(out.mean()) < 1
    torch.testing.assert_close(_run_steps(net2, x), out, rtol=0, atol=0)
    torch.testing.assert_close(net2[1].recurrent.weight, net[1].recurrent.weight, rtol=0, atol=0)
    # without that metadata (another tool's graph) the graph alone decides: same spikes
    for key in ("0", "1"):
        g.nodes[key].metadata.pop("delay_steps")
    net3 = import_from_nir(g)
    torch.testing.assert_close(_run_steps(net3, x), out, rtol=0, atol=0)


@pytest.mark.parametrize("all_to_all", [True, False])
def test_import_snntorch_own_rleaky_export(all_to_all):
    """snnTorch's export_to_nir writes RLeaky's loop lif -> w_rec -> lif at the top level."""
    snn_export = pytest.importorskip("snntorch.export_nir").export_to_nir
    torch.manual_seed(10)
    kw = {"linear_features": 5} if all_to_all else {"all_to_all": False, "V": torch.rand(5) - 0.3}
    net = nn.Sequential(
        nn.Linear(3, 5),
        snn.RLeaky(beta=0.9, threshold=0.5, init_hidden=True, reset_mechanism="zero",
                   reset_delay=False, **kw),
    )
    with torch.no_grad():
        net[0].weight.mul_(2.0)
    g = snn_export(net, torch.rand(3))
    assert any(isinstance(v, nir.LIF) for v in g.nodes.values())  # no sub-graph
    net2 = import_from_nir(g, dt=1e-4)  # snnTorch writes its time constants with dt = 1e-4 s
    assert [type(m) for m in net2] == [nn.Linear, snn.RLeaky]
    assert torch.equal(net2[1].beta, net[1].beta)
    x = _input(T=100, F=3, seed=11)
    out = _run_steps(net, x)
    assert 0 < float(out.mean()) < 1
    torch.testing.assert_close(_run_steps(net2, x), out, rtol=0, atol=0)
    with pytest.raises(TypeError, match="dt=1e-4"):
        import_from_nir(g, dt=DT)


def test_import_top_level_recurrent_loop_with_delay_follows_nir_semantics():
    rng = np.random.default_rng(12)
    n_in, n = 3, 4
    tau = np.full(n, 4e-3)
    w_rec = rng.normal(0, 0.8, (n, n)).astype(np.float32)

    def graph(extra_edges=()):
        return nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type={"input": np.array([n_in])}),
                "w_in": nir.Linear(weight=rng.normal(0, 1.5, (n, n_in)).astype(np.float32)),
                "lif": nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.full(n, 0.5),
                               v_reset=np.zeros(n)),
                "d_rec": nir.Delay(delay=np.array([0.0, 2e-3, 1e-3, 4e-3])),
                "w_rec": nir.Linear(weight=w_rec),
                "output": nir.Output(output_type={"output": np.array([n])}),
            },
            edges=[("input", "w_in"), ("w_in", "lif"), ("lif", "d_rec"), ("d_rec", "w_rec"),
                   ("w_rec", "lif"), ("lif", "output"), *extra_edges],
            type_check=False,
        )

    g = graph()
    net = import_from_nir(g, dt=DT)
    assert isinstance(net[1], sde.DelayedRecurrentLeaky) and net[1].delay_type == "axonal"
    assert net[1].delays.tolist() == [1.0, 3.0, 2.0, 5.0]  # the recurrent edge's step + Delay
    assert set(g.nodes) >= {"lif", "d_rec", "w_rec"}  # the caller's graph is left as it was
    x = _input(T=60, F=n_in, seed=13)
    out = _run_steps(net, x)
    ref = NirSim.run(g, DT, x)
    assert 0 < float(out.mean()) < 1
    np.testing.assert_array_equal(out.numpy(), ref)
    with pytest.raises(TypeError, match="top-level loop through neuron node 'lif'"):
        import_from_nir(graph([("w_rec", "output")]), dt=DT)


def test_one_to_one_recurrent_layers_export_as_diagonal_and_come_back():
    torch.manual_seed(14)
    v = torch.tensor([0.5, -0.3, 0.8, 0.2, -0.6])
    v2 = torch.tensor([0.4, -0.2, 0.7, 0.1])
    kw = {"init_hidden": True, "reset_mechanism": "zero", "reset_delay": False}
    net = nn.Sequential(
        nn.Linear(3, 5),
        sde.DelayedRecurrentLeaky(beta=0.9, linear_features=5, max_delay=4, all_to_all=False, V=v,
                                  threshold=0.5, delay_init=torch.tensor([1.0, 2.0, 4.0, 3.0, 1.0]),
                                  **kw),
        nn.Linear(5, 4),
        snn.RLeaky(beta=0.8, all_to_all=False, V=v2, threshold=0.4, **kw),
    )
    with torch.no_grad():
        net[0].weight.mul_(2.5)
        net[2].weight.mul_(2.5)
    x = _input(T=80, F=3, seed=15)
    g = export_to_nir(net, x[0], dt=DT)
    np.testing.assert_array_equal(g.nodes["1"].nodes["rec_affine"].weight, np.diag(v.numpy()))
    np.testing.assert_allclose(g.nodes["1"].nodes["rec_delay"].delay, [0, 1e-3, 3e-3, 2e-3, 0])
    np.testing.assert_array_equal(g.nodes["3"].nodes["rec_affine"].weight, np.diag(v2.numpy()))
    out, spk = _spikes_of(net, x)
    assert all(0 < float(s.mean()) < 1 for s in spk.values())
    ref = NirSim.run(g, DT, x)  # NIR's semantics: the same spikes
    np.testing.assert_array_equal(out.numpy(), ref)
    net2 = import_from_nir(g)
    assert [type(m) for m in net2] == [type(m) for m in net]
    assert not net2[1].all_to_all and not net2[3].all_to_all
    assert torch.equal(net2[1].V.detach(), v) and torch.equal(net2[3].V.detach(), v2)
    assert torch.equal(net2[1].delays.detach(), net[1].delays.detach())
    torch.testing.assert_close(_run_steps(net2, x), out, rtol=0, atol=0)


def _graded(layer, value=2.0):
    layer.graded_spikes_factor = torch.tensor(value)
    return layer


def _quant(mem):
    return mem


@pytest.mark.parametrize("make, option", [
    pytest.param(lambda: sde.DelayedRecurrentLeaky(beta=0.9, linear_features=3, max_delay=3,
                                                   inhibition=True),
                 "inhibition", id="DelayedRecurrentLeaky-inhibition"),
    pytest.param(lambda: sde.DelayedRecurrentLeaky(beta=0.9, linear_features=3, max_delay=3,
                                                   state_quant=_quant),
                 "state_quant", id="DelayedRecurrentLeaky-state_quant"),
    pytest.param(lambda: _graded(sde.DelayedRecurrentLeaky(beta=0.9, linear_features=3, max_delay=3)),
                 "graded_spikes_factor", id="DelayedRecurrentLeaky-graded"),
    pytest.param(lambda: sde.DelayedRecurrentLeaky(beta=0.9, linear_features=3, max_delay=3,
                                                   all_to_all=False, inhibition=True),
                 "inhibition", id="DelayedRecurrentLeaky-one_to_one-inhibition"),
    pytest.param(lambda: snn.RLeaky(beta=0.9, linear_features=3, state_quant=_quant),
                 "state_quant", id="RLeaky-state_quant"),
    pytest.param(lambda: _graded(snn.RLeaky(beta=0.9, linear_features=3), 0.5),
                 "graded_spikes_factor", id="RLeaky-graded"),
    pytest.param(lambda: snn.Leaky(beta=0.9, inhibition=True), "inhibition", id="Leaky-inhibition"),
    pytest.param(lambda: snn.Leaky(beta=0.9, graded_spikes_factor=2.0), "graded_spikes_factor",
                 id="Leaky-graded"),
    pytest.param(lambda: snn.Synaptic(alpha=0.8, beta=0.9, state_quant=_quant), "state_quant",
                 id="Synaptic-state_quant"),
])
def test_neuron_options_nir_cannot_represent_are_refused(make, option):
    with pytest.raises(ValueError, match=rf"'0'.*{option}"):
        export_to_nir(nn.Sequential(make()), torch.rand(1, 3), dt=DT)


def test_two_synapses_on_one_connection_are_refused():
    """A third-party graph may hold two Delay branches with non-zero weights on the same
    connection (two synapses, two delays); one delay per connection cannot represent that, so
    import refuses it instead of summing the weights under one of the delays."""
    net = nn.Sequential(sde.DelayedLinear(2, 2, max_delay=5, delay_type="synaptic",
                                          delay_init=torch.tensor([[1.0, 3.0], [1.0, 3.0]])))
    g = export_to_nir(net, torch.zeros(1, 2), dt=DT)
    assert torch.equal(import_from_nir(g)[0].delays.detach(), net[0].delays.detach())
    sub = g.nodes["0"]
    sub.nodes["w_lag3"].weight = sub.nodes["w_lag3"].weight.copy()
    sub.nodes["w_lag3"].weight[1, 0] = 0.25  # input 0 -> output 1 now also at lag 3
    sub.metadata.pop("delay_steps", None)  # as another tool would write it
    with pytest.raises(TypeError, match="input 0 to output 1 has non-zero weights in 2 parallel"):
        import_from_nir(g)


@pytest.mark.parametrize("where", ["sub-graph", "top level"])
def test_import_direct_self_loop_edge_is_identity_recurrence(where):
    """A neuron node with a direct edge to itself (no Affine in the loop) gets its own spike of
    the previous step as input, weight 1 (NIR: edges sum into their target). It used to be
    ignored inside a sub-graph; compared with the independent simulator."""
    rng = np.random.default_rng(21)
    n_in, n = 3, 4
    tau = np.full(n, 4e-3)
    w_in = rng.normal(0, 1.2, (n, n_in)).astype(np.float32)
    lif = nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.full(n, 0.5),
                  v_reset=np.zeros(n))
    if where == "sub-graph":
        inner = nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": np.array([n])}), "lif": lif,
                   "output": nir.Output(output_type={"output": np.array([n])})},
            edges=[("input", "lif"), ("lif", "lif"), ("lif", "output")], type_check=False,
        )
        nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
                 "w_in": nir.Linear(weight=w_in), "rec": inner,
                 "output": nir.Output(output_type={"output": np.array([n])})}
        edges = [("input", "w_in"), ("w_in", "rec"), ("rec", "output")]
    else:
        nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
                 "w_in": nir.Linear(weight=w_in), "lif": lif,
                 "output": nir.Output(output_type={"output": np.array([n])})}
        edges = [("input", "w_in"), ("w_in", "lif"), ("lif", "lif"), ("lif", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    net = import_from_nir(g, dt=DT)
    assert isinstance(net[1], snn.RLeaky)
    np.testing.assert_array_equal(net[1].recurrent.weight.detach().numpy(), np.eye(n))
    x = _input(T=60, F=n_in, seed=22)
    out = _run_steps(net, x)
    ref = NirSim.run(g, DT, x)
    assert 0 < float(out.mean()) < 1
    np.testing.assert_array_equal(out.numpy(), ref)
    # without the recurrent weights the spikes differ, so the comparison sees the recurrence
    with torch.no_grad():
        net[1].recurrent.weight.zero_()
    assert not np.array_equal(_run_steps(net, x).numpy(), ref)


def test_import_self_loop_edge_mixed_with_a_recurrent_map_is_refused():
    n = 3
    tau = np.full(n, 4e-3)
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([n])}),
               "lif": nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.ones(n)),
               "w_rec": nir.Linear(weight=np.eye(n, dtype=np.float32)),
               "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "lif"), ("lif", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match="self-loop"):
        import_from_nir(nir.NIRGraph.from_list(inner), dt=DT)


def _cubalif_graph(w_in, r, seed=0):
    rng = np.random.default_rng(seed)
    n_in, n = 3, 4
    ts, tm = np.full(n, 5e-3), np.full(n, 1e-2)
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([n_in])}),
               "w": nir.Linear(weight=rng.normal(0, 3, (n, n_in)).astype(np.float32)),
               "lif": nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=r(tm), w_in=w_in(ts), v_leak=np.zeros(n),
                                  v_threshold=np.full(n, 0.5), v_reset=np.zeros(n)),
               "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "w"), ("w", "lif"), ("lif", "output")],
    )


def test_import_foreign_cubalif_follows_nir_semantics_or_is_refused():
    """A CubaLIF written in snnTorch's convention (``w_in = tau_syn / dt``, ``r = tau_mem / dt``)
    imports as ``snn.Synaptic`` with the simulator's spikes; one with another input gain (here
    ``w_in = r = 1``, which the importer used to read as the same ``Synaptic``: 8x the simulator's
    spike rate, about 8x) has no gain-free snnTorch equivalent and is refused, naming the node and dt."""
    g = _cubalif_graph(lambda ts: ts / DT, lambda tm: tm / DT)
    net = import_from_nir(g, dt=DT)
    assert isinstance(net[1], snn.Synaptic)
    x = _input(T=80, F=3, seed=31)
    out = _run_steps(net, x)
    ref = NirSim.run(g, DT, x)
    assert 0 < float(out.mean()) < 1
    np.testing.assert_array_equal(out.numpy(), ref)
    with pytest.raises(TypeError, match=r"node 'lif'.*input gain.*dt=0.001"):
        import_from_nir(_cubalif_graph(lambda ts: np.ones_like(ts), lambda tm: np.ones_like(tm)), dt=DT)
    # the same graph read with the wrong dt is refused too, rather than run at another gain
    with pytest.raises(TypeError, match="input gain"):
        import_from_nir(g, dt=2 * DT)


def test_import_recurrent_cubalif_is_refused_with_the_reason():
    n = 3
    ts, tm = np.full(n, 4e-3), np.full(n, 8e-3)
    inner = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([n])}),
               "lif": nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / DT, w_in=ts / DT, v_leak=np.zeros(n),
                                  v_threshold=np.ones(n), v_reset=np.zeros(n)),
               "w_rec": nir.Linear(weight=np.full((n, n), 0.1, dtype=np.float32)),
               "output": nir.Output(output_type={"output": np.array([n])})},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], type_check=False,
    )
    with pytest.raises(TypeError, match="recurrent CubaLIF is not supported.*RSynaptic"):
        import_from_nir(nir.NIRGraph.from_list(inner), dt=DT)


def test_decay_of_one_is_written_as_a_finite_time_constant():
    # a decay clipped at 1 (no leak, as learned decays end up): tau = 2**24 dt, finite, so an
    # Euler NIR simulator ((dt / tau) r I, no 0 * inf) runs the perfect integrator; import
    # reads 1 back, from the metadata and without it
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=torch.tensor([1.0, 1.2, 0.5, 0.9]), init_hidden=True,
                                                   reset_mechanism="zero", reset_delay=False))
    with torch.no_grad():
        net[0].weight.uniform_(0.05, 0.3)
        net[0].bias.zero_()
    x = torch.rand(30, 2, 3)
    g = export_to_nir(net, x[0], dt=DT)
    lif = g.nodes["1"]
    assert np.all(np.isfinite(lif.tau)) and np.all(np.isfinite(lif.r))
    np.testing.assert_allclose(lif.tau[:2], DT * 2.0 ** 24)
    want = _run_steps(net, x).numpy()
    assert want.sum() > 0
    np.testing.assert_array_equal(NirSim.run(g, DT, x), want)
    for meta in (True, False):
        if not meta:
            lif.metadata = {}
        beta = import_from_nir(g)[1].beta
        assert beta[:2].tolist() == [1.0, 1.0]
        np.testing.assert_allclose(beta[2:].numpy(), [0.5, 0.9], rtol=1e-6)
