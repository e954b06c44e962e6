"""NIR export and import of the Norse-flavour modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("norse")
from norse.torch import LIF, LIFCell, LIFParameters, Lift, SequentialState  # noqa: E402

import snn_delays_ext as sde  # noqa: E402
from snn_delays_ext.nir import export_to_nir, import_from_nir  # noqa: E402
from snn_delays_ext.norse import (  # noqa: E402
    DelayedLIF,
    DelayedLIFCell,
    DelayedLIFRecurrent,
    DelayedLIFRecurrentCell,
)

from _nir_sim import NirSim  # noqa: E402

DT = 1e-3
P = LIFParameters(v_th=torch.as_tensor(0.3))


def _x(T=100, B=2, F=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, F, generator=g) < 0.4).float() * 3.0


def _step_net():
    return SequentialState(
        DelayedLIFCell(4, 8, max_delay=5, p=P, delay_type="dendritic", bias=True),
        DelayedLIFRecurrentCell(8, 6, max_delay=4, p=P, delay_type="synaptic", autapses=True),
        torch.nn.Linear(6, 3),
        LIFCell(p=P),
    )


def _seq_net():
    return SequentialState(
        DelayedLIF(4, 8, max_delay=5, p=P, delay_type="synaptic"),
        DelayedLIFRecurrent(8, 6, max_delay=4, p=P, delay_type="axonal"),
        Lift(torch.nn.Linear(6, 3)),
        LIF(p=P),
    )


def _run_steps(net, x):
    s, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, s = net(x[t], s)
            out.append(z)
    return torch.stack(out)


def test_norse_step_cells_round_trip_identical_spikes(tmp_path):
    torch.manual_seed(0)
    net = _step_net()
    sde.quantize_delays(net)
    x = _x()
    g = export_to_nir(net, x[0], dt=DT)
    nir.write(str(tmp_path / "n.nir"), g)
    net2 = import_from_nir(nir.read(str(tmp_path / "n.nir")))
    assert isinstance(net2, SequentialState)
    assert [type(m).__name__ for m in net2] == ["DelayedLIFCell", "DelayedLIFRecurrentCell", "Linear", "LIFCell"]
    z1, z2 = _run_steps(net, x), _run_steps(net2, x)
    assert torch.equal(z1, z2)
    assert 0 < float(z1.mean()) < 1
    assert net2[1].autapses and torch.equal(net2[1].delays, net[1].delays)


def test_norse_sequence_modules_round_trip_identical_spikes():
    torch.manual_seed(1)
    net = _seq_net()
    sde.quantize_delays(net)
    x = _x(seed=1)
    net2 = import_from_nir(export_to_nir(net, x, dt=DT))
    assert [type(m).__name__ for m in net2] == ["DelayedLIF", "DelayedLIFRecurrent", "Lift", "LIF"]
    with torch.no_grad():
        z1, _ = net(x)
        z2, _ = net2(x)
    assert torch.equal(z1, z2)
    assert 0 < float(z1.mean()) < 1
    assert not net2[1].autapses


def test_norse_export_is_the_euler_step_of_nir_cubalif():
    """Norse's LIF is exactly the Euler step of NIR's CubaLIF with w_in = tau_syn / dt, r = 1:
    simulate the exported graph with NIR's equations (metadata ignored) and compare."""
    torch.manual_seed(2)
    net = _seq_net()
    sde.quantize_delays(net)
    x = _x(T=60, seed=2)
    g = export_to_nir(net, x, dt=DT)
    lif = g.nodes["1"].nodes["lif"]
    np.testing.assert_allclose(lif.tau_mem, 1 / 100.0)
    np.testing.assert_allclose(lif.tau_syn, 1 / 200.0)
    np.testing.assert_allclose(lif.w_in, (1 / 200.0) / DT)
    ref = NirSim.run(g, DT, x)
    with torch.no_grad():
        z, _ = net(x)
    assert 0 < float(z.mean()) < 1
    np.testing.assert_array_equal(z.numpy(), ref)


def test_norse_dt_must_agree():
    net = SequentialState(DelayedLIFCell(2, 3, max_delay=2, dt=1e-3))
    with pytest.raises(ValueError, match="dt"):
        export_to_nir(net, torch.rand(1, 2), dt=2e-3)


