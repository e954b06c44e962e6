"""DelayedRecurrentLeaky's snnTorch options (graded spikes, state quantisation, inhibition,
one-to-one recurrence ``all_to_all=False``), truncated BPTT with snnTorch's idioms and bad
neuron parameters, each against snnTorch's own ``RLeaky`` with every recurrent lag 1."""

import pytest
import snntorch as snn
import torch
from snntorch import surrogate
from snntorch.functional import quant

import snn_delays_ext as sde
import snntorch.utils
from _rleaky_helpers import run_ref

N = 6


def pair(**kw):
    """snnTorch's RLeaky and ours, every recurrent lag 1, same weights."""
    torch.manual_seed(0)
    one_to_one = kw.get("all_to_all") is False
    ref = snn.RLeaky(beta=0.8, threshold=0.7, linear_features=None if one_to_one else N, **kw)
    ours = sde.DelayedRecurrentLeaky(beta=0.8, threshold=0.7, linear_features=N, max_delay=4,
                                     delay_init=1.0,
                                     delay_type="axonal", **kw)
    if not one_to_one:
        with torch.no_grad():
            ref.recurrent.weight.copy_(torch.randn(N, N) * 0.6)
            ours.recurrent.weight.copy_(ref.recurrent.weight)
            ours.recurrent.bias.copy_(ref.recurrent.bias)
    return ref, ours


def assert_same_run(ref, ours, x, grads=()):
    s_ref, m_ref = run_ref(ref, x)
    assert 0.02 < (s_ref != 0).float().mean() < 0.98  # spikes and resets are exercised
    s, m = ours(x)
    torch.testing.assert_close(s, s_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m, m_ref, atol=1e-5, rtol=1e-5)
    ours.reset_mem()
    steps = [ours(x[t]) for t in range(x.shape[0])]
    torch.testing.assert_close(torch.stack([o[0] for o in steps]), s_ref, atol=1e-5, rtol=1e-5)
    for name in grads:
        target = torch.rand_like(m_ref)
        g_ref = torch.autograd.grad(((m_ref - target) ** 2).sum() + s_ref.sum(),
                                    [getattr(ref, name)] if "." not in name else
                                    [ref.get_parameter(name)])
        s, m = ours(x)
        g = torch.autograd.grad(((m - target) ** 2).sum() + s.sum(),
                                [getattr(ours, name)] if "." not in name else
                                [ours.get_parameter(name)])
        torch.testing.assert_close(g[0], g_ref[0], atol=1e-4, rtol=1e-4)
        s_ref, m_ref = run_ref(ref, x)


@pytest.mark.parametrize("reset_delay", [True, False])
def test_graded_spikes_factor_matches_snntorch(reset_delay):
    ref, ours = pair(reset_delay=reset_delay, spike_grad=surrogate.fast_sigmoid(slope=5))
    for layer in (ref, ours):
        layer.graded_spikes_factor = torch.tensor(0.5)
    x = torch.rand(40, 3, N) * 0.8
    assert_same_run(ref, ours, x, grads=("recurrent.weight",))
    assert set(ours(x)[0].unique().tolist()) <= {0.0, 0.5}


def test_learnable_graded_spikes_factor_gets_snntorchs_gradient():
    """RLeaky takes no graded-spike arguments; a user sets the attribute (here learnable)."""
    ref, ours = pair(spike_grad=surrogate.fast_sigmoid(slope=5))
    for layer in (ref, ours):
        layer.graded_spikes_factor = torch.nn.Parameter(torch.tensor(0.8))
    x = torch.rand(30, 3, N)
    assert_same_run(ref, ours, x, grads=("graded_spikes_factor",))


@pytest.mark.parametrize("reset_mechanism", ["subtract", "zero"])
def test_state_quant_matches_snntorch(reset_mechanism):
    q = quant.state_quant(num_bits=4, uniform=True, threshold=0.7)
    ref, ours = pair(state_quant=q, reset_mechanism=reset_mechanism)
    x = torch.rand(40, 3, N) * 0.8
    assert_same_run(ref, ours, x)


@pytest.mark.parametrize("reset_delay", [True, False])
def test_inhibition_matches_snntorch(reset_delay):
    ref, ours = pair(inhibition=True, reset_delay=reset_delay)
    x = torch.rand(40, 3, N) * 1.2
    assert_same_run(ref, ours, x)
    assert ((ours(x)[0] != 0).sum(-1) <= 1).all()  # at most one spike per sample and step


