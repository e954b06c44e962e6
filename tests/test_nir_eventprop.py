"""NIR export and import of the EventProp layers (current-based LIF and leaky-integrator
readout with synaptic delays): node parameters, an independent NIR interpreter, round trips,
graphs from other tools (no metadata, another input gain) and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")
import snntorch as snn  # noqa: E402

from snn_delays_ext.eventprop import DelayedRecurrentSynaptic, EventPropSNN, LeakyIntegrator  # noqa: E402
from snn_delays_ext.nir import export_to_nir, import_from_nir  # noqa: E402

from _nir_sim import NirSim  # noqa: E402

DT = 1e-3


def _net(recurrent: bool, seed: int = 0) -> EventPropSNN:
    """A small EventProp network that fires (positive mean weights) with whole-step delays."""
    torch.manual_seed(seed)
    net = EventPropSNN(6, [16, 12], 4, max_delay=8, recurrent=recurrent, weight_mean=3.0, weight_std=1.0,
                       tau_syn=4.0, tau_mem=15.0, tau_out=30.0).eval()
    for layer in [*net.layers, net.out]:
        layer.quantize_delays()
    return net


def _spikes(seed: int = 1, T: int = 40, B: int = 3, F: int = 6) -> torch.Tensor:
    torch.manual_seed(seed)
    return (torch.rand(T, B, F) < 0.3).float()


def _run(net: EventPropSNN, x: torch.Tensor):
    """Hidden spikes of every layer and the readout voltage (T, B, C)."""
    with torch.no_grad():
        spikes, h = [], x
        for layer in net.layers:
            h = layer(h)[0]
            spikes.append(h)
        return spikes, net.out(h)


@pytest.mark.parametrize("recurrent", [False, True])
def test_independent_interpreter_runs_the_exported_graph_as_the_network(recurrent):
    # NirSim knows nothing of the layers: Euler steps of NIR's CubaLIF / CubaLI equations,
    # Delay buffers, edges summed, the loop edge one step late
    net = _net(recurrent)
    x = _spikes()
    spikes, v = _run(net, x)
    assert all(float(s.sum()) > 20 for s in spikes)  # the hidden layers fire: a real check
    g = export_to_nir(net, x, dt=DT)
    np.testing.assert_allclose(NirSim.run(g, DT, x), v.double().numpy(), rtol=1e-5, atol=1e-5)
    # the hidden spikes too: each layer exported alone
    h = x
    for layer, s in zip(net.layers, spikes):
        out = NirSim.run(export_to_nir(layer, h, dt=DT), DT, h)
        assert np.array_equal(out, s.double().numpy())
        h = s


def test_node_parameters_follow_the_documented_mapping():
    layer = DelayedRecurrentSynaptic(3, 2, max_delay=4, tau_syn=5.0, tau_mem=20.0, threshold=0.7,
                                     recurrent=True, delay_init=torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]]),
                                     rec_delay_init=torch.tensor([[1.0, 3.0], [2.0, 1.0]]))
    dt = 2e-3
    g = export_to_nir(layer, torch.zeros(5, 1, 3), dt=dt)
    sub = g.nodes["DelayedRecurrentSynaptic"]
    lif = sub.nodes["lif"]
    alpha, beta = math.exp(-1 / 5), math.exp(-1 / 20)
    np.testing.assert_allclose(lif.tau_syn, dt / (1 - alpha))
    np.testing.assert_allclose(lif.tau_mem, dt / (1 - beta))
    np.testing.assert_allclose(lif.w_in, 1 / (1 - alpha))  # tau_syn / dt
    np.testing.assert_allclose(lif.r, (1 - alpha) / (1 / 5))  # c = (tau_syn / dt)(1 - alpha), tau_syn = 5 steps
    np.testing.assert_allclose(lif.v_threshold, 0.7)
    np.testing.assert_allclose(lif.v_reset, 0.0)
    # one Delay branch per distinct feed-forward lag (0, 1, 2, 3), in seconds
    delays = sorted(float(n.delay[0]) for k, n in sub.nodes.items() if k.startswith("in_delay"))
    np.testing.assert_allclose(delays, [dt, 2 * dt, 3 * dt])
    # recurrent lags 1, 2, 3: the loop edge carries one step, Delay nodes the rest
    rec = sorted(float(n.delay[0]) for k, n in sub.nodes.items() if k.startswith("rec_delay"))
    np.testing.assert_allclose(rec, [dt, 2 * dt])
    assert sub.metadata["module"] == "DelayedRecurrentSynaptic"


def test_hand_computed_readout_voltage():
    # one input spike at step 0 into one LeakyIntegrator with weight 2, delay 3:
    # S = 2 alpha^(t-3), U_t = beta U_(t-1) + (1 - beta) c S_t; NirSim must give the same
    li = LeakyIntegrator(1, 1, max_delay=5, alpha=0.5, beta=0.8, delay_init=3.0)
    with torch.no_grad():
        li.weight.fill_(2.0)
    x = torch.zeros(8, 1, 1)
    x[0] = 1.0
    c = 0.5 / math.log(2.0)
    expect, u = [], 0.0
    for t in range(8):
        s = 2.0 * 0.5 ** (t - 3) if t >= 3 else 0.0
        u = 0.8 * u + 0.2 * c * s
        expect.append(u)
    with torch.no_grad():
        np.testing.assert_allclose(li(x).flatten().numpy(), expect, rtol=1e-6, atol=1e-7)
    g = export_to_nir(li, x, dt=DT)
    assert isinstance(g.nodes["LeakyIntegrator"].nodes["li"], nir.CubaLI)
    np.testing.assert_allclose(NirSim.run(g, DT, x).flatten(), expect, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("recurrent", [False, True])
def test_round_trip_through_a_file_gives_the_same_network(recurrent, tmp_path):
    net = _net(recurrent, seed=3)
    x = _spikes(seed=4)
    _, v = _run(net, x)
    g = export_to_nir(net, x, dt=DT)
    nir.write(tmp_path / "net.nir", g)
    net2 = import_from_nir(nir.read(tmp_path / "net.nir"))
    assert isinstance(net2, nn.Sequential)
    assert [type(m) for m in net2] == [DelayedRecurrentSynaptic, DelayedRecurrentSynaptic, LeakyIntegrator]
    for a, b in zip([*net.layers, net.out], net2):
        assert (a.alpha, a.beta, a.backward) == (b.alpha, b.beta, b.backward)
        assert torch.equal(a.weight, b.weight)
        assert torch.equal(a.effective_delays(), b.effective_delays())
        if recurrent and isinstance(a, DelayedRecurrentSynaptic):
            assert torch.equal(a.rec_weight, b.rec_weight) and torch.equal(a.rec_delays, b.rec_delays)
    with torch.no_grad():
        assert torch.equal(net2(x), v)


def test_zero_weight_connections_keep_their_delays():
    layer = DelayedRecurrentSynaptic(4, 3, max_delay=6, recurrent=True, delay_init="uniform")
    layer.quantize_delays()
    with torch.no_grad():
        layer.weight[0, 1] = 0.0
        layer.rec_weight[2, 0] = 0.0
    back = import_from_nir(export_to_nir(layer, torch.zeros(3, 1, 4), dt=DT))[0]
    assert torch.equal(back.delays, layer.delays)
    assert torch.equal(back.rec_delays, layer.rec_delays)


def test_graph_without_metadata_and_with_another_input_gain():
    # a graph written by another tool: no metadata, decays from the time constants, and an
    # input gain r twice the layer's: import folds it into the weights (the spikes are the
    # graph's, checked with the independent interpreter)
    net = _net(True, seed=5)
    x = _spikes(seed=6)
    g = export_to_nir(net, x, dt=DT)
    for key in ("layers_0", "layers_1", "out"):
        sub = g.nodes[key]
        sub.metadata = {"module": sub.metadata["module"]}
        neuron = sub.nodes["li" if key == "out" else "lif"]
        neuron.metadata = {}
        if key == "layers_1":
            neuron.r = neuron.r * 2.0
    want = NirSim.run(g, DT, x)
    net2 = import_from_nir(g)
    with torch.no_grad():
        got = net2(x).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # the doubled gain went into layer 1's weights
        np.testing.assert_allclose(net2[1].weight.numpy(), 2.0 * net.layers[1].weight.numpy(), rtol=1e-5)
    assert abs(net2[0].alpha - net.layers[0].alpha) < 1e-6


def test_return_mem_false_gives_the_spikes_alone():
    torch.manual_seed(0)
    a = DelayedRecurrentSynaptic(3, 5, max_delay=4, weight_scale=4.0)
    b = DelayedRecurrentSynaptic(3, 5, max_delay=4, return_mem=False)
    b.load_state_dict(a.state_dict())
    x = _spikes(T=30, B=2, F=3)
    spk, mem = a(x)
    assert float(spk.sum()) > 0
    assert torch.equal(b(x), spk)
    with pytest.raises(TypeError, match="return_mem"):
        DelayedRecurrentSynaptic(3, 5, max_delay=4, return_mem=1)


def test_max_hardware_delay_counts_recurrent_delays():
    layer = DelayedRecurrentSynaptic(2, 2, max_delay=9, recurrent=True, delay_init=1.0,
                                     rec_delay_init=torch.tensor([[1.0, 7.0], [2.0, 3.0]]))
    export_to_nir(layer, torch.zeros(3, 1, 2), dt=DT, max_hardware_delay=7)
    with pytest.raises(ValueError, match="max_hardware_delay.*recurrent"):
        export_to_nir(layer, torch.zeros(3, 1, 2), dt=DT, max_hardware_delay=6)


def test_import_errors_name_the_problem():
    x = _spikes(T=10, B=1, F=6)
    net = _net(False)
    g = export_to_nir(net, x, dt=DT)
    lif = g.nodes["layers_0"].nodes["lif"]
    lif.v_threshold = np.linspace(0.5, 1.5, lif.v_threshold.size)
    with pytest.raises(TypeError, match="one threshold"):
        import_from_nir(g)
    g = export_to_nir(net, x, dt=DT)
    g.nodes["layers_0"].nodes["lif"].v_leak = np.full(16, 0.1)
    with pytest.raises(TypeError, match="v_leak"):
        import_from_nir(g)
    g = export_to_nir(net, x, dt=DT)
    nodes = g.nodes["layers_0"].nodes
    nodes["lif"].metadata = {}
    nodes["lif"].tau_syn = np.linspace(2e-3, 9e-3, 16)
    with pytest.raises(TypeError, match="one decay"):
        import_from_nir(g)
    # an EventProp layer between snnTorch step modules
    mixed = nn.Sequential(DelayedRecurrentSynaptic(3, 4, max_delay=2), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(TypeError, match="mixes EventProp layers"):
        import_from_nir(export_to_nir(mixed, torch.zeros(4, 1, 3), dt=DT))


def test_trained_eventprop_preset_network_exports():
    # the CLI's EventProp model as built from a preset (counts as input: the first layer's
    # spike-count planes are the same current as the counts through one weight matrix)
    from snn_delays_ext.train.config import make_config
    from snn_delays_ext.train.models import build_model

    cfg = make_config("braille-eventprop", None, {"hidden": [8, 8]})
    torch.manual_seed(0)
    net = build_model(cfg.model.name, 24, 27, cfg).eval()
    for layer in [*net.layers, net.out]:
        layer.quantize_delays()
    counts = torch.poisson(torch.full((30, 2, 24), 0.4))
    assert float(counts.max()) > 1
    with torch.no_grad():
        h = counts
        for layer in net.layers:
            h = layer(h)[0]
        v = net.out(h)
    g = export_to_nir(net, torch.zeros(1, 1, 24), dt=cfg.data.dt)
    np.testing.assert_allclose(NirSim.run(g, cfg.data.dt, counts), v.double().numpy(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(import_from_nir(g)(counts), v, atol=1e-6)
