"""DelayedRecurrentLeaky against snnTorch's RLeaky, a loop-by-loop reference, gradcheck,
snnTorch's reset utility, state handling and bad input."""

import copy

import pytest
import snntorch as snn
import snntorch.utils
import torch
from snntorch import surrogate
from torch import nn

import snn_delays_ext as sde
from _rleaky_helpers import run_ref
from snn_delays_ext.functional import (
    RecurrentLeakyParameters,
    RecurrentLeakyState,
    recurrent_history_length,
    recurrent_leaky_sequence,
)

N = 6


def paired(reset_mechanism, reset_delay=True, spike_grad=None):
    """An snnTorch RLeaky and our layer with every lag 1 and identical weights."""
    ref = snn.RLeaky(beta=0.8, linear_features=N, threshold=0.7, reset_mechanism=reset_mechanism,
                     reset_delay=reset_delay, spike_grad=spike_grad)
    ours = sde.DelayedRecurrentLeaky(beta=0.8, linear_features=N, max_delay=5, threshold=0.7,
                                     reset_mechanism=reset_mechanism, reset_delay=reset_delay,
                                     delay_init=1.0, spike_grad=spike_grad)
    with torch.no_grad():
        ref.recurrent.weight.copy_(torch.randn(N, N) * 0.6)
        ours.recurrent.weight.copy_(ref.recurrent.weight)
        ours.recurrent.bias.copy_(ref.recurrent.bias)
    return ref, ours


@pytest.mark.parametrize("reset_mechanism", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
def test_lag_one_equals_snntorch_rleaky(reset_mechanism, reset_delay):
    ref, ours = paired(reset_mechanism, reset_delay)
    x = torch.rand(50, 4, N) * 0.8
    s_ref, m_ref = run_ref(ref, x)
    assert 0.05 < s_ref.mean() < 0.95  # the comparison exercises spikes and resets
    s_seq, m_seq = ours(x)
    assert torch.allclose(s_seq, s_ref, atol=1e-6) and torch.allclose(m_seq, m_ref, atol=1e-6)
    ours.reset_mem()
    outs = [ours(x[t]) for t in range(50)]
    assert torch.allclose(torch.stack([o[0] for o in outs]), s_ref, atol=1e-6)
    assert torch.allclose(torch.stack([o[1] for o in outs]), m_ref, atol=1e-6)


def test_lag_one_gradients_equal_snntorch():
    ref, ours = paired("subtract", spike_grad=surrogate.fast_sigmoid(slope=5))
    x = torch.rand(30, 3, N) * 0.8
    target = torch.rand(30, 3, N)
    s_ref, m_ref = run_ref(ref, x)
    loss_ref = ((m_ref - target) ** 2).sum() + s_ref.sum()
    g_ref = torch.autograd.grad(loss_ref, [ref.recurrent.weight, ref.recurrent.bias])
    s, m = ours(x)
    g = torch.autograd.grad(((m - target) ** 2).sum() + s.sum(), [ours.recurrent.weight, ours.recurrent.bias])
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_snntorch_return_conventions():
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4, init_hidden=True)
    out = lif(torch.rand(2, N))
    assert isinstance(out, torch.Tensor)
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4, init_hidden=True, output=True)
    assert len(lif(torch.rand(2, N))) == 2
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4)
    spk, mem = lif(torch.rand(2, N))
    with pytest.raises(TypeError, match="init_hidden"):
        sde.DelayedRecurrentLeaky(0.9, N, 4, init_hidden=True)(torch.rand(2, N), spk, mem)


def naive_recurrent(x, w, b, d, kind, max_delay, sigma, beta, thr):
    """Plain loops over the formula, subtract reset (snnTorch's reset from the previous mem)."""
    T, B, n = x.shape
    s = 1.0 + sigma
    kmax = recurrent_history_length(max_delay, sigma)
    mem = torch.zeros(B, n, dtype=x.dtype)
    spikes, mems = [], []
    for t in range(T):
        r = b.clone().expand(B, n).clone()
        for i in range(n):
            for j in range(n):
                l = float(d[j] if kind == "axonal" else d[i, j])
                l = min(max(l, 1.0), max_delay)
                for k in range(1, min(kmax, t) + 1):
                    h = max(0.0, s - abs(k - l)) / (s * s)
                    r[:, i] += w[i, j] * h * spikes[t - k][:, j]
        reset = (mem > thr).to(x.dtype)
        mem = beta * mem + x[t] + r - reset * thr
        spk = (mem > thr).to(x.dtype)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