@pytest.mark.parametrize("V", [0.5, torch.linspace(-0.5, 0.9, N)])
def test_one_to_one_recurrence_matches_snntorch(V):
    ref, ours = pair(all_to_all=False, V=V, learn_recurrent=True,
                     spike_grad=surrogate.fast_sigmoid(slope=5))
    assert ours.linear_features == N and not hasattr(ours.recurrent, "weight")
    x = torch.rand(40, 3, N) * 0.8
    assert_same_run(ref, ours, x, grads=("V",))
    with pytest.raises(ValueError, match="delay_type.*axonal"):
        sde.DelayedRecurrentLeaky(0.9, N, 4, all_to_all=False, delay_type="synaptic")
    with pytest.raises(ValueError, match=r"V: expected a scalar or shape \(6,\)"):
        sde.DelayedRecurrentLeaky(0.9, N, 4, all_to_all=False, delay_type="axonal",
                                  V=torch.ones(N + 1))


def test_one_to_one_delays_shift_each_neurons_self_input():
    """A neuron's only recurrent input is its own spike ``d`` steps earlier, times V."""
    lif = sde.DelayedRecurrentLeaky(beta=0.0, linear_features=2, max_delay=5, threshold=1.0,
                                    all_to_all=False, V=2.0, delay_type="axonal",
                                    reset_mechanism="none")
    with torch.no_grad():
        lif.delays.copy_(torch.tensor([2.0, 3.0]))
    x = torch.zeros(8, 1, 2)
    x[0] = 1.5  # both neurons spike at step 0 (beta 0: membrane = input + recurrent)
    spk, mem = lif(x)
    # neuron 0 gets 2.0 back at step 2 (spikes again), then at 4 and 6; neuron 1 at 3 and 6
    assert spk[:, 0, 0].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert spk[:, 0, 1].tolist() == [1, 0, 0, 1, 0, 0, 1, 0]


def test_truncated_bptt_with_detached_spikes_passed_back():
    """snnTorch's tutorial idiom: detach spk and mem between chunks, keep going."""
    lif = sde.DelayedRecurrentLeaky(0.9, N, max_delay=5, delay_init=3.0)
    opt = torch.optim.SGD(lif.parameters(), lr=0.01)
    spk, mem = lif.init_rleaky()
    x = torch.rand(4, 10, 2, N)
    for chunk in x:
        outs = []
        for t in range(chunk.shape[0]):
            spk, mem = lif(chunk[t], spk, mem)
            outs.append(mem)
        opt.zero_grad()
        torch.stack(outs).sum().backward()  # a second chunk used to fail here
        opt.step()
        spk, mem = spk.detach(), mem.detach()
    assert lif.delays.grad is not None and torch.isfinite(lif.delays.grad).all()


def test_truncated_bptt_with_detach_hidden_and_init_hidden(monkeypatch):
    # detach_hidden() walks snnTorch's global instance list; other tests' neurons (snnTorch's
    # own RLeaky with state_quant keeps a view as mem, which detach_() rejects) stay out
    monkeypatch.setattr(snn.SpikingNeuron, "instances", [])
    lif = sde.DelayedRecurrentLeaky(0.9, N, max_delay=5, delay_init=3.0, init_hidden=True)
    x = torch.rand(3, 8, 2, N)
    for chunk in x:
        out = torch.stack([lif(chunk[t]) for t in range(chunk.shape[0])])
        (out.sum() + lif.mem.sum()).backward()
        snn.RLeaky.detach_hidden()
    assert lif.delays.grad is not None


def test_without_detaching_the_graph_carries_over():
    """Not detaching keeps the delay buffer's graph: BPTT across the chunks, as in snnTorch."""
    lif = sde.DelayedRecurrentLeaky(0.9, N, max_delay=5, delay_init=3.0)
    spk, mem = lif.init_rleaky()
    x = torch.rand(12, 2, N) * 2
    for t in range(12):
        spk, mem = lif(x[t], spk, mem)
    assert lif._step_history().requires_grad and spk.requires_grad


@pytest.mark.parametrize("name", ["spk", "mem"])
def test_nan_state_is_rejected(name):
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4)
    spk, mem = lif(torch.rand(2, N))
    state = {"spk": spk, "mem": mem}
    state[name] = torch.full((2, N), float("nan"))
    with pytest.raises(ValueError, match=f"{name}.*finite"):
        lif(torch.rand(2, N), state["spk"], state["mem"])


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        ({"beta": torch.full((N + 2,), 0.9)}, ValueError, r"beta: expected a scalar or shape \(6,\)"),
        ({"beta": torch.full((2, N), 0.9)}, ValueError, "beta: expected a scalar"),
        ({"beta": float("nan")}, ValueError, "beta: expected finite"),
        ({"beta": "0.9"}, TypeError, "beta: expected a float"),
        ({"threshold": torch.ones(3)}, ValueError, "threshold: expected a scalar"),
        ({"threshold": float("inf")}, ValueError, "threshold: expected finite"),
        ({"conv2d_channels": 4, "kernel_size": 3}, ValueError, "conv2d_channels"),
        ({"inhibition": 1}, TypeError, "inhibition: expected a bool"),
        ({"state_quant": 3}, TypeError, "state_quant"),
    ],
)
def test_bad_neuron_arguments(kw, exc, match):
    args = {"beta": 0.9, **kw}
    with pytest.raises(exc, match=match):
        sde.DelayedRecurrentLeaky(linear_features=N, max_delay=4, **args)


