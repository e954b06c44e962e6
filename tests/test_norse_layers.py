"""Norse flavour: equivalence with Norse's own cells, SequentialState / Lift, training."""

from __future__ import annotations

import pytest
import torch

norse = pytest.importorskip("norse")
from norse.torch import LIFCell, LIFParameters, LIFRecurrentCell, Lift, SequentialState  # noqa: E402

import snn_delays_ext as sde  # noqa: E402
from snn_delays_ext.norse import (  # noqa: E402
    DelayedLIF,
    DelayedLIFCell,
    DelayedLIFRecurrent,
    DelayedLIFRecurrentCell,
    DelayedLIFState,
)


def _drive(T, B, I, seed=0, rate=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, I, generator=g) < rate).float()


@pytest.mark.parametrize("autapses", [False, True])
@pytest.mark.parametrize("delay_type", ["axonal", "synaptic"])
def test_lag_one_equals_norse_lif_recurrent_cell(autapses, delay_type):
    torch.manual_seed(1)
    I, N, B, T = 5, 7, 3, 50
    p = LIFParameters(v_th=torch.as_tensor(0.3))
    w_in = torch.randn(N, I) * 2.0
    w_rec = torch.randn(N, N)  # nonzero diagonal: both must drop it unless autapses
    ref = LIFRecurrentCell(I, N, p=p, autapses=autapses, input_weights=torch.nn.Parameter(w_in.clone()),
                           recurrent_weights=torch.nn.Parameter(w_rec.clone()))
    shape = (N,) if delay_type == "axonal" else (N, N)
    ours = DelayedLIFRecurrentCell(I, N, max_delay=4, p=p, autapses=autapses, delay_type=delay_type,
                                   input_weights=w_in, recurrent_weights=w_rec,
                                   delay_init=torch.ones(shape))
    x = _drive(T, B, I)
    s_ref = s_ours = None
    total = 0.0
    for t in range(T):
        z_ref, s_ref = ref(x[t], s_ref)
        z_ours, s_ours = ours(x[t], s_ours)
        assert torch.equal(z_ref, z_ours), f"spikes differ at step {t}"
        # same equations; the delayed recurrent current is an einsum over (presynaptic, lag)
        # whose summation order (and, axonal, output layout before F.linear) differs from
        # Norse's F.linear(z, W): states agree to float rounding, not bit for bit
        torch.testing.assert_close(s_ours.v, s_ref.v)
        torch.testing.assert_close(s_ours.i, s_ref.i)
        total += float(z_ref.detach().sum())
    assert total > 10, "the comparison must include spikes"
    # autapses: Norse zeroes the diagonal; the recurrent weights we use must agree
    torch.testing.assert_close(ours.effective_recurrent_weights(), ref.recurrent_weights.detach())


def test_recurrent_delay_shifts_arrival_hand_computed():
    # one input neuron drives neuron 0 hard once; neuron 0 -> neuron 1 with axonal delay 3
    p = LIFParameters(tau_syn_inv=torch.as_tensor(1000.0), tau_mem_inv=torch.as_tensor(1000.0),
                      v_th=torch.as_tensor(0.5))
    w_in = torch.tensor([[1.0], [0.0]])
    w_rec = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    cell = DelayedLIFRecurrentCell(1, 2, max_delay=5, p=p, dt=0.001, input_weights=w_in,
                                   recurrent_weights=w_rec, delay_init=torch.tensor([3.0, 1.0]))
    x = torch.zeros(10, 1, 1)
    x[0] = 1.0
    s = None
    spikes = []
    for t in range(10):
        z, s = cell(x[t], s)
        spikes.append(z[0].tolist())
    # tau = dt: v <- i_jump, i <- 0 each step: neuron 0 fires at t=0, neuron 1 at t=0+3
    assert [t for t in range(10) if spikes[t][0]] == [0]
    assert [t for t in range(10) if spikes[t][1]] == [3]


