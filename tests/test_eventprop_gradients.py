"""EventProp gradients: finite differences, an independent delay-free EventProp, exact BPTT."""

from __future__ import annotations

import math

import pytest
import torch

from snn_delays_ext.eventprop import (
    EventPropConfig,
    decays_from_taus,
    eventprop_lif,
    first_spike_times,
    lif_sequence_surrogate,
    synaptic_scale,
)

D64 = torch.float64


def _cfg(tau_s, tau_m, dt, md, threshold=1.0, **kw):
    a, b = decays_from_taus(tau_s, tau_m, dt)
    return EventPropConfig(alpha=a, beta=b, threshold=threshold, max_delay=md,
                           syn_scale=synaptic_scale(a), **kw)


# ---------------------------------------------------------------------------------------------
# 1. forward: the event-driven forward equals the dense BPTT forward (independent code paths)
# ---------------------------------------------------------------------------------------------
def test_forward_matches_dense_surrogate_forward():
    g = torch.Generator().manual_seed(3)
    T, B, F, N, md = 80, 3, 5, 6, 7
    cfg = _cfg(5.0, 20.0, 1.0, md)
    x = (torch.rand(T, B, F, generator=g, dtype=D64) < 0.15).to(D64)
    W = torch.rand(N, F, generator=g, dtype=D64) * 2.0
    D = torch.rand(N, F, generator=g, dtype=D64) * (md + 2) - 1  # some outside [0, md]
    D[0, 0] = md  # exactly at the maximum
    R = torch.randn(N, N, generator=g, dtype=D64) * 0.8
    E = torch.rand(N, N, generator=g, dtype=D64) * md + 0.5
    E[1, 2] = md
    s1, m1 = eventprop_lif(x, W, D, R, E, config=cfg)
    s2, m2 = lif_sequence_surrogate(x, W, D, R, E, config=cfg)
    assert s1.sum() > 20  # the comparison covers real spiking and recurrence
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    torch.testing.assert_close(m1, m2, rtol=1e-10, atol=1e-10)


def test_forward_by_hand():
    # alpha_m = 0.5, beta_s = 0.5, c = 1: one input spike at step 1, delay 2, weight 3
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=1.0, max_delay=4, syn_scale=1.0)
    x = torch.zeros(8, 1, 1, dtype=D64)
    x[1] = 1.0
    spk, mem = eventprop_lif(x, torch.tensor([[3.0]], dtype=D64), torch.tensor([[2.2]], dtype=D64), config=cfg)
    # the input arrives at step 3: S = 3, then halves each step; U = 0.5 V + 0.5 S
    S = [0, 0, 0, 3, 1.5, 0.75, 0.375, 0.1875]
    V, expect_spk, expect_mem = 0.0, [], []
    for s in S:
        U = 0.5 * V + 0.5 * 1.0 * s
        z = U >= 1.0
        V = 0.0 if z else U
        expect_spk.append(float(z))
        expect_mem.append(V)
    assert spk[:, 0, 0].tolist() == expect_spk
    torch.testing.assert_close(mem[:, 0, 0], torch.tensor(expect_mem, dtype=D64))


# ---------------------------------------------------------------------------------------------
# 2. finite differences on a small recurrent network with fine dt
# ---------------------------------------------------------------------------------------------
def _fd_setup():
    g = torch.Generator().manual_seed(0)
    tau_s, tau_m = 10.0, 5.0
    dt = tau_m / 400  # finer than tau / 200
    T = int(30 / dt)
    md = int(3 / dt)
    cfg = _cfg(tau_s, tau_m, dt, md, min_denominator=1e-12)
    cfgo = _cfg(tau_s, tau_m, dt, md, threshold=math.inf)
    F, N, O, B = 2, 2, 2, 8
    x = torch.zeros(T, B, F, dtype=D64)
    for i in range(F):
        for k in range(2):
            for b in range(B):
                t = 1 + 10 * k + 3 * i + 2 * float(torch.rand(1, generator=g))
                x[int(t / dt), b, i] = 1
    params = [
        torch.rand(N, F, generator=g, dtype=D64) * 0.3 + 1.0,       # W
        torch.rand(N, F, generator=g, dtype=D64) * md,               # D (steps)
        torch.randn(N, N, generator=g, dtype=D64) * 0.3,             # R
        1 + torch.rand(N, N, generator=g, dtype=D64) * (md - 1),     # E (steps)
        torch.randn(O, N, generator=g, dtype=D64),                   # readout weights
        torch.rand(O, N, generator=g, dtype=D64) * md,               # readout delays
    ]
    q = torch.randn(O, generator=g, dtype=D64)
    tw = torch.randn(N, generator=g, dtype=D64)

    def loss_fn(ps):
        W, D, R, E, Wo, Do = ps
        spk, _ = eventprop_lif(x, W, D, R, E, config=cfg)
        _, v = eventprop_lif(spk, Wo, Do, config=cfgo)
        # a readout-voltage loss plus a first-spike-time loss on the hidden neurons (the
        # latter exercises the spike-time input of the backward pass)
        return (v.sum(0) * q).sum() * dt / T * 10 + (first_spike_times(spk) * tw).sum() * dt / T, spk

    return params, loss_fn, dt