def test_norse_own_recurrent_cell_and_lag_one_delayed_cell_export_alike():
    from norse.torch import LIFRecurrentCell

    torch.manual_seed(3)
    ref = SequentialState(LIFRecurrentCell(4, 5, p=P), torch.nn.Linear(5, 2), LIFCell(p=P))
    ours = SequentialState(
        DelayedLIFRecurrentCell(4, 5, max_delay=3, p=P, delay_init=1.0,
                                input_weights=ref[0].input_weights.detach(),
                                recurrent_weights=ref[0].recurrent_weights.detach()),
        torch.nn.Linear(5, 2), LIFCell(p=P),
    )
    ours[1].load_state_dict(ref[1].state_dict())
    x = _x(T=50, seed=3)
    g_ref = export_to_nir(ref, x[0], dt=DT)
    g_ours = export_to_nir(ours, x[0], dt=DT)
    for g in (g_ref, g_ours):  # lag 1 everywhere: the recurrent edge alone, no Delay node
        assert not any(isinstance(v, nir.Delay) for v in g.nodes["0"].nodes.values())
        assert ("rec_affine", "lif") in g.nodes["0"].edges
    np.testing.assert_array_equal(g_ref.nodes["0"].nodes["rec_affine"].weight,
                                  g_ours.nodes["0"].nodes["rec_affine"].weight)
    back = import_from_nir(g_ref)
    assert type(back[0]) is LIFRecurrentCell and not back[0].autapses
    z_ref = _run_steps(ref, x)
    assert 0 < float(z_ref.mean()) < 1
    assert torch.equal(_run_steps(back, x), z_ref)
    assert torch.equal(_run_steps(ours, x), z_ref)


def test_norse_zero_weight_and_autapse_delays_survive_round_trip():
    """Exactly-zero weights (pruned inputs; the diagonal without autapses) keep their delays."""
    torch.manual_seed(4)
    net = SequentialState(
        DelayedLIFCell(4, 6, max_delay=5, p=P, delay_type="synaptic"),
        DelayedLIFRecurrentCell(6, 5, max_delay=4, p=P, delay_type="synaptic", autapses=False),
    )
    sde.quantize_delays(net)
    with torch.no_grad():
        net[0].weight[:, 2] = 0.0
        net[0].delays[:, 2] = 5.0  # only the pruned input has lag 5: an all-zero branch
        net[1].delays.copy_(torch.randint(1, 5, (5, 5)).float())
    assert bool((net[1].delays.diagonal() > 1).any())  # lost before (zero diagonal weights)
    x = _x(T=60, seed=4)
    net2 = import_from_nir(export_to_nir(net, x[0], dt=DT))
    assert torch.equal(net2[0].delays, net[0].delays)
    assert torch.equal(net2[1].delays, net[1].delays)
    z1 = _run_steps(net, x)
    assert 0 < float(z1.mean()) < 1
    assert torch.equal(_run_steps(net2, x), z1)


def test_norse_import_refuses_a_cubalif_input_gain_norse_cannot_hold():
    """Norse's LIF adds its input to the current with gain 1: a Norse-flavour graph whose
    CubaLIF has ``(dt / tau_syn) w_in r != 1`` (edited, or from another tool) is refused, not
    imported at another gain."""
    torch.manual_seed(3)
    net = _step_net()
    sde.quantize_delays(net)
    g = export_to_nir(net, _x()[0], dt=DT)
    import_from_nir(g)  # the exporter's own convention imports
    key = next(k for k, v in g.nodes.items() if isinstance(v, nir.NIRGraph)
               and any(isinstance(n, nir.CubaLIF) for n in v.nodes.values()))
    lif_key = next(k for k, n in g.nodes[key].nodes.items() if isinstance(n, nir.CubaLIF))
    node = g.nodes[key].nodes[lif_key]
    node.w_in = np.asarray(node.w_in) * 2.0
    with pytest.raises(TypeError, match=rf"node '{key}'.*input gain.*Norse LIF"):
        import_from_nir(g)
