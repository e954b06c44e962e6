"""Step mode of the delayed recurrent LIF layer reads only the non-zero band of each delay's
taps: the same values and gradients as the full tap tensor over lags ``1..K`` (the formula the
step used before), for both delay kinds, both interpolations, wide triangles and delays outside
``[1, max_delay]``; gradcheck; the layer's step loop equals its sequence call."""

import pytest
import torch
import torch.nn.functional as F
from snntorch import surrogate

import snn_delays_ext as sde
from snn_delays_ext import ops as _ops
from snn_delays_ext.functional import (
    RecurrentLeakyParameters,
    RecurrentLeakyState,
    delay_taps,
    recurrent_history_length,
    recurrent_leaky_step,
)
from snn_delays_ext.functional.delayed_linear import _use_gather
from snn_delays_ext.functional.interpolation import banded_taps
from snn_delays_ext.functional.recurrent_leaky import _membrane_update, banded_recurrent_current

DT = torch.float64
N = 6


def full_tap_current(past, weight, bias, delays, max_delay, kind, sigma, interpolation):
    """The step's recurrent current before the banded version: every tap over lags 1..K."""
    taps = delay_taps(delays, max_delay, sigma, 1, interpolation)  # (N, K) / (N, N, K)
    by_lag = past.flip(0)  # by_lag[k - 1] = spikes k steps ago
    if kind == "axonal":
        delayed = torch.einsum("jk,kbj->bj", taps, by_lag).contiguous()
        return F.linear(delayed, weight, bias)
    r = torch.einsum("ijk,kbj->bi", weight.unsqueeze(-1) * taps, by_lag)
    return r + bias if bias is not None else r


def full_tap_step(x, state, weight, bias, delays, params, max_delay, kind, sigma, interpolation):
    """The old ``recurrent_leaky_step``: full-tap current, then the same membrane update."""
    r = full_tap_current(state.past, weight, bias, delays, max_delay, kind, sigma, interpolation)
    spk, mem = _membrane_update(x, r, state.mem, params)
    return spk, RecurrentLeakyState(mem, torch.cat([state.past[1:], spk.unsqueeze(0)], 0))


def mixed_delays(shape, max_delay, seed):
    """Delays at integers (1, max_delay included), halves, below 1 (also negative), above
    max_delay and random values, shuffled over ``shape``."""
    g = torch.Generator().manual_seed(seed)
    special = torch.tensor([1.0, 2.0, float(max_delay), 1.5, 2.5, max_delay - 0.5, 0.3, -2.0,
                            max_delay + 0.4, max_delay + 7.0, 3.0, 0.5], dtype=DT)
    n = 1
    for e in shape:
        n *= e
    rand = torch.rand(n, generator=g, dtype=DT) * (max_delay + 2.0) - 1.0
    vals = torch.cat([special, rand])[:n]
    return vals[torch.randperm(n, generator=g)].reshape(shape)


CASES = [
    (kind, interp, sigma, max_delay, batch)
    for kind in ("axonal", "synaptic")
    for interp in ("triangle", "round")
    for sigma in (0.0, 1.3, 4.0)
    # max_delay 5 with B 3: the synaptic step scatters a dense kernel; max_delay 40 with B 1:
    # it gathers the band per batch element
    for max_delay, batch in ((5, 3), (40, 1))
]


def _inputs(kind, sigma, max_delay, batch, seed=0):
    torch.manual_seed(seed)
    K = recurrent_history_length(max_delay, sigma)
    shape = (N,) if kind == "axonal" else (N, N)
    past = (torch.rand(K, batch, N, dtype=DT) < 0.4).to(DT) * (0.5 + torch.rand(K, batch, N, dtype=DT))
    return {
        "past": past.requires_grad_(),
        "weight": (torch.randn(N, N, dtype=DT) * 0.7).requires_grad_(),
        "bias": (torch.randn(N, dtype=DT) * 0.1).requires_grad_(),
        "delays": mixed_delays(shape, max_delay, seed).requires_grad_(),
    }