def test_sequence_equals_cell_loop_and_lift():
    torch.manual_seed(2)
    seq = DelayedLIFRecurrent(3, 6, max_delay=6, p=LIFParameters(v_th=torch.as_tensor(0.2)),
                              delay_type="synaptic", sigma=1.0)
    cell = DelayedLIFRecurrentCell(3, 6, max_delay=6, p=LIFParameters(v_th=torch.as_tensor(0.2)),
                                   delay_type="synaptic", sigma=1.0)
    cell.load_state_dict(seq.state_dict())
    x = _drive(30, 2, 3, seed=3, rate=0.5) * 3
    z_seq, s_seq = seq(x)
    z_lift, s_lift = Lift(cell)(x)
    assert torch.equal(z_seq, z_lift)
    assert isinstance(s_lift, DelayedLIFState)
    torch.testing.assert_close(s_seq.v, s_lift.v)
    # a sequence cut in two with the state carried gives the same spikes
    z1, s1 = seq(x[:13])
    z2, _ = seq(x[13:], s1)
    assert torch.equal(torch.cat([z1, z2]), z_seq)
    assert z_seq.sum() > 0


def test_feed_forward_delays_zero_equals_linear_then_lif_cell():
    torch.manual_seed(4)
    p = LIFParameters(v_th=torch.as_tensor(0.2))
    ours = DelayedLIFCell(4, 5, max_delay=3, p=p, delay_init=0.0)
    lin = torch.nn.Linear(4, 5, bias=False)
    with torch.no_grad():
        lin.weight.copy_(ours.weight)
    ref = LIFCell(p=p)
    x = _drive(40, 2, 4, seed=5, rate=0.5)
    s1 = s2 = None
    n = 0.0
    for t in range(40):
        z1, s1 = ours(x[t], s1)
        z2, s2 = ref(lin(x[t]), s2)
        assert torch.equal(z1, z2)
        n += float(z1.detach().sum())
    assert n > 0


def test_feed_forward_integer_delay_shifts_output():
    torch.manual_seed(6)
    p = LIFParameters(v_th=torch.as_tensor(0.2))
    d0 = DelayedLIF(3, 4, max_delay=8, p=p, delay_type="axonal", delay_init=0.0)
    d5 = DelayedLIF(3, 4, max_delay=8, p=p, delay_type="axonal", delay_init=5.0)
    d5.load_state_dict(d0.state_dict() | {"delays": torch.full((3,), 5.0)})
    x = _drive(30, 2, 3, seed=7, rate=0.5)
    z0, _ = d0(x)
    z5, _ = d5(x)
    assert torch.equal(z5[:5], torch.zeros_like(z5[:5]))
    assert torch.equal(z5[5:], z0[:-5])
    # the sequence module equals its step cell
    cell = DelayedLIFCell(3, 4, max_delay=8, p=p, delay_type="axonal")
    cell.load_state_dict(d5.state_dict())
    z_lift, _ = Lift(cell)(x)
    assert torch.equal(z_lift, z5)


def test_sequential_state_plugs_in_and_utils_find_layers():
    torch.manual_seed(8)
    net = SequentialState(
        DelayedLIF(3, 8, max_delay=4),
        DelayedLIFRecurrent(8, 6, max_delay=5),
        Lift(torch.nn.Linear(6, 2)),
    )
    assert net.stateful_layers == [True, True, False]
    y, state = net(torch.rand(12, 2, 3))
    assert y.shape == (12, 2, 2)
    assert len(state) == 3 and isinstance(state[1], DelayedLIFState)
    assert len(sde.delay_parameters(net)) == 2
    q = sde.quantize_delays(net)
    assert all(torch.equal(d, torch.floor(d + 0.5)) for d in q.values())


def test_bad_arguments_named():
    with pytest.raises(ValueError, match="dt"):
        DelayedLIFRecurrentCell(2, 3, max_delay=2, dt=0.0)
    with pytest.raises(TypeError, match="p"):
        DelayedLIFRecurrentCell(2, 3, max_delay=2, p={"v_th": 1.0})
    with pytest.raises(ValueError, match="max_delay"):
        DelayedLIFCell(2, 3, max_delay=0)
    with pytest.raises(ValueError, match="delay_type"):
        DelayedLIFRecurrent(2, 3, max_delay=2, delay_type="dendritic")
    with pytest.raises(ValueError, match="input_tensor"):
        DelayedLIFRecurrentCell(2, 3, max_delay=2)(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="p.method"):
        DelayedLIFRecurrent(2, 3, max_delay=2, p=LIFParameters(method="adjoint"))
    with pytest.raises(ValueError, match="recurrent_weights"):
        DelayedLIFRecurrentCell(2, 3, max_delay=2, recurrent_weights=torch.zeros(2, 2))


