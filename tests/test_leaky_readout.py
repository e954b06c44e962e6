"""``LeakyReadout``: the non-spiking leaky-integrator readout and its NIR ``LI`` form."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import snntorch.utils
import torch

import snn_delays_ext as sde
from snn_delays_ext import LeakyReadout


def test_hand_computed_steps_and_sequence():
    li = LeakyReadout(beta=0.5)
    x = torch.tensor([[[2.0]], [[0.0]], [[1.0]], [[-1.0]]])
    # v: 2, 1, 1.5, -0.25
    assert li(x).flatten().tolist() == [2.0, 1.0, 1.5, -0.25]
    sde.reset(li)
    steps = [li(x[t]).item() for t in range(4)]
    assert steps == [2.0, 1.0, 1.5, -0.25]


def test_per_neuron_decays():
    beta = torch.tensor([0.0, 0.3, 0.9, 1.0])
    x = torch.randn(7, 3, 4)
    got = LeakyReadout(beta)(x)
    want = torch.zeros(7, 3, 4)
    for j in range(4):
        v = torch.zeros(3)
        for t in range(7):
            v = float(beta[j]) * v + x[t, :, j]
            want[t, :, j] = v
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got[:, :, 0], x[:, :, 0])             # decay 0: the input itself
    torch.testing.assert_close(got[:, :, 3], x[:, :, 3].cumsum(0))   # decay 1: the running sum


def test_numpy_numbers_are_decays():
    assert LeakyReadout(np.float32(0.5))(torch.ones(2, 1, 1)).flatten().tolist() == [1.0, 1.5]


def test_explicit_state_and_gradient():
    li = LeakyReadout(0.8, init_hidden=False)
    x = torch.randn(5, 2, 3, requires_grad=True)
    v0 = torch.randn(2, 3)
    v = li(x, v0)
    # v_T = 0.8^T v0 + sum_t 0.8^(T-1-t) x_t: its gradient wrt x_t is 0.8^(T-1-t)
    torch.testing.assert_close(v[-1], 0.8 ** 5 * v0 + sum(0.8 ** (4 - t) * x[t] for t in range(5)))
    v[-1].sum().backward()
    want = torch.tensor([0.8 ** (4 - t) for t in range(5)]).view(5, 1, 1).expand(5, 2, 3)
    torch.testing.assert_close(x.grad, want)
    assert li.mem is None  # nothing kept without init_hidden


def test_reset_by_every_reset_function():
    li = LeakyReadout(0.9)
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), li)
    net(torch.ones(1, 2))
    assert li.mem is not None
    sde.reset(net)
    assert li.mem is None
    net(torch.ones(1, 2))
    snntorch.utils.reset(net)
    assert li.mem is None


@pytest.mark.parametrize("beta, err", [(1.5, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                       (True, TypeError), ("0.9", TypeError), (torch.ones(2, 2), ValueError)])
def test_bad_decays(beta, err):
    with pytest.raises(err, match="beta"):
        LeakyReadout(beta)


def test_bad_inputs():
    li = LeakyReadout(torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="input_"):
        li(torch.ones(2, 4))                      # 4 features, 3 decays
    with pytest.raises(ValueError, match="input_"):
        li(torch.ones(3))                         # no batch dimension
    with pytest.raises(TypeError, match="input_"):
        li(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="mem"):
        li(torch.ones(2, 3), torch.zeros(2, 3))   # init_hidden keeps its own
    li(torch.ones(2, 3))
    with pytest.raises(ValueError, match="mem"):
        li(torch.ones(4, 3))                      # a new batch size without a reset
    with pytest.raises(TypeError, match="init_hidden"):
        LeakyReadout(0.5, init_hidden=1)


# --------------------------------------------------------------------------------------------
# NIR
nir = pytest.importorskip("nir")


def _chain():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        sde.DelayedLinear(3, 5, max_delay=4, delay_init="uniform"),
        snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        torch.nn.Linear(5, 2), LeakyReadout(torch.tensor([0.6, 1.0])))
    sde.quantize_delays(net)
    return net


def _steps(net, x):
    sde.reset(net)
    with torch.no_grad():
        return torch.stack([net(x[t]) for t in range(x.shape[0])])


def test_export_is_nirs_li_and_an_independent_interpreter_agrees():
    from _nir_sim import NirSim

    net = _chain()
    g = sde.export_to_nir(net, torch.rand(1, 3), dt=1e-3)
    li = g.nodes["3"]
    assert isinstance(li, nir.LI)
    # tau = dt / (1 - beta): 2.5 ms; a decay of 1 is 2**24 steps; r = tau / dt
    np.testing.assert_allclose(li.tau, [2.5e-3, 2.0 ** 24 * 1e-3], rtol=1e-6)
    np.testing.assert_allclose(li.r, [2.5, 2.0 ** 24], rtol=1e-6)
    x = (torch.rand(25, 4, 3) < 0.4).float() * 2
    want = _steps(net, x)
    np.testing.assert_allclose(NirSim.run(g, 1e-3, x), want.double().numpy(), rtol=1e-5, atol=1e-5)
    back = sde.import_from_nir(g)
    assert isinstance(back[-1], LeakyReadout) and back[-1].beta.tolist() == pytest.approx([0.6, 1.0])
    assert torch.equal(_steps(back, x), want)


def test_import_of_a_foreign_li_folds_its_gain_into_the_weights():
    from _nir_sim import NirSim

    # an LI written by another tool: tau 4 ms, r = 2 (so (dt / tau) r = 0.5 per step), no metadata
    w = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = nir.NIRGraph.from_list(nir.Affine(weight=w, bias=np.array([0.1, 0.0])),
                               nir.LI(tau=np.array([4e-3, 4e-3]), r=np.array([2.0, 2.0]), v_leak=np.zeros(2)))
    net = sde.import_from_nir(g, dt=1e-3)
    assert net[-1].beta.item() == pytest.approx(0.75)
    x = torch.randn(10, 3, 2)
    np.testing.assert_allclose(_steps(net, x).double().numpy(), NirSim.run(g, 1e-3, x), rtol=1e-5, atol=1e-5)


def test_import_refuses_what_it_cannot_represent():
    li = nir.LI(tau=np.array([4e-3]), r=np.array([2.0]), v_leak=np.array([0.5]))
    with pytest.raises(TypeError, match="v_leak"):
        sde.import_from_nir(nir.NIRGraph.from_list(nir.Affine(weight=np.ones((1, 1)), bias=np.zeros(1)), li), dt=1e-3)
    li = nir.LI(tau=np.array([4e-3]), r=np.array([2.0]), v_leak=np.array([0.0]))
    g = nir.NIRGraph.from_list(li)
    with pytest.raises(TypeError, match="gain"):  # nothing before it to fold the gain into
        sde.import_from_nir(g, dt=1e-3)


def test_norse_flavour_imports_lis_as_norse_cells():
    norse = pytest.importorskip("norse.torch")
    from _nir_sim import NirSim

    g = nir.NIRGraph.from_list(nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                               nir.LI(tau=np.array([4e-3, 8e-3]), r=np.array([2.0, 1.0]), v_leak=np.zeros(2)))
    g.metadata = {"flavour": "norse", "dt": 1e-3}
    net = sde.import_from_nir(g)
    assert isinstance(net[-1], norse.LIBoxCell)
    x = torch.randn(6, 2, 2)
    state, out = None, []
    with torch.no_grad():
        for t in range(6):
            y, state = net(x[t], state)
            out.append(y)
    np.testing.assert_allclose(torch.stack(out).double().numpy(), NirSim.run(g, 1e-3, x), rtol=1e-5, atol=1e-6)


def test_norse_sequence_graphs_refuse_an_li():
    pytest.importorskip("norse.torch")
    g = nir.NIRGraph.from_list(nir.Affine(weight=np.eye(2), bias=np.zeros(2)),
                               nir.LI(tau=np.array([4e-3, 8e-3]), r=np.array([2.0, 1.0]), v_leak=np.zeros(2)))
    g.metadata = {"flavour": "norse", "norse_mode": "sequence", "dt": 1e-3}
    with pytest.raises(TypeError, match="Norse sequence graph"):
        sde.import_from_nir(g)