def test_diverged_learned_threshold_is_reported():
    lif = sde.DelayedRecurrentLeaky(0.9, N, 4, learn_threshold=True)
    with torch.no_grad():
        lif.threshold.fill_(float("nan"))
    with pytest.raises(ValueError, match="threshold.*finite"):
        lif(torch.rand(5, 2, N))


def test_autocast_after_nn_linear():
    """Mixed precision (bfloat16 on CPU): an nn.Linear in front no longer breaks the layer; it
    computes in float32 and returns autocast's dtype, close to the float32 run."""
    torch.manual_seed(0)
    fc = torch.nn.Linear(3, N)
    lif = sde.DelayedRecurrentLeaky(0.8, N, max_delay=4, delay_init=2.0, threshold=0.5)
    x = torch.rand(10, 2, 3)
    s_ref, m_ref = lif(fc(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        s, m = lif(fc(x))
        lif.reset_mem()
        s1, m1 = lif(fc(x[0]))
    assert s.dtype == m.dtype == s1.dtype == torch.bfloat16
    torch.testing.assert_close(m.float(), m_ref, atol=0.1, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(TypeError, match="float64"):
        lif(x.double()[..., :1].expand(10, 2, N))


def test_snntorch_loop_with_a_smaller_last_batch():
    """The README's loop (``spk, mem = lif.init_rleaky()`` before each batch) works when the
    batch size changes, as with snnTorch's RLeaky (a loader's smaller last batch)."""
    lif = sde.DelayedRecurrentLeaky(0.9, N, max_delay=4, delay_init=2.0)
    ref = snn.RLeaky(beta=0.9, linear_features=N)
    for B in (4, 8, 3):
        for layer in (lif, ref):
            spk, mem = layer.init_rleaky()
            for t in range(5):
                spk, mem = layer(torch.rand(B, N), spk, mem)
            assert spk.shape == mem.shape == (B, N)
    snntorch.utils.reset(torch.nn.Sequential(lif))
    spk, mem = lif.init_rleaky()
    assert lif(torch.rand(2, N), spk, mem)[0].shape == (2, N)


def test_failed_constructor_leaves_no_half_built_layer_for_snntorch_reset():
    """snnTorch lists every neuron in a global list at construction; a constructor that raises
    afterwards must not leave a half-built layer there for ``snntorch.utils.reset`` to trip on."""
    before = list(snn.SpikingNeuron.instances)
    with pytest.raises(ValueError, match="max_delay"):
        sde.DelayedRecurrentLeaky(0.9, N, max_delay=0)
    with pytest.raises(ValueError, match="delay_init"):
        sde.DelayedRecurrentLeaky(0.9, N, max_delay=3, delay_init="nope")
    assert snn.SpikingNeuron.instances == before
    snn.RLeaky.reset_hidden()  # walks every instance: must not fail


@pytest.mark.parametrize("delay_type", ["axonal", "synaptic"])
def test_torch_func_vmap_and_per_sample_gradients_with_a_functorch_surrogate(delay_type):
    """With :func:`snn_delays_ext.surrogate.triangle` (a functorch-ready autograd Function) the
    recurrent layer runs under ``torch.func.vmap`` and ``grad``: the same outputs as a loop over
    the mapped axis, and per-sample gradients equal to autograd's one sample at a time.
    snnTorch's own surrogates (``forward(ctx, ...)``) are refused by functorch, as for RLeaky."""
    from torch.func import functional_call, grad, vmap

    torch.manual_seed(3)
    lif = sde.DelayedRecurrentLeaky(0.85, 4, max_delay=4, delay_type=delay_type, sigma=1.0, threshold=0.5,
                                    spike_grad=sde.surrogate.triangle(), learn_beta=True).double()
    xs = torch.rand(5, 12, 2, 4, dtype=torch.float64)

    def run(p, x):
        lif.reset_mem()
        spk, mem = functional_call(lif, p, (x,))
        return spk, mem

    params = {k: v.detach() for k, v in lif.named_parameters()}
    spk_v, mem_v = vmap(run, in_dims=(None, 0))(params, xs)
    loop = [run(params, x) for x in xs]
    assert 0 < float(spk_v.mean()) < 1
    torch.testing.assert_close(spk_v, torch.stack([s for s, _ in loop]), rtol=0, atol=0)
    torch.testing.assert_close(mem_v, torch.stack([m for _, m in loop]), rtol=1e-12, atol=1e-12)

    def loss(p, x):
        spk, mem = run(p, x)
        return (mem ** 2).sum() + spk.sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, xs)
    for i, x in enumerate(xs):
        lif.zero_grad()
        lif.reset_mem()
        spk, mem = lif(x)
        ((mem ** 2).sum() + spk.sum()).backward()
        for name, p in lif.named_parameters():
            torch.testing.assert_close(per_sample[name][i], p.grad, rtol=1e-10, atol=1e-12,
                                       msg=lambda m: f"{name}: {m}")


def _atan_slope(u):
    v = torch.tensor(u, requires_grad=True)
    surrogate.atan()(v).backward()
    return float(v.grad)


@pytest.mark.parametrize("mechanism", ["zero", "subtract"])
def test_detach_reset_hand_computed_gradient(mechanism):
    # one neuron, recurrent weight and bias 0, beta 0.5, threshold 1, inputs 1.5, 0.3, 0.5,
    # reset in the spike's step. Membranes: 1.5 (spike) -> 0 (zero) / 0.5 (subtract), then
    # 0.3 / 0.55, then 0.65 / 0.775: no more spikes. d spk_2 / d I_0 passes through the reset of
    # step 0: with detach_reset its factor is d mem_0' / d mem_0 = 1 - s_0 = 0 (zero) or 1
    # (subtract); snnTorch's adds -mem_0 s'(0.5) (zero) or -1 * s'(0.5) (subtract). Step 1 has
    # no spike, and its reset term's slope (-mem_1 s'(mem_1 - 1) for zero, -s'(mem_1 - 1) for
    # subtract) enters only without detaching.
    def grad_of_input(detach):
        layer = sde.DelayedRecurrentLeaky(beta=0.5, linear_features=1, max_delay=2, delay_init=1.0,
                                          reset_mechanism=mechanism, reset_delay=False, detach_reset=detach,
                                          spike_grad=surrogate.atan())
        with torch.no_grad():
            layer.recurrent.weight.zero_()
            layer.recurrent.bias.zero_()
        x = torch.tensor([1.5, 0.3, 0.5]).view(3, 1, 1).requires_grad_(True)
        spk, _ = layer(x)
        assert spk.flatten().tolist() == [1.0, 0.0, 0.0]
        spk[2].sum().backward()
        return x.grad.flatten()

    ds = _atan_slope
    m1, m2 = (0.3, 0.65) if mechanism == "zero" else (0.55, 0.775)
    out = ds(m2 - 1)
    det = grad_of_input(True)
    step0 = 0.0 if mechanism == "zero" else 1.0
    assert float(det[2]) == pytest.approx(out, rel=1e-6)
    assert float(det[1]) == pytest.approx(out * 0.5, rel=1e-6)
    assert float(det[0]) == pytest.approx(out * 0.5 * 0.5 * step0, rel=1e-6, abs=1e-12)
    snt = grad_of_input(False)
    step1 = 1.0 - (m1 if mechanism == "zero" else 1.0) * ds(m1 - 1)
    step0 = (1.0 - 1.0 - 1.5 * ds(0.5)) if mechanism == "zero" else (1.0 - ds(0.5))
    assert float(snt[2]) == pytest.approx(out, rel=1e-6)
    assert float(snt[1]) == pytest.approx(out * 0.5 * step1, rel=1e-5)
    assert float(snt[0]) == pytest.approx(out * 0.5 * step1 * 0.5 * step0, rel=1e-5)


def test_detach_reset_keeps_snntorchs_values_and_changes_only_gradients():
    ref, ours = pair(reset_mechanism="zero", reset_delay=False)
    ours.detach_reset = True
    x = torch.randn(25, 3, N) * 1.5
    assert_same_run(ref, ours, x)  # forward values: snnTorch's RLeaky's
    ours.reset_mem()
    x.requires_grad_(True)
    ours(x)[0].sum().backward()
    g_det = x.grad.clone()
    x.grad = None
    ours.detach_reset = False
    ours.reset_mem()
    ours(x)[0].sum().backward()
    assert not torch.allclose(g_det, x.grad)
    with pytest.raises(TypeError, match="detach_reset"):
        sde.DelayedRecurrentLeaky(beta=0.5, linear_features=2, max_delay=2, detach_reset="yes")