@pytest.mark.slow
def test_gradients_match_finite_differences():
    params, loss_fn, dt = _fd_setup()
    ps = [p.clone().requires_grad_() for p in params]
    L, spk = loss_fn(ps)
    L.backward()
    counts = spk.sum(0)
    assert counts.min() >= 1 and counts.float().mean() >= 2  # several spikes per neuron
    steps = {0: 0.015, 1: 0.15 / dt, 2: 0.015, 3: 0.15 / dt}  # weights: absolute; delays: 12 steps
    checked = 0
    for pi, name in enumerate(["W", "D", "R", "E"]):
        ep, fd = [], []
        for idx in [(i, j) for i in range(params[pi].shape[0]) for j in range(params[pi].shape[1])]:
            ests, same = [], True
            for h in (steps[pi], 2 * steps[pi]):
                vals = []
                for sign in (1, -1):
                    pp = [p.clone() for p in params]
                    pp[pi][idx] += sign * h
                    with torch.no_grad():
                        Lh, sh = loss_fn(pp)
                    same &= bool((sh.sum(0) == counts).all())
                    vals.append(float(Lh))
                ests.append((vals[0] - vals[1]) / (2 * h))
            if same:  # compare only where no spike appears or disappears
                ep.append(float(ps[pi].grad[idx]))
                fd.append(sum(ests) / 2)
        assert len(fd) >= 3, f"{name}: too few entries keep their spike count"
        ep_t, fd_t = torch.tensor(ep), torch.tensor(fd)
        rel = float((ep_t - fd_t).norm() / fd_t.norm())
        assert rel < 0.05, f"{name}: EventProp {ep} vs finite differences {fd} (relative error {rel:.3f})"
        checked += len(fd)
    assert checked >= 12
    # the readout gradients (no spikes) are exact discrete gradients: tight agreement
    for pi in (4, 5):
        idx = (0, 1)
        h = 1e-4 if pi == 4 else 1.0
        vals = []
        for sign in (1, -1):
            pp = [p.clone() for p in params]
            pp[pi][idx] += sign * h
            if pi == 5:  # integer delay shift of the readout: central discrete difference
                pp[pi][idx] = torch.floor(params[pi][idx] + 0.5) + sign * h
            with torch.no_grad():
                vals.append(float(loss_fn(pp)[0]))
        fd = (vals[0] - vals[1]) / (2 * h)
        assert abs(float(ps[pi].grad[idx]) - fd) <= 0.01 * abs(fd) + 1e-12


# ---------------------------------------------------------------------------------------------
# 3. zero delays: equal to an independently written, dense, delay-free EventProp
# ---------------------------------------------------------------------------------------------
def _delay_free_eventprop(x, W, R, cfg, GS, GM):
    """Dense delay-free EventProp: forward stores everything, backward in matrix form.

    Feed-forward spikes act in the step they are emitted, recurrent spikes one step later.
    Returns grad_x (spike-time sensitivities), dW, dR and the delay gradients dD, dE (the
    gradient with respect to a delay at zero / one step).
    """
    # EventPropConfig keeps snnTorch's names: alpha = synaptic decay, beta = membrane decay
    bs, am, c, th = cfg.alpha, cfg.beta, cfg.syn_scale, cfg.threshold
    T, B, F = x.shape
    N = W.shape[0]
    S = torch.zeros(B, N, dtype=x.dtype)
    V = torch.zeros(B, N, dtype=x.dtype)
    z_prev = torch.zeros(B, N, dtype=x.dtype)
    Zs, Us, Vp = [], [], []
    for t in range(T):
        S = bs * S + x[t] @ W.T + z_prev @ R.T
        U = am * V + (1 - am) * c * S
        z = (U >= th).to(x.dtype)
        Vp.append(V)
        Us.append(U)
        Zs.append(z)
        V = U * (1 - z)
        z_prev = z
    Z = torch.stack(Zs)
    gS_all = torch.zeros(T + 1, B, N, dtype=x.dtype)
    G_all = torch.zeros(T + 1, B, N, dtype=x.dtype)
    gU_next = torch.zeros(B, N, dtype=x.dtype)
    for t in range(T - 1, -1, -1):
        gV = am * gU_next + GM[t]
        rise = Us[t] - Vp[t]
        # spike-time sensitivity: external, recurrent arrivals, the jump of the loss on V at the
        # reset (theta * GM) and the shifted reset
        dLdt = GS[t] + G_all[t + 1] @ R + th * GM[t] - (rise + (1 - am) * th) * gV
        gU = torch.where(Z[t] > 0, -dLdt / torch.where(Z[t] > 0, rise, torch.ones_like(rise)), gV)
        gS = (1 - am) * c * gU + bs * gS_all[t + 1]
        gS_all[t] = gS
        G_all[t] = gS_all[t + 1] - gS  # a unit weight arriving one step later
        gU_next = gU
    dW = torch.einsum("tbn,tbf->nf", gS_all[:T], x)
    dD = W * torch.einsum("tbn,tbf->nf", G_all[:T], x)
    dR = torch.einsum("tbn,tbm->nm", gS_all[1:], Z)
    dE = R * torch.einsum("tbn,tbm->nm", G_all[1:], Z)
    gx = (G_all[:T] @ W) * x
    return Z, gx, dW, dD, dR, dE


