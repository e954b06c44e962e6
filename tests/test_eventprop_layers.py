"""EventProp layers, losses, helpers, edge cases and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import snn_delays_ext as sde
from snn_delays_ext.eventprop import (
    DelayedRecurrentSynaptic,
    EventPropConfig,
    LeakyIntegrator,
    bump_silent_neurons_,
    eventprop_lif,
    first_spike_time_loss,
    first_spike_times,
    loss_shaping_ce,
    max_voltage_ce,
    predict_first_spike,
)

D64 = torch.float64


def _spikes(T, B, F, p=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, F, generator=g) < p).float()


# -- layers -----------------------------------------------------------------------------------
def test_layer_eventprop_and_surrogate_share_the_forward():
    torch.manual_seed(0)
    a = DelayedRecurrentSynaptic(6, 10, max_delay=8, backward="eventprop", weight_scale=6.0, rec_weight_scale=2.0)
    b = DelayedRecurrentSynaptic(6, 10, max_delay=8, backward="surrogate")
    b.load_state_dict(a.state_dict())
    x = _spikes(60, 4, 6)
    sa, ma = a(x)
    sb, mb = b(x)
    assert sa.sum() > 10
    torch.testing.assert_close(sa, sb)
    torch.testing.assert_close(ma, mb, rtol=1e-5, atol=1e-5)
    (ma.sum() + sa.sum()).backward()
    (mb.sum() + sb.sum()).backward()
    for p in (a.weight, a.delays, a.rec_weight, a.rec_delays, b.weight, b.delays, b.rec_weight, b.rec_delays):
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_layers_chain_and_gradients_reach_the_first_layer():
    torch.manual_seed(1)
    h = DelayedRecurrentSynaptic(4, 12, max_delay=10, backward="eventprop", weight_scale=8.0)
    ro = LeakyIntegrator(12, 3, max_delay=10, backward="eventprop")
    x = _spikes(50, 5, 4, p=0.3)
    spk, _ = h(x)
    assert spk.sum() > 0
    loss = loss_shaping_ce(ro(spk), torch.tensor([0, 1, 2, 0, 1]))
    loss.backward()
    assert h.weight.grad.abs().sum() > 0 and h.delays.grad.abs().sum() > 0
    assert h.rec_weight.grad.abs().sum() > 0


def test_decays_from_time_constants_and_snntorch_names():
    layer = DelayedRecurrentSynaptic(2, 3, max_delay=4, tau_syn=5.0, tau_mem=20.0, dt=1.0)
    assert layer.alpha == pytest.approx(math.exp(-1 / 5)) and layer.beta == pytest.approx(math.exp(-1 / 20))
    layer = DelayedRecurrentSynaptic(2, 3, max_delay=4, alpha=0.5, beta=0.9)
    assert (layer.alpha, layer.beta) == (0.5, 0.9)


def test_delay_helpers_cover_recurrent_delays():
    layer = DelayedRecurrentSynaptic(3, 4, max_delay=5, backward="eventprop")
    with torch.no_grad():
        layer.delays.fill_(9.0)
        layer.rec_delays.fill_(-3.0)
    net = torch.nn.Sequential(layer, )
    sde.clamp_delays_(net)
    assert float(layer.delays.detach().max()) == 5.0 and float(layer.rec_delays.detach().min()) == 1.0
    assert {id(p) for p in layer.delay_parameters()} == {id(layer.delays), id(layer.rec_delays)}
    assert all(id(p) not in {id(layer.delays), id(layer.rec_delays)} for p in layer.weight_parameters())
    with torch.no_grad():
        layer.delays.fill_(2.5)
    layer.quantize_delays()
    assert float(layer.delays.detach()[0, 0]) == 3.0
    # state_dict round trip
    other = DelayedRecurrentSynaptic(3, 4, max_delay=5, backward="eventprop")
    other.load_state_dict(layer.state_dict())
    for p, q in zip(layer.parameters(), other.parameters()):
        assert torch.equal(p, q)


# -- edge cases -------------------------------------------------------------------------------
def test_no_spikes_at_all():
    layer = DelayedRecurrentSynaptic(3, 4, max_delay=5, backward="eventprop")
    x = torch.zeros(20, 2, 3)
    spk, mem = layer(x)
    assert spk.sum() == 0 and mem.abs().sum() == 0
    (mem.sum() + spk.sum()).backward()
    assert layer.weight.grad.abs().sum() == 0 and layer.rec_delays.grad.abs().sum() == 0


def test_spike_in_last_step():
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=1.0, max_delay=3, syn_scale=1.0)
    T = 6
    x = torch.zeros(T, 1, 1, dtype=D64)
    x[T - 2] = 1.0  # delay 1 -> arrives at the last step: U = 0.5 * 4 = 2 >= 1
    w = torch.tensor([[4.0]], dtype=D64, requires_grad=True)
    d = torch.tensor([[1.0]], dtype=D64, requires_grad=True)
    xr = x.clone().requires_grad_()
    spk, mem = eventprop_lif(xr, w, d, config=cfg)
    assert spk[:, 0, 0].tolist() == [0, 0, 0, 0, 0, 1]
    # a spike-time loss on the last spike: dL/dt = 1 -> gradients finite and of the right sign
    t = first_spike_times(spk)
    t.sum().backward()
    assert torch.isfinite(w.grad).all() and float(w.grad) < 0  # more weight -> earlier spike
    assert float(d.grad) > 0 and float(xr.grad[T - 2, 0, 0]) > 0  # later arrival -> later spike


def test_delays_at_max_delay_and_arrivals_after_the_end_are_dropped():
    cfg = EventPropConfig(alpha=0.8, beta=0.9, threshold=math.inf, max_delay=5, syn_scale=1.0)
    x = torch.zeros(10, 1, 2, dtype=D64)
    x[2, 0, 0] = 1.0  # arrives at 2 + 5 = 7
    x[6, 0, 1] = 1.0  # would arrive at 11 > T - 1: dropped
    w = torch.tensor([[1.0, 1.0]], dtype=D64, requires_grad=True)
    d = torch.tensor([[5.0, 7.5]], dtype=D64, requires_grad=True)  # the second is clamped to 5
    _, mem = eventprop_lif(x, w, d, config=cfg)
    assert mem[:7].abs().sum() == 0 and mem[7, 0, 0] > 0
    mem.sum().backward()
    assert w.grad[0, 0] > 0 and w.grad[0, 1] == 0 and d.grad[0, 1] == 0


def test_spike_buffer_overflow_raises():
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=0.1, max_delay=2, syn_scale=1.0, max_spikes=3)
    x = torch.ones(10, 1, 1)
    with pytest.raises(RuntimeError, match="spike buffer overflow"):
        eventprop_lif(x, torch.tensor([[5.0]]), torch.tensor([[0.0]]), config=cfg)


def test_tiny_denominator_is_guarded():
    # a grazing crossing: the rise at the spike step is tiny; the floor bounds the jump
    cfg_kw = dict(alpha=0.5, beta=0.5, threshold=1.0, max_delay=2, syn_scale=1.0)
    x = torch.zeros(8, 1, 1, dtype=D64)
    x[0] = 1.0
    # U_1 = 0.25 w (V_0 = 0.5 * 0.5 w... ) pick w so that the peak sits just above threshold
    lo, hi = 0.5, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        s, _ = eventprop_lif(x, torch.tensor([[mid]], dtype=D64), torch.tensor([[0.0]], dtype=D64),
                             config=EventPropConfig(**cfg_kw))
        hi, lo = (mid, lo) if s.sum() > 0 else (hi, mid)
    w = torch.tensor([[hi]], dtype=D64, requires_grad=True)
    floor = 1e-2
    spk, mem = eventprop_lif(x, w, torch.tensor([[0.0]], dtype=D64), config=EventPropConfig(min_denominator=floor, **cfg_kw))
    assert spk.sum() == 1
    first_spike_times(spk).sum().backward()
    assert torch.isfinite(w.grad).all()
    assert abs(float(w.grad)) < 10.0 / floor


def test_spike_count_regulariser_pushes_rates_towards_target():
    torch.manual_seed(0)
    x = _spikes(40, 4, 5, p=0.3)
    for target, sign in ((0.0, 1.0), (1000.0, -1.0)):
        layer = DelayedRecurrentSynaptic(5, 6, max_delay=4, backward="eventprop", recurrent=False,
                                         weight_scale=10.0, reg_strength=1.0, reg_target=target)
        with torch.no_grad():
            layer.weight.abs_()
        spk, _ = layer(x)
        assert spk.sum() > 0
        (spk * 0).sum().backward()  # no task loss: only the regulariser acts
        # too many spikes: descent lowers the weights (positive gradient), too few: raises them
        assert sign * float(layer.weight.grad.sum()) > 0


# -- bad input --------------------------------------------------------------------------------
def test_bad_input_errors():
    layer = DelayedRecurrentSynaptic(3, 4, max_delay=5, backward="eventprop")
    with pytest.raises(ValueError, match="input_"):
        layer(torch.zeros(5, 3))  # one step is not supported
    with pytest.raises(ValueError, match="features"):
        layer(torch.zeros(5, 2, 4))
    with pytest.raises(TypeError, match="dtype"):
        layer(torch.zeros(5, 2, 3, dtype=D64))
    with pytest.raises(ValueError, match="non-negative integers"):
        layer(torch.full((5, 2, 3), 0.5))
    with pytest.raises(ValueError, match="non-negative integers"):
        layer(torch.full((5, 2, 3), -1.0))
    with pytest.raises(ValueError, match="finite"):
        layer(torch.full((5, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="backward"):
        DelayedRecurrentSynaptic(3, 4, max_delay=5, backward="adjoint")
    with pytest.raises(ValueError, match="alpha"):
        DelayedRecurrentSynaptic(3, 4, max_delay=5, alpha=1.5, beta=0.5)
    with pytest.raises(ValueError, match="alpha, beta"):
        DelayedRecurrentSynaptic(3, 4, max_delay=5, alpha=0.5)
    with pytest.raises(ValueError, match="max_delay"):
        LeakyIntegrator(3, 4, max_delay=0)
    with pytest.raises(ValueError, match="tau_syn"):
        LeakyIntegrator(3, 4, max_delay=2, tau_syn=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        DelayedRecurrentSynaptic(3, 4, max_delay=5, threshold=0.0)
    cfg = EventPropConfig(alpha=0.5, beta=0.5, max_delay=3)
    with pytest.raises(ValueError, match="delays"):
        eventprop_lif(torch.zeros(4, 1, 2), torch.zeros(3, 2), torch.zeros(2, 3), config=cfg)
    with pytest.raises(ValueError, match="rec_weight"):
        eventprop_lif(torch.zeros(4, 1, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 2),
                      torch.ones(2, 2), config=cfg)


# -- losses and helpers -----------------------------------------------------------------------
def test_loss_shaping_ce_matches_hand_formula():
    g = torch.Generator().manual_seed(0)
    mem = torch.randn(7, 3, 4, generator=g)
    y = torch.tensor([0, 3, 1])
    w = torch.tensor([math.exp(-t / 7) for t in range(7)])
    vavg = (mem * w.view(7, 1, 1)).sum(0) / 7
    want = -torch.log_softmax(vavg, 1)[torch.arange(3), y].mean()
    torch.testing.assert_close(loss_shaping_ce(mem, y), want)
    want_max = -torch.log_softmax(mem.max(0).values, 1)[torch.arange(3), y].mean()
    torch.testing.assert_close(max_voltage_ce(mem, y), want_max)
    with pytest.raises(ValueError, match="target"):
        loss_shaping_ce(mem, torch.tensor([0, 4, 1]))


def test_first_spike_times_gradient_lands_on_first_spikes():
    spk = torch.zeros(6, 2, 2)
    spk[1, 0, 0] = spk[3, 0, 0] = spk[4, 1, 1] = 1
    spk.requires_grad_()
    t = first_spike_times(spk)
    assert t.tolist() == [[1.0, 6.0], [6.0, 4.0]]
    (t * torch.tensor([[2.0, 3.0], [5.0, 7.0]])).sum().backward()
    g = spk.grad
    assert g[1, 0, 0] == 2.0 and g[4, 1, 1] == 7.0 and g.abs().sum() == 9.0  # silent: no gradient
    assert predict_first_spike(spk.detach()).tolist() == [0, 1]
    loss = first_spike_time_loss(spk.detach(), torch.tensor([0, 1]), t_early=1, t_late=5)
    # times [[1, 6->late+1=6], [6, 4]] vs targets [[1, 5], [5, 1]]
    assert float(loss) == pytest.approx(((0) ** 2 + 1 ** 2 + 1 ** 2 + 3 ** 2) / 4)


def test_bump_silent_neurons():
    layer = DelayedRecurrentSynaptic(3, 4, max_delay=2)
    w0 = layer.weight.detach().clone()
    spk = torch.zeros(5, 2, 4)
    spk[1, 0, 2] = 1
    assert bump_silent_neurons_(layer, spk, amount=0.5) == 3
    diff = layer.weight.detach() - w0
    assert torch.allclose(diff[[0, 1, 3]], torch.full((3, 3), 0.5)) and diff[2].abs().sum() == 0
