"""EventProp gradients against finite differences of the discrete forward, at coarse dt.

The forward rounds delays to whole steps, so the delay gradient (and ``dL/dt_k`` of an input
spike) is the change of the loss when an arrival moves one step later. For a non-spiking layer
and a loss linear in its membranes that change is exactly linear in the weight, so EventProp
must equal the one-step forward difference to rounding, at any ``dt`` (here ``tau_syn`` = 5
steps, where the old ``G = (1 - alpha) g_S,t - (1 - beta) c g_U,t`` was ``alpha`` = 0.82 times
too small). A spiking layer with a loss on its membrane is checked at fine ``dt`` (the jump of
``V`` from the threshold to 0 at a spike). Both the plain-PyTorch reference and the compiled
kernels; bad arguments of the EventProp API raise a clear ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

import math

import pytest
import torch

from snn_delays_ext import ops
from snn_delays_ext.eventprop import (
    DelayedRecurrentSynaptic,
    EventPropConfig,
    LeakyIntegrator,
    bump_silent_neurons_,
    decays_from_taus,
    eventprop_lif,
    first_spike_time_loss,
    first_spike_times,
    loss_shaping_ce,
    max_voltage_ce,
    relative_first_spike_loss,
    rounded_delays,
    synaptic_scale,
)

D64 = torch.float64
BACKENDS = [
    "reference",
    pytest.param("compiled", marks=pytest.mark.skipif(
        "cpu" not in ops.eventprop_devices(), reason="compiled EventProp ops not built")),
]


def _cfg(tau_s, tau_m, dt, md, threshold=math.inf, **kw):
    a, b = decays_from_taus(tau_s, tau_m, dt)
    return EventPropConfig(alpha=a, beta=b, threshold=threshold, max_delay=md, syn_scale=synaptic_scale(a), **kw)


def _spikes(T, B, F, events):
    x = torch.zeros(T, B, F, dtype=D64)
    for t, b, i in events:
        x[t, b, i] = 1.0
    return x


# ---------------------------------------------------------------------------------------------
# coarse dt (tau_syn = 5 steps): exact one-step differences
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_delay_gradient_equals_one_step_difference_coarse_dt(backend):
    g = torch.Generator().manual_seed(0)
    T, B, F, N, md = 60, 2, 3, 2, 8
    cfg = _cfg(5.0, 20.0, 1.0, md)
    assert cfg.alpha < 0.82  # coarse: the old formula was off by this factor
    x = (torch.rand(T, B, F, generator=g, dtype=D64) < 0.15).to(D64)
    W = torch.randn(N, F, generator=g, dtype=D64)
    D = torch.randint(0, md, (N, F), generator=g).to(D64)  # integer, below max_delay
    q = torch.randn(T, B, N, generator=g, dtype=D64)

    def loss(Dv):
        return float((eventprop_lif(x, W, Dv, config=cfg, backend=backend)[1] * q).sum())

    Dr = D.clone().requires_grad_()
    (eventprop_lif(x, W, Dr, config=cfg, backend=backend)[1] * q).sum().backward()
    fd = torch.zeros(N, F, dtype=D64)
    for idx in [(i, j) for i in range(N) for j in range(F)]:
        Dp = D.clone()
        Dp[idx] += 1
        fd[idx] = loss(Dp) - loss(D)
    assert fd.abs().min() > 1e-3
    torch.testing.assert_close(Dr.grad, fd, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_delay_gradient_loss_shaping_coarse_dt(backend):
    # a non-linear loss (the readout cross-entropy): agreement to the accuracy of a one-step
    # difference (the old gradient was alpha = 0.82 times the difference)
    T = 60
    x = _spikes(T, 1, 2, [(5, 0, 0), (12, 0, 1), (20, 0, 0)])
    cfg = _cfg(5.0, 20.0, 1.0, 15)
    W = torch.tensor([[1.5, -0.7], [0.4, 1.1]], dtype=D64)
    D = torch.tensor([[5.0, 3.0], [1.0, 7.0]], dtype=D64)
    target = torch.tensor([1])

    def loss(Dv):
        return loss_shaping_ce(eventprop_lif(x, W, Dv, config=cfg, backend=backend)[1], target)

    Dr = D.clone().requires_grad_()
    loss(Dr).backward()
    fd = torch.zeros(2, 2, dtype=D64)
    with torch.no_grad():
        for idx in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            e = torch.zeros(2, 2, dtype=D64)
            e[idx] = 1.0
            fd[idx] = loss(D + e) - loss(D)
    torch.testing.assert_close(Dr.grad, fd, rtol=3e-3, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_input_spike_gradient_equals_one_step_shift_coarse_dt(backend):
    # dL/dt_k of an input spike (what an upstream EventProp layer consumes): moving the spike
    # one step later
    T, t0 = 60, 10
    cfg = _cfg(5.0, 20.0, 1.0, 5)
    W = torch.tensor([[1.5], [-0.7]], dtype=D64)
    D = torch.tensor([[2.0], [0.0]], dtype=D64)
    q = torch.linspace(1.0, -0.5, T, dtype=D64).view(T, 1, 1) * torch.tensor([1.0, 0.3], dtype=D64)

    def loss(x):
        return (eventprop_lif(x, W, D, config=cfg, backend=backend)[1] * q).sum()

    x = _spikes(T, 1, 1, [(t0, 0, 0)]).requires_grad_()
    loss(x).backward()
    with torch.no_grad():
        fd = float(loss(_spikes(T, 1, 1, [(t0 + 1, 0, 0)])) - loss(_spikes(T, 1, 1, [(t0, 0, 0)])))
    assert abs(fd) > 1e-3
    assert float(x.grad[t0, 0, 0]) == pytest.approx(fd, rel=1e-9)
    assert int((x.grad != 0).sum()) == 1  # zero away from the spike


@pytest.mark.parametrize("backend", BACKENDS)
def test_recurrent_delay_gradient_equals_one_step_difference_coarse_dt(backend):
    # neuron 0 fires (its spikes do not depend on the recurrent delay), neuron 1 stays below
    # threshold and the loss is linear in neuron 1's membrane: the recurrent delay 0 -> 1 moves
    # an arrival at a non-spiking neuron, an exact one-step difference
    T = 50
    cfg = _cfg(5.0, 20.0, 1.0, 8, threshold=1.0)
    x = _spikes(T, 1, 2, [(2, 0, 0), (9, 0, 0), (14, 0, 1)])
    W = torch.tensor([[9.0, 0.0], [0.0, 0.3]], dtype=D64)
    D = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=D64)
    R = torch.tensor([[0.0, 0.0], [0.4, 0.0]], dtype=D64)  # row: postsynaptic
    E = torch.tensor([[1.0, 1.0], [3.0, 1.0]], dtype=D64)
    q = torch.zeros(T, 1, 2, dtype=D64)
    q[:, 0, 1] = torch.linspace(1.0, 0.2, T, dtype=D64)

    def run(Ev):
        spk, mem = eventprop_lif(x, W, D, R, Ev, config=cfg, backend=backend)
        return (mem * q).sum(), spk

    Er = E.clone().requires_grad_()
    L, spk = run(Er)
    L.backward()
    assert spk[:, 0, 0].sum() >= 2 and spk[:, 0, 1].sum() == 0
    Ep = E.clone()
    Ep[1, 0] += 1
    with torch.no_grad():
        (L1, s1), (L0, _) = run(Ep), run(E)
    assert torch.equal(s1, spk)
    fd = float(L1 - L0)
    assert abs(fd) > 1e-3
    assert float(Er.grad[1, 0]) == pytest.approx(fd, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# a loss on the membrane of a spiking layer: the reset jump enters dL/dt_k (fine dt)
# ---------------------------------------------------------------------------------------------
def _slope(f, h_max, n):
    """Least-squares slope of f over [-h_max, h_max] (averages out the staircase of the step grid)."""
    hs = torch.linspace(-h_max, h_max, n, dtype=D64)
    ys = torch.tensor([f(float(h)) for h in hs], dtype=D64)
    hc = hs - hs.mean()
    return float((hc * (ys - ys.mean())).sum() / (hc ** 2).sum())


@pytest.mark.parametrize("backend,dt,n_pts", [("reference", 0.005, 21)]
                         + [pytest.param(p.values[0], 0.001, 41, marks=p.marks) for p in BACKENDS[1:]])
def test_membrane_loss_of_spiking_layer_includes_reset_jump(backend, dt, n_pts):
    tau_s, tau_m = 5.0, 20.0
    T, md = int(20 / dt), int(6 / dt)
    x = _spikes(T, 1, 2, [(int(t / dt), 0, i) for t, i in [(1, 0), (3, 1), (6, 0)]])
    cfg = _cfg(tau_s, tau_m, dt, md, threshold=1.0)
    W0 = torch.tensor([[3.0, 1.0], [1.0, 3.5]], dtype=D64)
    D0 = torch.round(torch.tensor([[1.0, 3.0], [5.0, 2.0]], dtype=D64) / dt)
    tt = torch.arange(T, dtype=D64) * dt
    # loss weight on the membrane around the spike of neuron 0 (near 11.4 ms): the voltage
    # before and after the reset both count, so the spike time matters through mem alone
    q = (torch.where((tt > 10.0) & (tt < 13.0), 1.0, 0.0) * dt).view(T, 1, 1).repeat(1, 1, 2)
    q[:, :, 1] *= 0.5

    def run(W, D):
        spk, mem = eventprop_lif(x, W, D, config=cfg, backend=backend)
        return (q * mem).sum(), spk

    W = W0.clone().requires_grad_()
    D = D0.clone().requires_grad_()
    L, spk = run(W, D)
    L.backward()
    assert spk[:, 0, 0].sum() == 1 and spk[:, 0, 1].sum() == 0

    def at_w(h):
        e = torch.zeros(2, 2, dtype=D64)
        e[0, 0] = h
        with torch.no_grad():
            Lh, sh = run(W0 + e, D0)
        assert int(sh.sum()) == 1
        return float(Lh)

    fd_w = _slope(at_w, 0.02, n_pts)
    # the jump term dominates here (without it the gradient has the wrong sign)
    assert float(W.grad[0, 0]) == pytest.approx(fd_w, rel=0.02)
    hd = round(0.5 / dt)  # delays: +-0.5 ms
    e = torch.zeros(2, 2, dtype=D64)
    e[0, 0] = hd
    with torch.no_grad():
        fd_d = float((run(W0, D0 + e)[0] - run(W0, D0 - e)[0]) / (2 * hd))
    assert float(D.grad[0, 0]) == pytest.approx(fd_d, rel=0.02)


# ---------------------------------------------------------------------------------------------
# bad arguments: a ValueError / TypeError naming the argument
# ---------------------------------------------------------------------------------------------
def _layer(**kw):
    return DelayedRecurrentSynaptic(**{**dict(in_features=2, out_features=3, max_delay=4, backward="eventprop"), **kw})


_X = torch.zeros(10, 2, 2)
_X[::3, 0, 0] = 1.0
_W, _D = torch.ones(3, 2), torch.zeros(3, 2)
_CFG = EventPropConfig(alpha=0.9, beta=0.8, max_delay=3)
_MEM = torch.randn(10, 2, 3)
_SPK = (torch.rand(10, 2, 3) < 0.3).float()
_TGT = torch.tensor([0, 2])
_NAN, _INF = float("nan"), float("inf")

BAD = [
    # layer options
    ("reg_strength", ValueError, lambda: _layer(reg_strength=_NAN)),
    ("reg_strength", ValueError, lambda: _layer(reg_strength=-1.0)),
    ("reg_strength", TypeError, lambda: _layer(reg_strength="a")),
    ("reg_target", ValueError, lambda: _layer(reg_target=-5.0)),
    ("min_denominator", ValueError, lambda: _layer(min_denominator=0.0)),
    ("min_denominator", ValueError, lambda: _layer(min_denominator=-1.0)),
    ("min_denominator", ValueError, lambda: _layer(min_denominator=_NAN)),
    ("weight_scale", ValueError, lambda: _layer(weight_scale=-1.0)),
    ("weight_scale", ValueError, lambda: _layer(weight_scale=_NAN)),
    ("rec_weight_scale", ValueError, lambda: _layer(rec_weight_scale=_INF)),
    ("weight_scale", ValueError, lambda: LeakyIntegrator(2, 3, max_delay=4, weight_scale=_NAN)),
    ("recurrent", TypeError, lambda: _layer(recurrent="yes")),
    ("record_mem", TypeError, lambda: _layer(record_mem=1)),
    ("spike_grad", TypeError, lambda: _layer(spike_grad=3)),
    # EventPropConfig
    ("alpha", ValueError, lambda: EventPropConfig(alpha=1.5, beta=0.8)),
    ("alpha", TypeError, lambda: EventPropConfig(alpha="a", beta=0.8)),
    ("beta", ValueError, lambda: EventPropConfig(alpha=0.5, beta=-0.5)),
    ("beta", ValueError, lambda: EventPropConfig(alpha=0.5, beta=_NAN)),
    ("threshold", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, threshold=-1.0)),
    ("threshold", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, threshold=_NAN)),
    ("max_delay", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, max_delay=0)),
    ("syn_scale", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, syn_scale=0.0)),
    ("min_denominator", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, min_denominator=0.0)),
    ("min_denominator", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, min_denominator=-1.0)),
    ("min_denominator", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, min_denominator=_NAN)),
    ("reg_strength", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, reg_strength=_NAN)),
    ("max_spikes", ValueError, lambda: EventPropConfig(alpha=0.5, beta=0.5, max_spikes=0)),
    ("record_mem", TypeError, lambda: EventPropConfig(alpha=0.5, beta=0.5, record_mem="no")),
    # functional API
    ("config", TypeError, lambda: eventprop_lif(_X, _W, _D, config=dict(alpha=0.9, beta=0.8, max_delay=3))),
    ("weight", TypeError, lambda: eventprop_lif(_X, [[1.0, 2.0]] * 3, _D, config=_CFG)),
    ("delays", TypeError, lambda: eventprop_lif(_X, _W, None, config=_CFG)),
    ("rec_delays", TypeError, lambda: eventprop_lif(_X, _W, _D, torch.zeros(3, 3), [[1.0]], config=_CFG)),
    ("alpha", ValueError, lambda: synaptic_scale(1.0)),
    ("alpha", ValueError, lambda: synaptic_scale(0.0)),
    ("delays", TypeError, lambda: rounded_delays([1.0], 3, 0)),
    # losses
    ("mem", ValueError, lambda: loss_shaping_ce(_MEM * _NAN, _TGT)),
    ("mem", ValueError, lambda: loss_shaping_ce(torch.zeros(0, 2, 3), _TGT)),
    ("tau", TypeError, lambda: loss_shaping_ce(_MEM, _TGT, tau="a")),
    ("tau", ValueError, lambda: loss_shaping_ce(_MEM, _TGT, tau=_NAN)),
    ("mem", ValueError, lambda: max_voltage_ce(torch.zeros(0, 2, 3), _TGT)),
    ("mem", ValueError, lambda: max_voltage_ce(_MEM * _NAN, _TGT)),
    ("spk", ValueError, lambda: first_spike_times(torch.zeros(0, 2, 3))),
    ("no_spike", ValueError, lambda: first_spike_times(_SPK, no_spike=_NAN)),
    ("no_spike", TypeError, lambda: first_spike_times(_SPK, no_spike="a")),
    ("t_early", ValueError, lambda: first_spike_time_loss(_SPK, _TGT, t_early=_NAN, t_late=5)),
    ("t_early", TypeError, lambda: first_spike_time_loss(_SPK, _TGT, t_early="a", t_late=5)),
    ("t_late", ValueError, lambda: first_spike_time_loss(_SPK, _TGT, t_early=1, t_late=_INF)),
    ("tau0", ValueError, lambda: first_spike_time_loss(_SPK, _TGT, 1, 5, tau0=0.0)),
    ("tau0", ValueError, lambda: first_spike_time_loss(_SPK, _TGT, 1, 5, tau0=-1.0)),
    ("delta", ValueError, lambda: relative_first_spike_loss(_SPK, _TGT, delta=_INF)),
    ("delta", ValueError, lambda: relative_first_spike_loss(_SPK, _TGT, delta=-1.0)),
    ("no_spike", ValueError, lambda: relative_first_spike_loss(_SPK, _TGT, delta=1.0, no_spike=_NAN)),
    ("amount", ValueError, lambda: bump_silent_neurons_(_layer(), torch.zeros(3), amount=_NAN)),
    ("amount", ValueError, lambda: bump_silent_neurons_(_layer(), torch.zeros(3), amount=-0.1)),
    ("amount", TypeError, lambda: bump_silent_neurons_(_layer(), torch.zeros(3), amount="a")),
]


@pytest.mark.parametrize("name,exc,call", BAD, ids=[f"{i}-{b[0]}" for i, b in enumerate(BAD)])
def test_bad_arguments_raise_naming_the_argument(name, exc, call):
    with pytest.raises(exc, match=rf"^{name}: expected"):
        call()


def test_bump_with_bad_amount_leaves_weights_unchanged():
    layer = _layer()
    w0 = layer.weight.detach().clone()
    with pytest.raises(ValueError, match="amount"):
        bump_silent_neurons_(layer, torch.zeros(3), amount=_NAN)
    assert torch.equal(layer.weight.detach(), w0)


def test_valid_edge_arguments_still_work():
    # an infinite threshold (leaky integrator), tau=inf (plain average), numpy-free ints
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=math.inf, max_delay=2, max_spikes=5)
    assert not cfg.spiking and cfg.max_spikes == 5
    assert torch.isfinite(loss_shaping_ce(_MEM, _TGT, tau=math.inf))
    assert torch.isfinite(first_spike_time_loss(_SPK, _TGT, 1, 5, tau0=2.0))
    _layer(reg_strength=0.0, reg_target=0.0, weight_scale=0.0)


def test_losses_refuse_integer_voltages_and_swapped_target_times():
    from snn_delays_ext.eventprop.losses import first_spike_time_loss, loss_shaping_ce, max_voltage_ce

    mem = torch.zeros(5, 2, 3, dtype=torch.int64)
    for fn in (loss_shaping_ce, max_voltage_ce):
        with pytest.raises(TypeError, match="mem: expected a floating-point tensor"):
            fn(mem, torch.tensor([0, 1]))
    spk = torch.zeros(5, 2, 3)
    with pytest.raises(ValueError, match="t_early, t_late: .*t_early=9.0, t_late=3.0"):
        first_spike_time_loss(spk, torch.tensor([0, 1]), t_early=9, t_late=3)
    assert torch.isfinite(first_spike_time_loss(spk, torch.tensor([0, 1]), t_early=3, t_late=9))