@pytest.mark.parametrize("kind,interp,sigma,max_delay,batch", CASES)
def test_banded_current_equals_full_taps(kind, interp, sigma, max_delay, batch):
    a = _inputs(kind, sigma, max_delay, batch)
    if kind == "synaptic":  # both synaptic code paths are exercised
        start, vals = banded_taps(a["delays"], max_delay, sigma, 1, interp)
        idx = start.unsqueeze(-1).expand(vals.shape)
        assert _use_gather(a["past"], idx) == (max_delay == 40)
    args = (a["past"], a["weight"], a["bias"], a["delays"], max_delay, kind, sigma, interp)
    r = banded_recurrent_current(*args)
    r_ref = full_tap_current(*args)
    torch.testing.assert_close(r, r_ref, rtol=1e-12, atol=1e-12)
    gy = torch.randn_like(r)
    leaves = [a["past"], a["weight"], a["bias"], a["delays"]]
    g = torch.autograd.grad(r, leaves, gy)
    g_ref = torch.autograd.grad(r_ref, leaves, gy)
    for name, u, v in zip(("past", "weight", "bias", "delays"), g, g_ref):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-12, msg=lambda m: f"{name}: {m}")
    assert g[3].abs().sum() > 0  # the delays do get a gradient


@pytest.mark.parametrize("kind,interp,sigma,max_delay,batch", CASES)
@pytest.mark.parametrize("reset_mechanism", ["subtract", "zero"])
def test_step_equals_full_tap_step_values_and_gradients(kind, interp, sigma, max_delay, batch,
                                                        reset_mechanism):
    a = _inputs(kind, sigma, max_delay, batch, seed=1)
    x = (torch.rand(4, batch, N, dtype=DT) * 0.9).requires_grad_()
    mem0 = (torch.rand(batch, N, dtype=DT) * 1.2).requires_grad_()
    beta = torch.full((N,), 0.8, dtype=DT).requires_grad_()
    thr = torch.tensor(0.6, dtype=DT, requires_grad=True)
    params = RecurrentLeakyParameters(beta, thr, surrogate.atan(), reset_mechanism)
    leaves = [x, mem0, a["past"], a["weight"], a["bias"], a["delays"], beta, thr]

    def run(step):
        state = RecurrentLeakyState(mem0, a["past"])
        outs = []
        for t in range(x.shape[0]):
            spk, state = step(x[t], state, a["weight"], a["bias"], a["delays"], params,
                              max_delay, kind, sigma, interp)
            outs.append((spk, state.mem))
        return outs, state

    outs, state = run(recurrent_leaky_step)
    outs_ref, state_ref = run(full_tap_step)
    loss = loss_ref = 0.0
    torch.manual_seed(7)
    for (s, m), (s_r, m_r) in zip(outs, outs_ref):
        assert torch.equal(s, s_r)
        torch.testing.assert_close(m, m_r, rtol=1e-12, atol=1e-12)
        cs, cm = torch.randn_like(s), torch.randn_like(m)
        loss = loss + (cs * s).sum() + (cm * m).sum()
        loss_ref = loss_ref + (cs * s_r).sum() + (cm * m_r).sum()
    assert torch.equal(state.past, state_ref.past)
    assert torch.cat([s for s, _ in outs]).sum() > 0
    g = torch.autograd.grad(loss, leaves)
    g_ref = torch.autograd.grad(loss_ref, leaves)
    names = ("x", "mem", "past", "weight", "bias", "delays", "beta", "threshold")
    for name, u, v in zip(names, g, g_ref):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
