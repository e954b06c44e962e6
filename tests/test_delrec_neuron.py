"""DelRec's recurrent layer, written step by step from its equations, against ours.

``_delrec_layer`` below is an independent implementation of the DelRec recurrent layer as its
paper and code describe it (Queant et al. 2025; spikingjelly's LIF neuron):

* charge: ``V <- V (1 - 1/tau) + X_t + m * R_t`` (no input decay), where ``R_t`` is the delayed
  recurrent current arriving now and ``m`` the recurrent-dropout mask of the sequence;
* fire: ``S_t = H(V - v_th)`` (surrogate derivative backward);
* reset in the same step: hard (``V <- V (1 - S)``, reset to 0) or soft (``V <- V - v_th S``),
  the reset term detached or not;
* the new spikes are spread into a buffer of future currents: neuron ``j``'s spike reaches ``i``
  ``k >= 1`` steps later with weight ``W_ij max(0, s_j - |k - (1 + d_j)|) / s_j^2``, with
  ``s_j = 1 + sigma`` or, with the learnable width, ``1 + 2 sigma sigmoid(p_j)``.

It shares no code with the library. Our layer must give the same spikes, membranes and
gradients (input, recurrent weights, delays, widths) in float64: DelRec's delay ``d`` is our
lag ``1 + d`` and ``beta = 1 - 1/tau``.
"""

from __future__ import annotations

import math

import pytest
import torch

from snn_delays_ext import DelayedRecurrentLeaky
from snn_delays_ext.functional import RecurrentLeakyParameters, recurrent_leaky_sequence
from snn_delays_ext.ops import AVAILABLE
from snn_delays_ext.surrogate import triangle

BACKENDS = ["reference"] + (["compiled"] if AVAILABLE else [])


class _ATan(torch.autograd.Function):
    """spikingjelly's ATan surrogate: H(x) forward, alpha / 2 / (1 + (pi/2 alpha x)^2) back."""

    @staticmethod
    def forward(ctx, x, alpha):  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return g * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


class _Tri(torch.autograd.Function):
    """DelRec's triangle surrogate (gamma = 1): H(x) forward, max(0, 1 - |x|) backward."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.clamp(1 - x.abs(), min=0)


def _delrec_layer(x, w, d, tau, hard_reset, detach_reset, sigma, p, mask, surrogate, synaptic=False):
    """DelRec's recurrent delayed LIF over x (T, B, N), step by step; returns (spikes, membranes)."""
    T, B, N = x.shape
    s = 1 + 2 * sigma * torch.sigmoid(p) if p is not None else torch.full((N,), 1.0 + sigma, dtype=x.dtype)
    L = int(math.ceil(1 + float(d.detach().max()) + float(s.detach().max()))) + 1
    k = torch.arange(L, dtype=x.dtype)
    if synaptic:  # d[i, j]: post i, pre j; width per presynaptic neuron j
        taps = torch.clamp(s[None, :, None] - (k - (1 + d[..., None])).abs(), min=0) / s[None, :, None] ** 2
    else:
        taps = torch.clamp(s[:, None] - (k - (1 + d[:, None])).abs(), min=0) / s[:, None] ** 2  # (N_pre, L)
    buf = [x.new_zeros(B, N) for _ in range(L)]  # buf[m]: current arriving m steps from now
    v = x.new_zeros(B, N)
    spikes, mems = [], []
    for t in range(T):
        rec_now = buf[0] * mask if mask is not None else buf[0]
        v = v * (1 - 1 / tau) + x[t] + rec_now
        spk = surrogate(v - 1.0)
        r = spk.detach() if detach_reset else spk
        v = v * (1 - r) if hard_reset else v - r * 1.0
        spikes.append(spk)
        mems.append(v)
        buf = buf[1:] + [x.new_zeros(B, N)]
        for m in range(1, L):  # tap 0 is dropped: a spike never arrives in its own step
            if synaptic:
                add = torch.einsum("ij,bj->bi", w * taps[..., m], spk)
            else:
                add = (spk * taps[:, m]) @ w.t()
            buf[m - 1] = buf[m - 1] + add
    return torch.stack(spikes), torch.stack(mems)


def _ours(x, w, d, tau, hard_reset, detach_reset, sigma, p, mask, spike_grad, backend, synaptic=False):
    params = RecurrentLeakyParameters(
        torch.tensor(1 - 1 / tau, dtype=x.dtype), torch.tensor(1.0, dtype=x.dtype), spike_grad,
        "zero" if hard_reset else "subtract", reset_delay=False, detach_reset=detach_reset,
        recurrent_scale=mask, width=None if p is None else torch.sigmoid(p), reset_convention="spikingjelly")
    tap_sigma = 2 * sigma if p is not None else sigma
    spk, mem, _ = recurrent_leaky_sequence(x, None, w, None, 1 + d, params, 40, "synaptic" if synaptic else "axonal",
                                           tap_sigma, "triangle", backend=backend)
    return spk, mem