@pytest.mark.parametrize("sigma", [0.0, 1.4])
def test_matches_naive_formula_and_step_mode(kind, sigma):
    lif = sde.DelayedRecurrentLeaky(0.85, 4, max_delay=5, delay_type=kind, sigma=sigma, threshold=0.6).double()
    with torch.no_grad():
        lif.recurrent.weight.copy_(torch.randn(4, 4) * 0.8)
    x = torch.rand(25, 3, 4, dtype=torch.float64) * 0.7
    s, m = lif(x)
    s_ref, m_ref = naive_recurrent(x, lif.recurrent.weight.detach(), lif.recurrent.bias.detach(),
                                   lif.delays.detach(), kind, 5, sigma, float(lif.beta), float(lif.threshold))
    assert s.sum() > 10
    assert torch.equal(s, s_ref) and torch.allclose(m, m_ref, atol=1e-12)
    lif.reset_mem()
    outs = [lif(x[t]) for t in range(25)]
    assert torch.equal(torch.stack([o[0] for o in outs]), s)
    assert torch.allclose(torch.stack([o[1] for o in outs]), m, atol=1e-12)


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
@pytest.mark.parametrize("reset_mechanism", ["none"])
def test_gradcheck_smooth_spike_function(kind, reset_mechanism):
    # the reset is detached (snnTorch's convention, checked against RLeaky's own gradients
    # above), which finite differences cannot see; without a reset every path is exact
    torch.manual_seed(1)
    n, T = 3, 7
    x = (torch.rand(T, 2, n, dtype=torch.float64) * 0.8).requires_grad_()
    w = (torch.randn(n, n, dtype=torch.float64) * 0.5).requires_grad_()
    b = (torch.randn(n, dtype=torch.float64) * 0.1).requires_grad_()
    shape = (n,) if kind == "axonal" else (n, n)
    d = (1.2 + torch.rand(shape, dtype=torch.float64) * 0.5 + torch.arange(n).double().reshape(-1)[: shape[-1]]).requires_grad_()
    beta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    thr = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def f(x, w, b, d, beta, thr):
        p = RecurrentLeakyParameters(beta, thr, lambda v: torch.sigmoid(4 * v), reset_mechanism)
        K = recurrent_history_length(5, 0.5)
        st = RecurrentLeakyState(x.new_zeros(2, n), x.new_zeros(K, 2, n))
        spk, mem, _ = recurrent_leaky_sequence(x, st, w, b, d, p, 5, kind, 0.5)
        return spk, mem

    assert torch.autograd.gradcheck(f, (x, w, b, d, beta, thr))


def test_snntorch_utils_reset_clears_membrane_spikes_and_delay_buffer():
    lif = sde.DelayedRecurrentLeaky(0.9, N, max_delay=6, init_hidden=True, delay_init=3.0)
    other = snn.Leaky(beta=0.5, init_hidden=True)
    net = nn.Sequential(nn.Linear(3, N), lif, nn.Linear(N, 2), other)
    x = torch.rand(20, 4, 3) * 2

    def run():
        return torch.stack([net(x[t]) for t in range(20)])

    first = run()
    assert lif._step_history().abs().sum() > 0 and lif.mem.abs().sum() > 0
    assert not torch.equal(run(), first)  # without a reset, the state carries over
    snntorch.utils.reset(net)
    assert lif.mem.abs().sum() == 0 and lif.spk.abs().sum() == 0 and lif._step_history().abs().sum() == 0
    assert torch.equal(run(), first)
    # our reset finds nested layers at any depth
    outer = nn.Sequential(nn.Sequential(net))
    sde.reset(outer)
    assert torch.equal(run(), first)