@pytest.mark.parametrize("max_delay,batch", [(4, 2), (20, 1)])
def test_gradcheck_banded_current_and_step(kind, max_delay, batch):
    torch.manual_seed(3)
    n, sigma = 3, 0.7
    K = recurrent_history_length(max_delay, sigma)
    shape = (n,) if kind == "axonal" else (n, n)
    past = torch.rand(K, batch, n, dtype=DT, requires_grad=True)
    w = (torch.randn(n, n, dtype=DT) * 0.5).requires_grad_()
    b = (torch.randn(n, dtype=DT) * 0.1).requires_grad_()
    # away from the triangle's corners (finite differences cannot see one-sided slopes)
    d = (1.3 + torch.rand(shape, dtype=DT) * 0.4
         + torch.arange(shape[-1], dtype=DT) * (max_delay - 2) / shape[-1]).requires_grad_()

    def current(past, w, b, d):
        return banded_recurrent_current(past, w, b, d, max_delay, kind, sigma, "triangle")

    assert torch.autograd.gradcheck(current, (past, w, b, d))
    # double backward (the custom backward passes are differentiable)
    assert torch.autograd.gradgradcheck(lambda p, w: current(p, w, b, d), (past, w))

    x = torch.rand(batch, n, dtype=DT, requires_grad=True)
    mem = torch.rand(batch, n, dtype=DT, requires_grad=True)
    beta = torch.tensor(0.7, dtype=DT, requires_grad=True)
    thr = torch.tensor(0.5, dtype=DT, requires_grad=True)

    def step(x, mem, past, w, b, d, beta, thr):
        # smooth spike function and no reset (the reset is detached, invisible to finite
        # differences): every path is exact
        p = RecurrentLeakyParameters(beta, thr, lambda v: torch.sigmoid(4 * v), "none")
        spk, st = recurrent_leaky_step(x, RecurrentLeakyState(mem, past), w, b, d, p,
                                       max_delay, kind, sigma)
        spk2, st2 = recurrent_leaky_step(x * 0.5, st, w, b, d, p, max_delay, kind, sigma)
        return spk, spk2, st2.mem

    assert torch.autograd.gradcheck(step, (x, mem, past, w, b, d, beta, thr))


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_step_saves_no_full_tap_tensor(kind):
    """Autograd keeps O(B N W) and the weights per step (axonal; synaptic also the (K, B, N)
    history and O(N N W)), never a ``(N, N, K)`` or ``(N, K)`` tap tensor."""
    n, max_delay, batch = 16, 60, 2
    K = recurrent_history_length(max_delay, 0.0)
    shape = (n,) if kind == "axonal" else (n, n)
    w = torch.randn(n, n, requires_grad=True)
    d = (1.0 + torch.rand(shape) * (max_delay - 1)).requires_grad_()
    p = RecurrentLeakyParameters(torch.tensor(0.9), torch.tensor(1.0), surrogate.atan())
    past = (torch.rand(K, batch, n) < 0.3).float().requires_grad_()
    state = RecurrentLeakyState(torch.zeros(batch, n), past)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        recurrent_leaky_step(torch.rand(batch, n), state, w, None, d, p, max_delay, kind)
    assert sizes
    if kind == "axonal":  # W = 2
        assert max(sizes) <= max(n * n, batch * n * 2) < n * K
    else:
        assert max(sizes) <= max(n * n * 2, K * batch * n) < n * n * K


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
@pytest.mark.parametrize("interp", ["triangle", "round"])
@pytest.mark.parametrize("sigma", [0.0, 4.0])
@pytest.mark.parametrize("spike_grad", ["snntorch_atan", "triangle"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_layer_step_loop_equals_sequence_call(kind, interp, sigma, spike_grad, monkeypatch):
    torch.manual_seed(5)
    n, T, B, max_delay = 5, 30, 3, 6
    extra = {} if spike_grad == "snntorch_atan" else {"spike_grad": sde.surrogate.triangle()}
    lif = sde.DelayedRecurrentLeaky(0.85, n, max_delay=max_delay, delay_type=kind, sigma=sigma,
                                    interpolation=interp, threshold=0.6, learn_beta=True,
                                    learn_threshold=True, **extra).double()
    with torch.no_grad():
        lif.recurrent.weight.copy_(torch.randn(n, n) * 0.8)
        lif.delays.copy_(mixed_delays(tuple(lif.delays.shape), max_delay, 2))
    x = (torch.rand(T, B, n, dtype=DT) * 0.7).requires_grad_()
    target = torch.rand(T, B, n, dtype=DT)
    leaves = [x, lif.recurrent.weight, lif.recurrent.bias, lif.delays, lif.beta, lif.threshold]
    names = ("x", "weight", "bias", "delays", "beta", "threshold")

    def grads(s, m):
        return torch.autograd.grad(((m - target) ** 2).sum() + s.sum(), leaves)

    s_c, m_c = lif(x)  # the compiled sequence op where it is built, else the reference path
    g_c = grads(s_c, m_c)
    with monkeypatch.context() as mp:
        mp.setattr(_ops, "AVAILABLE", False)  # plain-PyTorch recurrent_leaky_sequence
        s, m = lif(x)
        g = grads(s, m)
    lif.reset_mem()
    outs = [lif(x[t]) for t in range(T)]
    s_st = torch.stack([o[0] for o in outs])
    m_st = torch.stack([o[1] for o in outs])
    assert s.sum() > 10
    assert torch.equal(s_st, s) and torch.equal(s_st, s_c)
    torch.testing.assert_close(m_st, m, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m_st, m_c, rtol=1e-12, atol=1e-12)
    g_st = grads(s_st, m_st)
    for name, u, v, w in zip(names, g_st, g, g_c):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10, msg=lambda msg: f"{name}: {msg}")
        # snnTorch's surrogates return float32 spikes whatever the input dtype, so the gradient
        # that reaches them is rounded to float32 (the step loop and the plain path share that);
        # the compiled op keeps float64 throughout. With a dtype-preserving surrogate all three agree
        tol = 1e-6 if spike_grad == "snntorch_atan" else 1e-10
        torch.testing.assert_close(u, w, rtol=tol, atol=tol * float(w.abs().max()),
                                   msg=lambda msg: f"{name} (compiled): {msg}")


def test_past_of_the_wrong_length_is_refused():
    p = RecurrentLeakyParameters(torch.tensor(0.9), torch.tensor(1.0), surrogate.atan())
    K = recurrent_history_length(4, 0.0)
    st = RecurrentLeakyState(torch.zeros(1, 2), torch.zeros(K + 1, 1, 2))
    with pytest.raises(ValueError, match="past"):
        recurrent_leaky_step(torch.zeros(1, 2), st, torch.eye(2), None, torch.ones(2), p, 4)


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
@pytest.mark.parametrize("interp,sigma", [("triangle", 0.0), ("triangle", 4.0), ("round", 1.3)])
def test_norse_functional_step_equals_full_taps(kind, interp, sigma):
    """The Norse-style functional step reads the same band (values and gradients as the
    full-tap step the Norse modules run)."""
    pytest.importorskip("norse")
    from norse.torch import LIFParameters

    from snn_delays_ext.norse import DelayedLIFState, delayed_lif_step, delayed_recurrent_input
    from snn_delays_ext.norse.functional import _step_with_taps

    torch.manual_seed(4)
    n_in, B, max_delay = 3, 2, 5
    a = _inputs(kind, sigma, max_delay, B, seed=4)
    w_in = (torch.randn(N, n_in, dtype=DT) * 2.0).requires_grad_()
    x = torch.rand(6, B, n_in, dtype=DT)
    p = LIFParameters(v_th=torch.as_tensor(0.2, dtype=DT))
    # a shorter stored past is zero-padded on the old end, as before
    past0 = a["past"][2:]
    r = delayed_recurrent_input(past0, a["weight"], a["delays"], max_delay, kind, sigma, interp)
    padded = torch.cat([past0.new_zeros((2,) + tuple(past0.shape[1:])), past0], 0)
    r_ref = full_tap_current(padded, a["weight"], None, a["delays"], max_delay, kind, sigma, interp)
    torch.testing.assert_close(r, r_ref, rtol=1e-12, atol=1e-12)

    def run(step):
        st = DelayedLIFState(x.new_zeros(B, N), x.new_zeros(B, N), x.new_zeros(B, N), past0)
        out = []
        for t in range(x.shape[0]):
            z, st = step(x[t], st)
            out.append(z)
        return torch.stack(out), st

    z, st = run(lambda xt, st: delayed_lif_step(xt, st, w_in, a["weight"], a["delays"], p, 1e-3,
                                                max_delay, kind, sigma, interp))
    taps = delay_taps(a["delays"], max_delay, sigma, 1, interp)
    z_ref, st_ref = run(lambda xt, st: _step_with_taps(xt, st, w_in, a["weight"], taps, p, 1e-3, kind))
    assert z.sum() > 0 and torch.equal(z, z_ref) and torch.equal(st.past, st_ref.past)
    torch.testing.assert_close(st.v, st_ref.v, rtol=1e-12, atol=1e-12)
    leaves = [w_in, a["past"], a["weight"], a["delays"]]
    loss = (z * torch.arange(z.numel(), dtype=DT).view(z.shape)).sum() + st.v.sum()
    loss_ref = (z_ref * torch.arange(z.numel(), dtype=DT).view(z.shape)).sum() + st_ref.v.sum()
    for u, v in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(loss_ref, leaves)):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-12)