# DelRec's three neurons: SHD (tau 1.05, hard reset, detached, ATan 5), SSC / PS-MNIST (tau 2,
# soft reset, not detached, triangle), each with and without its width and dropout options
CASES = [
    pytest.param(1.05, True, True, "atan", 4.0, False, 0.2, id="shd-neuron"),
    pytest.param(2.0, False, False, "triangle", 3.0, True, 0.3, id="ssc-neuron-width"),
    pytest.param(2.0, False, False, "triangle", 0.5, True, 0.0, id="psmnist-neuron-narrow"),
    pytest.param(2.0, True, False, "atan", 0.0, False, 0.0, id="hard-reset-with-gradient"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("synaptic", [False, True], ids=["axonal", "synaptic"])
@pytest.mark.parametrize("tau,hard,detach,surr,sigma,width,drop", CASES)
def test_matches_delrec_equations(backend, synaptic, tau, hard, detach, surr, sigma, width, drop):
    torch.manual_seed(3)
    T, B, N = 40, 3, 7
    dt = torch.float64
    x = (torch.rand(T, B, N, dtype=dt) * (2.4 if tau > 1.5 else 1.6)).requires_grad_()
    w = (torch.randn(N, N, dtype=dt) / math.sqrt(N)).requires_grad_()
    d = (torch.rand((N, N) if synaptic else (N,), dtype=dt) * 12 + 0.3).requires_grad_()
    p = (torch.randn(N, dtype=dt)).requires_grad_() if width else None
    mask = (torch.rand(B, N, dtype=dt) > drop).to(dt) / (1 - drop) if drop else None
    if surr == "atan":
        theirs_fn, ours_fn = (lambda v: _ATan.apply(v, 5.0)), __import__("snntorch").surrogate.atan(alpha=5.0)
    else:
        theirs_fn, ours_fn = _Tri.apply, triangle(1.0)
    readout = torch.randn(T, B, N, dtype=dt)
    leaves = [x, w, d] + ([p] if p is not None else [])

    def run(fn):
        spk, mem = fn()
        loss = (spk * readout).sum() + 0.1 * (mem * readout.flip(0)).sum()
        return (spk.detach(), mem.detach()) + torch.autograd.grad(loss, leaves)

    theirs = run(lambda: _delrec_layer(x, w, d, tau, hard, detach, sigma, p, mask, theirs_fn, synaptic))
    ours = run(lambda: _ours(x, w, d, tau, hard, detach, sigma, p, mask, ours_fn, backend, synaptic))
    assert theirs[0].sum() > 0 and theirs[0].mean() < 0.9, "the case must have spikes and silences"
    names = ["spikes", "membranes", "grad x", "grad weight", "grad delays", "grad width logit"]
    # snnTorch's atan returns float32 spikes, so its surrogate derivative is float32 on the
    # plain-PyTorch path (the kernels compute it in float64)
    tol = 1e-6 if (surr == "atan" and backend == "reference") else 1e-9
    for name, a, b in zip(names, theirs, ours):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol, msg=f"{name} differs")


def test_layer_dropout_mask_is_one_draw_per_sequence():
    """The layer draws one Bernoulli mask per sequence and (sample, neuron): the result equals
    the functional op with that mask, which the same random draw reproduces."""
    N, B, T, p = 6, 4, 25, 0.4
    lif = DelayedRecurrentLeaky(0.5, N, max_delay=6, recurrent_dropout=p, bias=False, reset_delay=False,
                                reset_mechanism="zero", spike_grad=triangle())
    x = torch.rand(T, B, N) * 1.5
    torch.manual_seed(11)
    spk, mem = lif(x)
    torch.manual_seed(11)
    mask = torch.empty(B, N).bernoulli_(1 - p) / (1 - p)
    assert 0 < int((mask == 0).sum()) < B * N
    params = lif._params()._replace(recurrent_scale=mask)
    spk2, mem2, _ = recurrent_leaky_sequence(x, None, lif.recurrent.weight, None, lif.delays, params, 6)
    torch.testing.assert_close(mem, mem2)
    lif.eval()  # no dropout in evaluation
    _, mem_eval = lif(x)
    params = lif._params()
    _, mem_ref, _ = recurrent_leaky_sequence(x, None, lif.recurrent.weight, None, lif.delays, params, 6)
    torch.testing.assert_close(mem_eval, mem_ref)
    assert params.recurrent_scale is None


def test_layer_step_mode_keeps_the_mask_until_reset():
    N, B = 5, 3
    lif = DelayedRecurrentLeaky(0.5, N, max_delay=4, recurrent_dropout=0.5)
    x = torch.rand(8, B, N)
    lif(x[0])
    first = lif._rec_mask.clone()
    for t in range(1, 8):
        lif(x[t])
        assert torch.equal(lif._rec_mask, first)
    lif.reset_mem()
    assert lif._rec_mask is None


def test_learn_width_parameter_and_history():
    lif = DelayedRecurrentLeaky(0.9, 5, max_delay=10, sigma=3.0, learn_width=True)
    assert lif.width_logit.shape == (5,) and torch.all(lif.width_logit == 0)
    # the history spans the widest triangle, 1 + 2 sigma: lags up to 10 + ceil(7) - 1
    assert lif._tap_sigma == 6.0
    spk, mem = lif(torch.rand(30, 2, 5) * 2)
    (mem.sum() + spk.sum()).backward()
    assert lif.width_logit.grad is not None and torch.isfinite(lif.width_logit.grad).all()
    # at p = 0 the widths are 1 + sigma: the same layer without learn_width
    plain = DelayedRecurrentLeaky(0.9, 5, max_delay=10, sigma=3.0)
    plain.load_state_dict({k: v for k, v in lif.state_dict().items() if k != "width_logit"}, strict=False)
    x = torch.rand(30, 2, 5) * 2
    torch.testing.assert_close(plain(x)[1], lif(x)[1])


@pytest.mark.parametrize("kwargs,match", [
    ({"recurrent_dropout": 1.0}, "recurrent_dropout"),
    ({"recurrent_dropout": -0.1}, "recurrent_dropout"),
    ({"recurrent_dropout": "0.2"}, "recurrent_dropout"),
    ({"learn_width": 1}, "learn_width"),
])
def test_bad_options(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        DelayedRecurrentLeaky(0.9, 4, max_delay=5, **kwargs)


def test_functional_checks_scale_and_width():
    x = torch.rand(5, 2, 3)
    p = RecurrentLeakyParameters(torch.tensor(0.9), torch.tensor(1.0), triangle(),
                                 recurrent_scale=torch.ones(3, 3))
    with pytest.raises(ValueError, match="recurrent_scale"):
        recurrent_leaky_sequence(x, None, torch.eye(3), None, torch.ones(3), p, 4)
    p = p._replace(recurrent_scale=None, width=torch.ones(2))
    with pytest.raises(ValueError, match="width"):
        recurrent_leaky_sequence(x, None, torch.eye(3), None, torch.ones(3), p, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reset_conventions_differ_only_when_a_membrane_stays_above_threshold(backend):
    """snnTorch's same-step subtractive reset tests a membrane still above threshold after its
    reset only after subtracting again; spikingjelly's tests the charged membrane. Under weak
    drive they agree; under a drive of more than twice the threshold they differ. With a zero
    reset they always agree."""
    torch.manual_seed(0)
    N, B, T = 5, 2, 30
    w, d = torch.randn(N, N, dtype=torch.float64) * 0.1, torch.full((N,), 2.0, dtype=torch.float64)

    def run(x, mech, conv):
        params = RecurrentLeakyParameters(torch.tensor(0.9, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                                          triangle(), mech, reset_delay=False, reset_convention=conv)
        return recurrent_leaky_sequence(x, None, w, None, d, params, 4, backend=backend)[:2]

    weak = torch.rand(T, B, N, dtype=torch.float64) * 0.3
    strong = torch.zeros(T, B, N, dtype=torch.float64)
    strong[0], strong[15] = 2.5, 2.8  # a pulse leaves the membrane at 1.5 / 1.8 after its reset
    for a, b in zip(run(weak, "subtract", "snntorch"), run(weak, "subtract", "spikingjelly")):
        torch.testing.assert_close(a, b)
    sn, sj = run(strong, "subtract", "snntorch"), run(strong, "subtract", "spikingjelly")
    # next step, 0.9 * 1.5 = 1.35: spikingjelly fires on it, snnTorch tests 1.35 - 1 and does not
    assert torch.all(sj[0][1] == 1) and torch.all(sn[0][1] == 0)
    assert torch.all(sn[0][0] == 1) and torch.all(sj[0][0] == 1)
    for a, b in zip(run(strong, "zero", "snntorch"), run(strong, "zero", "spikingjelly")):
        torch.testing.assert_close(a, b)


def test_spikingjelly_convention_needs_same_step_reset():
    with pytest.raises(ValueError, match="reset_convention"):
        DelayedRecurrentLeaky(0.9, 4, max_delay=5, reset_convention="spikingjelly")
    with pytest.raises(ValueError, match="reset_convention"):
        DelayedRecurrentLeaky(0.9, 4, max_delay=5, reset_delay=False, reset_convention="jelly")