def test_sequential_state_model_trains_loss_decreases_delays_move():
    """Norse SequentialState model: which of two channels fired (8 steps before the end)."""
    torch.manual_seed(0)
    T, B = 20, 16
    p = LIFParameters(v_th=torch.as_tensor(0.3))
    net = SequentialState(
        DelayedLIF(2, 12, max_delay=8, p=p, delay_type="synaptic", sigma=1.0),
        DelayedLIFRecurrent(12, 12, max_delay=6, p=p, delay_type="axonal", sigma=1.0),
        Lift(torch.nn.Linear(12, 2)),
    )
    x = torch.zeros(T, B, 2)
    labels = torch.randint(0, 2, (B,))
    x[T - 8, torch.arange(B), labels] = 5.0
    d0 = [d.detach().clone() for d in sde.delay_parameters(net)]
    assert len(d0) == 2
    opt = torch.optim.Adam([
        {"params": sde.weight_parameters(net), "lr": 1e-2},
        {"params": sde.delay_parameters(net), "lr": 0.1},
    ])
    losses = []
    for _ in range(40):
        out, _ = net(x)
        loss = torch.nn.functional.cross_entropy(out.sum(0) / T, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sde.clamp_delays_(net)
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    moved = [float((d - d1.detach()).abs().max()) for d, d1 in zip(d0, sde.delay_parameters(net))]
    assert all(m > 1e-3 for m in moved), moved


def test_functional_step_equals_module():
    from snn_delays_ext.norse import delayed_lif_step

    torch.manual_seed(9)
    cell = DelayedLIFRecurrentCell(3, 5, max_delay=4, delay_type="synaptic", autapses=True,
                                   p=LIFParameters(v_th=torch.as_tensor(0.2)), sigma=0.5)
    x = _drive(20, 2, 3, seed=9, rate=0.6) * 2
    s_mod = s_fn = None
    for t in range(20):
        z1, s_mod = cell(x[t], s_mod)
        if s_fn is None:
            s_fn = cell.initial_state(x[t])
        z2, s_fn = delayed_lif_step(x[t], s_fn, cell.input_weights, cell.recurrent_weights,
                                    cell.delays, cell.p, cell.dt, cell.max_delay, "synaptic", 0.5)
        assert torch.equal(z1, z2)
        assert torch.equal(s_mod.past, s_fn.past)


@pytest.mark.parametrize("autapses", [False, True])
def test_lag_one_gradients_equal_norse(autapses):
    """Same surrogate gradients as Norse's LIFRecurrentCell (the autapse diagonal stays 0)."""
    torch.manual_seed(11)
    I, N, B, T = 3, 5, 2, 25
    p = LIFParameters(v_th=torch.as_tensor(0.3))
    w_in, w_rec = torch.randn(N, I) * 2.0, torch.randn(N, N)
    ref = LIFRecurrentCell(I, N, p=p, autapses=autapses, input_weights=torch.nn.Parameter(w_in.clone()),
                           recurrent_weights=torch.nn.Parameter(w_rec.clone()))
    ours = DelayedLIFRecurrentCell(I, N, max_delay=3, p=p, autapses=autapses, input_weights=w_in,
                                   recurrent_weights=w_rec, delay_init=1.0)
    x = _drive(T, B, I, seed=12, rate=0.5)
    for cell in (ref, ours):
        s, loss = None, 0.0
        for t in range(T):
            z, s = cell(x[t], s)
            loss = loss + (z * torch.arange(1.0, N + 1)).sum() + s.v.pow(2).sum()
        loss.backward()
    torch.testing.assert_close(ours.input_weights.grad, ref.input_weights.grad)
    torch.testing.assert_close(ours.recurrent_weights.grad, ref.recurrent_weights.grad)
    assert float(ref.recurrent_weights.grad.abs().sum()) > 0
    if not autapses:
        assert torch.equal(torch.diagonal(ours.recurrent_weights.grad), torch.zeros(N))
    # the delays are in the graph too (at exactly integer lags with sigma = 0 the triangle's
    # gradient is 0 by construction; the training test covers delays that move)
    assert ours.delays.grad is not None