def test_zero_delays_equal_delay_free_eventprop():
    g = torch.Generator().manual_seed(1)
    T, B, F, N, md = 120, 4, 3, 5, 6
    cfg = _cfg(5.0, 20.0, 1.0, md)
    x = (torch.rand(T, B, F, generator=g, dtype=D64) < 0.2).to(D64)
    W = (torch.rand(N, F, generator=g, dtype=D64) * 2.5).requires_grad_()
    R = (torch.randn(N, N, generator=g, dtype=D64) * 0.5).requires_grad_()
    D = torch.zeros(N, F, dtype=D64, requires_grad=True)
    E = torch.ones(N, N, dtype=D64, requires_grad=True)  # recurrent minimum: one step
    xr = x.clone().requires_grad_()
    spk, mem = eventprop_lif(xr, W, D, R, E, config=cfg)
    GS = torch.randn(T, B, N, generator=g, dtype=D64) * spk.detach()
    GM = torch.randn(T, B, N, generator=g, dtype=D64)
    grads = torch.autograd.grad((spk, mem), (xr, W, D, R, E), (GS, GM))
    Z, *ref = _delay_free_eventprop(x, W.detach(), R.detach(), cfg, GS, GM)
    assert Z.sum() > 30
    torch.testing.assert_close(spk.detach(), Z)
    for name, got, want in zip(["x", "W", "D", "R", "E"], grads, ref):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=lambda m: f"{name}: {m}")


# ---------------------------------------------------------------------------------------------
# 4. a non-spiking layer: EventProp equals BPTT exactly (weights) and a discrete shift (delays)
# ---------------------------------------------------------------------------------------------
def test_leaky_integrator_gradients_equal_bptt():
    g = torch.Generator().manual_seed(2)
    T, B, F, N, md = 60, 3, 4, 3, 9
    cfg = _cfg(5.0, 20.0, 1.0, md, threshold=math.inf)
    x = (torch.rand(T, B, F, generator=g, dtype=D64) < 0.2).to(D64)
    W = torch.randn(N, F, generator=g, dtype=D64).requires_grad_()
    D = (torch.rand(N, F, generator=g, dtype=D64) * md).requires_grad_()
    Q = torch.randn(T, B, N, generator=g, dtype=D64)
    _, m1 = eventprop_lif(x, W, D, config=cfg)
    (gw1, gd1) = torch.autograd.grad((m1 * Q).sum(), (W, D))
    _, m2 = lif_sequence_surrogate(x, W, D, config=cfg)
    (gw2,) = torch.autograd.grad((m2 * Q).sum(), (W,))
    torch.testing.assert_close(gw1, gw2, rtol=1e-10, atol=1e-12)


def test_leaky_integrator_delay_gradient_matches_discrete_shift():
    # with fine dt the arrival-time sensitivity equals the central difference of the discrete
    # loss under a one-step shift of the delay
    g = torch.Generator().manual_seed(4)
    dt = 5.0 / 200
    T, B, F, N, md = int(40 / dt), 2, 3, 2, int(10 / dt)
    cfg = _cfg(5.0, 20.0, dt, md, threshold=math.inf)
    x = (torch.rand(T, B, F, generator=g, dtype=D64) < 0.004).to(D64)
    W = torch.randn(N, F, generator=g, dtype=D64)
    D = (torch.rand(N, F, generator=g, dtype=D64) * (md - 2) + 1).round().requires_grad_()
    Q = torch.randn(N, generator=g, dtype=D64)
    q = torch.linspace(0, 1, T, dtype=D64).view(T, 1, 1) ** 2 * Q
    _, m = eventprop_lif(x, W, D, config=cfg)
    (gd,) = torch.autograd.grad((m * q).sum(), (D,))
    for idx in [(0, 0), (1, 2), (0, 1)]:
        vals = []
        for s in (1, -1):
            Dp = D.detach().clone()
            Dp[idx] += s
            vals.append(float((eventprop_lif(x, W, Dp, config=cfg)[1] * q).sum()))
        fd = (vals[0] - vals[1]) / 2
        assert abs(float(gd[idx]) - fd) <= 0.02 * abs(fd) + 1e-9, (idx, float(gd[idx]), fd)