def test_state_passing_and_batch_checks():
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4)
    spk, mem = lif(torch.rand(3, N))
    with pytest.raises(ValueError, match="batch size"):
        lif(torch.rand(5, N))
    with pytest.raises(ValueError, match="mem: expected shape"):
        lif(torch.rand(3, N), spk, torch.zeros(5, N))
    lif.reset_mem()
    assert lif(torch.rand(5, N))[0].shape == (5, N)
    with pytest.raises(ValueError, match="zero state"):
        lif(torch.rand(4, 5, N), spk=torch.zeros(5, N))


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.rand(N), ValueError, "input_.*rank"),
        (torch.rand(2, 2, 3, N), ValueError, "input_.*rank"),
        (torch.rand(2, N + 1), ValueError, "input_.*features"),
        (torch.rand(2, N, dtype=torch.float64), TypeError, "input_.*dtype"),
        (torch.ones(2, N, dtype=torch.int32), TypeError, "input_.*floating"),
        (torch.full((2, N), float("inf")), ValueError, "input_.*finite"),
    ],
)
def test_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        sde.DelayedRecurrentLeaky(0.9, N, 4)(bad)


def test_bad_arguments_and_nan_delays():
    with pytest.raises(ValueError, match="max_delay"):
        sde.DelayedRecurrentLeaky(0.9, N, 0)
    with pytest.raises(ValueError, match="delay_type"):
        sde.DelayedRecurrentLeaky(0.9, N, 4, delay_type="dendritic")
    with pytest.raises(ValueError, match="reset_mechanism"):
        sde.DelayedRecurrentLeaky(0.9, N, 4, reset_mechanism="hard")
    with pytest.raises(ValueError, match="backward"):
        sde.DelayedRecurrentLeaky(0.9, N, 4, backward="exact")
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4)
    with torch.no_grad():
        lif.delays[2] = float("nan")
    with pytest.raises(ValueError, match="delays.*finite"):
        lif(torch.rand(10, 2, N))


def test_delay_ranges_init_and_parameter_split():
    lif = sde.DelayedRecurrentLeaky(0.9, 50, 12, delay_type="synaptic", learn_beta=True)
    assert lif.delays.shape == (50, 50)
    assert lif.delays.min() >= 1 and lif.delays.max() <= 12
    assert [p is lif.delays for p in lif.delay_parameters()] == [True]
    names = {id(p) for p in lif.weight_parameters()}
    assert id(lif.recurrent.weight) in names and id(lif.beta) in names and id(lif.delays) not in names
    with torch.no_grad():
        lif.delays.fill_(0.2)
    lif.clamp_delays_()
    assert torch.all(lif.delays == 1.0)


def test_state_dict_round_trip_is_exact():
    a = sde.DelayedRecurrentLeaky(0.9, N, 8, sigma=2.0, learn_threshold=True)
    b = sde.DelayedRecurrentLeaky(0.9, N, 8)
    b.load_state_dict(a.state_dict())
    x = torch.rand(30, 2, N)
    sa, ma = a(x)
    sb, mb = b(x)
    assert b.sigma == 2.0 and torch.equal(sa, sb) and torch.equal(ma, mb)


def test_float64_and_round_mode_quantized_equals_triangle():
    lif = sde.DelayedRecurrentLeaky(0.9, N, 8, sigma=1.0).double()
    x = torch.rand(40, 2, N, dtype=torch.float64)
    lif.quantize_delays()
    s_tri, m_tri = lif(x)
    lif.interpolation = "round"
    s_round, m_round = lif(x)
    assert s_tri.dtype == torch.float64
    assert torch.equal(s_tri, s_round) and torch.allclose(m_tri, m_round, atol=1e-12)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    lif = sde.DelayedRecurrentLeaky(0.9, N, 8, sigma=1.0)
    x = torch.rand(40, 3, N)
    s, m = lif(x)
    m.sum().backward()
    gl = copy.deepcopy(lif).cuda()
    gl.zero_grad()
    sc, mc = gl(x.cuda())
    mc.sum().backward()
    assert torch.allclose(mc.cpu(), m, atol=1e-5)
    assert torch.allclose(gl.delays.grad.cpu(), lif.delays.grad, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match="device"):
        gl(x)


def test_snntorch_init_rleaky_pattern_is_accepted():
    # snnTorch's loop: spk, mem = lif.init_rleaky(); spk, mem = lif(x, spk, mem)
    ref, ours = paired("subtract")
    x = torch.rand(20, 3, N)
    s_ref, m_ref = run_ref(ref, x)
    spk, mem = ours.init_rleaky()
    out = []
    for t in range(20):
        spk, mem = ours(x[t], spk, mem)
        out.append(mem)
    assert torch.allclose(torch.stack(out), m_ref, atol=1e-6)
