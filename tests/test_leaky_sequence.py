"""The fused sequence LIF op (``torch.ops.snn_delays_ext.leaky_sequence``) and
:func:`snn_delays_ext.functional.leaky_sequence`: snnTorch's ``Leaky`` stepped over a sequence.

Oracles: snnTorch 1.0's own ``snn.Leaky`` in a step loop (float32, every reset, reset timing,
surrogate and parameter shape), the plain-PyTorch reference (float64, 1e-9, hypothesis over
shapes and drives), finite differences (``gradcheck``) where the function is smooth.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.surrogate as sg
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_delays_ext import ops
from snn_delays_ext.functional import LeakyParameters, leaky_sequence, leaky_step
from snn_delays_ext.functional.leaky_sequence import leaky_sequence_choice
from snn_delays_ext.surrogate import triangle
from snn_delays_ext.train import FeedForwardSNN
from snn_delays_ext.train import models as M

from _kernel_helpers import SNNTORCH_SURROGATES, SURROGATES, assert_float32_grads_as_accurate, case_seed

compiled = pytest.mark.skipif("cpu" not in ops.leaky_sequence_devices(),
                              reason=f"compiled leaky_sequence not built: {ops.LOAD_ERROR}")
OPS = torch.ops.snn_delays_ext if ops.AVAILABLE else None
RESETS = ["subtract", "zero", "none"]


def _snntorch_loop(lif: torch.nn.Module, x: torch.Tensor):
    mem = lif.init_leaky()
    spikes, mems = [], []
    for xt in x.unbind(0):
        spk, mem = lif(xt, mem)
        spikes.append(spk)
        mems.append(mem)
    return torch.stack(spikes), torch.stack(mems)


def _close(a: torch.Tensor, e: torch.Tensor, rel: float, terms: int = 1) -> None:
    """``a == e`` to ``rel`` of the larger of 1 and ``e``'s largest magnitude, times the square
    root of the number of ``terms`` each entry sums (the beta and threshold gradients sum over
    time and batch, rounded in another order in C++ than in autograd)."""
    scale = max(1.0, float(e.abs().max())) if e.numel() else 1.0
    torch.testing.assert_close(a, e, rtol=0.0, atol=rel * scale * max(1, terms) ** 0.5)


def _close_grads(got, expected, x: torch.Tensor, rel: float = 2e-6) -> None:
    for a, e in zip(got, expected):
        _close(a, e, rel, x.numel() // max(1, e.numel()))


def _grads(spk, mem, inputs, seed=3):
    g = torch.Generator().manual_seed(seed)
    # float32 weights for every dtype: a float64 oracle sees the same loss
    w1 = torch.randn(spk.shape, generator=g).to(spk.dtype)
    w2 = torch.randn(mem.shape, generator=g).to(mem.dtype)
    return torch.autograd.grad((spk * w1).sum() + (mem * w2).sum(), inputs, allow_unused=True)


# -- snnTorch's Leaky, float32 --------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("surrogate", list(SNNTORCH_SURROGATES))
@pytest.mark.parametrize("reset_delay", [True, False], ids=["late-reset", "same-step"])
@pytest.mark.parametrize("reset", RESETS)
def test_equals_snntorch_leaky_float32(reset, reset_delay, surrogate, per_neuron, backend):
    T, B, N = 25, 3, 6
    g = torch.Generator().manual_seed(case_seed(reset, reset_delay, surrogate, per_neuron))
    x = (torch.rand(T, B, N, generator=g) * 1.6 - 0.3).requires_grad_()
    beta = torch.rand(N, generator=g) * 0.9 + 0.05 if per_neuron else torch.tensor(0.8)
    thr = torch.rand(N, generator=g) * 0.6 + 0.7 if per_neuron else torch.tensor(0.9)

    def build():  # a fresh neuron: snnTorch's holds its last state
        return snn.Leaky(beta=beta, threshold=thr, spike_grad=SNNTORCH_SURROGATES[surrogate](), learn_beta=True,
                         learn_threshold=True, reset_mechanism=reset, reset_delay=reset_delay)

    lif = build()
    s_ref, m_ref = _snntorch_loop(lif, x)
    params = LeakyParameters(lif.beta, lif.threshold, lif.spike_grad, reset, reset_delay)
    assert leaky_sequence_choice(x, params, backend=backend)[0].backend == backend
    s, m = leaky_sequence(x, params, backend=backend)
    assert s.dtype == torch.float32 and 0 < int(s.sum()) < s.numel()
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)  # the same spikes and membranes, bit for bit
    torch.testing.assert_close(m, m_ref, rtol=0, atol=0)
    lif64, x64 = build().double(), x.detach().double().requires_grad_()
    s64, m64 = _snntorch_loop(lif64, x64)
    assert torch.equal(s64.float(), s_ref)  # the same spikes in float64
    inputs = (x, lif.beta, lif.threshold)
    assert_float32_grads_as_accurate(_grads(s, m, inputs), _grads(s_ref, m_ref, inputs),
                                     _grads(s64, m64, (x64, lif64.beta, lif64.threshold)), x.numel())


@compiled
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("threshold", [1.0, -0.1])
def test_equals_the_models_detached_zero_reset_neuron(backend, threshold):
    # FeedForwardSNN's NIR neuron: zero reset in the spike's step, no gradient through it; the
    # same as reset code 4 (zero once) with detach_reset, for any threshold
    T, B, N = 30, 2, 5
    x = (torch.rand(T, B, N) * 1.5 - 0.2).requires_grad_()
    lif = M._DetachedZeroResetLeaky(beta=torch.full((N,), 0.85), learn_beta=True, threshold=threshold,
                                    learn_threshold=True, spike_grad=sg.atan(), reset_mechanism="zero",
                                    reset_delay=False)
    s_ref, m_ref = _snntorch_loop(lif, x)
    params = M._leaky_parameters(lif)
    assert params == LeakyParameters(lif.beta, lif.threshold, lif.spike_grad, "zero", False, True, "spikingjelly")
    s, m = leaky_sequence(x, params, backend=backend)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(m, m_ref, rtol=0, atol=0)
    inputs = (x, lif.beta, lif.threshold)
    _close_grads(_grads(s, m, inputs), _grads(s_ref, m_ref, inputs), x)


def test_leaky_step_is_one_snntorch_step():
    x, mem = torch.rand(4, 3) * 2, torch.rand(4, 3) * 2
    for reset in RESETS:
        for rd in (True, False):
            lif = snn.Leaky(beta=0.7, threshold=0.8, reset_mechanism=reset, reset_delay=rd)
            s_ref, m_ref = lif(x, mem.clone())
            s, m = leaky_step(x, mem, LeakyParameters(lif.beta, lif.threshold, None, reset, rd))
            assert torch.equal(s, s_ref) and torch.equal(m, m_ref)


# -- compiled vs reference, float64 --------------------------------------------------------------
def _case(T, B, N, level, seed, per_neuron=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, N, generator=g, dtype=dtype) * 2 * level - 0.3 * level).requires_grad_()
    beta = (torch.rand(N, generator=g, dtype=dtype) * 1.2 - 0.1 if per_neuron
            else torch.tensor(0.8, dtype=dtype)).requires_grad_()  # some outside [0, 1]: the clamp
    thr = (torch.rand(N, generator=g, dtype=dtype) * 0.8 + 0.6 if per_neuron
           else torch.tensor(1.0, dtype=dtype)).requires_grad_()
    return x, beta, thr


def _both(x, beta, thr, surrogate, **kw):
    code, param, make = SURROGATES[surrogate]
    out = {}
    for backend in ("compiled", "reference"):
        p = LeakyParameters(beta, thr, make(param), **kw)
        if backend == "compiled":  # the op itself is told the code of the float64 oracle surrogate
            from snn_delays_ext.functional._compiled import leaky_sequence_compiled

            s, m = leaky_sequence_compiled(x, beta, thr, p.reset_mechanism, (code, param), p.reset_delay,
                                           p.detach_reset, p.reset_convention)
        else:
            s, m = leaky_sequence(x, p, backend="reference")
        out[backend] = (s, m) + tuple(_grads(s, m, (x, beta, thr)))
    return out["compiled"], out["reference"]


@compiled
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(0, 30), B=st.integers(0, 4), N=st.integers(0, 7),
       level=st.sampled_from([0.0, 0.3, 1.0, 3.0, 50.0]), seed=st.integers(0, 2**16),
       reset=st.sampled_from(RESETS), reset_delay=st.booleans(), detach_reset=st.booleans(),
       convention=st.sampled_from(["snntorch", "spikingjelly"]), surrogate=st.sampled_from(list(SURROGATES)),
       per_neuron=st.booleans())
def test_compiled_equals_reference_float64(T, B, N, level, seed, reset, reset_delay, detach_reset, convention,
                                           surrogate, per_neuron):
    if convention == "spikingjelly" and reset_delay:
        reset_delay = False
    x, beta, thr = _case(T, B, N, level, seed, per_neuron)
    c, r = _both(x, beta, thr, surrogate, reset_mechanism=reset, reset_delay=reset_delay,
                 detach_reset=detach_reset, reset_convention=convention)
    for a, e in zip(c, r):
        if e is None:  # no step: nothing depends on beta or threshold
            assert a is None or not a.abs().any()
            continue
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@compiled
@pytest.mark.parametrize("level", ["silent", "all-spiking"])
def test_silent_and_all_spiking(level):
    x, beta, thr = _case(20, 3, 4, 0.0 if level == "silent" else 1.0, 0)
    if level == "all-spiking":
        x = (x.detach() + 5.0).requires_grad_()
    for reset in RESETS:
        c, r = _both(x, beta, thr, "atan", reset_mechanism=reset, reset_delay=False)
        assert int(c[0].sum()) == (0 if level == "silent" else c[0].numel())
        for a, e in zip(c, r):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@compiled
def test_non_contiguous_input_and_float32_cast_parameters():
    x = torch.rand(6, 10, 4, dtype=torch.float64).transpose(0, 1) * 2  # (10, 6, 4), not contiguous
    p = LeakyParameters(torch.tensor(0.9), torch.tensor(1.0), sg.atan())  # float32 parameters
    s, m = leaky_sequence(x, p, backend="compiled")
    s2, m2 = leaky_sequence(x, p, backend="reference")
    assert s.dtype == m.dtype == torch.float64
    torch.testing.assert_close(s, s2, rtol=0, atol=0)
    torch.testing.assert_close(m, m2, rtol=1e-12, atol=1e-12)


# -- finite differences --------------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("reset,reset_delay,detach", [("subtract", True, False), ("zero", True, False),
                                                      ("none", True, False), ("none", False, False),
                                                      ("subtract", False, True), ("zero", False, True)])
def test_gradcheck_membrane_with_spikes(reset, reset_delay, detach):
    # Where the reset carries no gradient (the late reset, or a detached same-step one), the
    # membrane is a smooth function of input, beta and threshold while no membrane crosses the
    # threshold: finite differences check the op's adjoint exactly, with spikes in the sequence.
    x, beta, thr = _case(12, 2, 3, 1.0, 7)

    def f(x, beta, thr):
        p = LeakyParameters(beta, thr, sg.atan(), reset, reset_delay, detach)
        s, m = leaky_sequence(x, p, backend="compiled")
        assert s.sum() > 0
        return m

    assert torch.autograd.gradcheck(f, (x, beta, thr))


@compiled
def test_gradcheck_below_threshold_spike_output():
    # no membrane near the threshold and the heaviside surrogate (zero derivative below it):
    # the spike output's gradient is zero, as its finite differences
    x, beta, thr = _case(10, 2, 3, 0.2, 1)
    thr = torch.full((3,), 100.0, dtype=torch.float64, requires_grad=True)
    code, param, _ = SURROGATES["heaviside"]

    def f(x, beta, thr):
        return leaky_sequence(x, LeakyParameters(beta, thr, sg.heaviside(), "subtract", False),
                              backend="compiled")

    assert torch.autograd.gradcheck(f, (x, beta, thr))


@compiled
def test_spike_gradient_is_the_straight_through_derivative():
    # with the straight-through surrogate, d(spk)/d(membrane) = 1: the op's adjoint against the
    # reference autograd with an independent float64 STE (same-step reset carrying it)
    x, beta, thr = _case(15, 2, 4, 1.0, 5)
    c, r = _both(x, beta, thr, "straight_through_estimator", reset_mechanism="subtract", reset_delay=False)
    for a, e in zip(c, r):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


# -- the op's registration -----------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("reset,reset_delay", [(0, True), (1, False), (2, True), (4, False)])
def test_opcheck(reset, reset_delay):
    x, beta, thr = _case(9, 2, 4, 1.0, 2)
    beta = beta.detach().clamp(0, 1).requires_grad_()
    args = (x, beta, thr, reset, 0, 2.0, reset_delay, False)
    torch.library.opcheck(OPS.leaky_sequence.default, args)
    spk, mem, pre = OPS.leaky_sequence(x.detach(), beta.detach(), thr.detach(), reset, 0, 2.0, reset_delay, False)
    assert pre.shape == ((0,) if reset_delay else mem.shape)
    bargs = (torch.randn_like(mem), torch.randn_like(mem), beta.detach(), thr.detach(), mem, pre, reset, 0, 2.0,
             reset_delay, True)
    torch.library.opcheck(OPS.leaky_sequence_backward.default, bargs)


@compiled
def test_double_backward_raises_a_clear_error():
    x, beta, thr = _case(5, 2, 3, 1.0, 0)
    s, m = leaky_sequence(x, LeakyParameters(beta, thr, sg.atan()), backend="compiled")
    (gx,) = torch.autograd.grad(m.sum() + s.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


@compiled
def test_dispatch_rules():
    x = torch.rand(5, 2, 3)
    p = LeakyParameters(torch.tensor(0.9), torch.tensor(1.0), sg.atan())
    assert leaky_sequence_choice(x, p)[0].backend == "compiled"
    assert leaky_sequence_choice(x, p, mem=torch.zeros(2, 3))[0].backend == "reference"
    assert leaky_sequence_choice(x, p._replace(spike_grad=lambda u: (u > 0).float()))[0].backend == "reference"
    assert leaky_sequence_choice(x, p._replace(spike_grad=None)) == leaky_sequence_choice(x, p)
    with pytest.raises(ValueError, match="backend: 'compiled' cannot run leaky_sequence here: .*zero membrane"):
        leaky_sequence(x, p, mem=torch.zeros(2, 3), backend="compiled")
    # a given membrane runs the reference from it
    s, m = leaky_sequence(x, p, mem=torch.full((2, 3), 0.5))
    s2, m2 = leaky_sequence(torch.cat([torch.zeros(1, 2, 3), x]), p._replace(beta=torch.tensor(0.9)),
                            mem=torch.full((2, 3), 0.5 / 0.9), backend="reference")
    torch.testing.assert_close(m, m2[1:])
    # torch.func transforms run the reference (with a surrogate that supports them)
    p = p._replace(spike_grad=triangle())
    out = torch.func.vmap(lambda xb: leaky_sequence(xb, p)[1])(x.unsqueeze(0).expand(2, -1, -1, -1))
    torch.testing.assert_close(out[0], leaky_sequence(x, p)[1])


# -- errors ----------------------------------------------------------------------------------------
def _op_error(device, **change):
    x = torch.rand(4, 2, 3, device=device)
    args = dict(x=x, beta=torch.rand(3, device=device), threshold=torch.ones(3, device=device), reset=0,
                surrogate=0, surrogate_param=2.0, reset_delay=True, detach_reset=False)
    args.update({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in change.items()})
    with pytest.raises((TypeError, ValueError)) as info:
        OPS.leaky_sequence(*args.values())
    return info.type, str(info.value).splitlines()[0]


@compiled
@pytest.mark.parametrize("change,name", [
    (dict(x=torch.rand(4, 3)), "x"),
    (dict(x=torch.rand(4, 2, 3).to(torch.float16)), "x"),
    (dict(beta=torch.rand(4)), "beta"),
    (dict(beta=torch.rand(3, dtype=torch.float64)), "beta"),
    (dict(threshold=torch.ones(1, 3)), "threshold"),
    (dict(reset=5), "reset"),
    (dict(reset=3), "reset"),  # once per spike needs reset_delay=False
    (dict(surrogate=7), "surrogate"),
    (dict(surrogate_param=float("nan")), "surrogate_param"),
])
def test_bad_op_arguments_raise_named_errors_on_cpu_and_meta(change, name):
    cpu = _op_error("cpu", **change)
    meta = _op_error("meta", **change)  # the fake kernel's checks: the same exception and message
    assert cpu[0] is meta[0]
    assert cpu[1] == meta[1] and f"leaky_sequence: {name}:" in cpu[1]


@compiled
def test_bad_backward_arguments_raise_named_errors():
    mem = torch.rand(4, 2, 3)
    ok = dict(grad_spk=torch.rand(4, 2, 3), grad_mem=torch.rand(4, 2, 3), beta=torch.rand(3),
              threshold=torch.ones(3), mem=mem, pre_mem=torch.rand(4, 2, 3), reset=0, surrogate=0,
              surrogate_param=2.0, reset_delay=False, detach_reset=False)
    for change, name in ((dict(grad_spk=torch.rand(4, 2, 2)), "grad_spk"),
                         (dict(pre_mem=torch.empty(0)), "pre_mem"),
                         (dict(grad_mem=torch.rand(4, 2, 3, dtype=torch.float64)), "grad_mem")):
        with pytest.raises((TypeError, ValueError), match=f"leaky_sequence_backward: {name}:"):
            OPS.leaky_sequence_backward(*{**ok, **change}.values())


def test_bad_function_arguments_raise_named_errors():
    x = torch.rand(4, 2, 3)
    p = LeakyParameters(torch.tensor(0.9), torch.tensor(1.0))
    for args, err, match in (
            ((x[0], p), ValueError, "x: expected a time-first sequence"),
            ((x.long(), p), TypeError, "x: expected a floating-point"),
            ((x, (0.9, 1.0)), TypeError, "params: expected a LeakyParameters"),
            ((x, p._replace(beta=torch.rand(4))), ValueError, r"params.beta: expected a scalar or a \(3,\)"),
            ((x, p._replace(threshold=1.0)), TypeError, "params.threshold: expected a floating-point"),
            ((x, p._replace(reset_mechanism="reset")), ValueError, "params.reset_mechanism"),
            ((x, p._replace(reset_convention="spikingjelly")), ValueError, "params.reset_convention"),
            ((x, p._replace(spike_grad=3)), TypeError, "params.spike_grad"),
            ((x, p, torch.zeros(2, 4)), ValueError, "mem: expected shape"),
            ((x, p._replace(beta=torch.tensor(float("nan")))), ValueError, "params.beta: expected finite"),
    ):
        with pytest.raises(err, match=match):
            leaky_sequence(*args)


# -- meta device, the model -------------------------------------------------------------------------
@compiled
def test_function_and_model_on_meta():
    x = torch.rand(7, 2, 3, device="meta", requires_grad=True)
    p = LeakyParameters(torch.full((3,), 0.9, device="meta", requires_grad=True), torch.tensor(1.0, device="meta"),
                        sg.atan(), "zero", False)
    s, m = leaky_sequence(x, p)
    assert s.shape == m.shape == (7, 2, 3) and s.device.type == "meta"
    (s.sum() + m.sum()).backward()
    assert x.grad.shape == x.shape and p.beta.grad.shape == (3,)
    net = FeedForwardSNN(3, [5], 2, max_delay=3, learn_beta=True).to("meta")
    assert net(torch.rand(6, 2, 3, device="meta")).shape == (2, 2)


@compiled
@pytest.mark.parametrize("kw", [dict(), dict(reset_mechanism="zero", reset_delay=False),
                                dict(reset_mechanism="zero", reset_delay=False, detach_reset=False),
                                dict(learn_beta=True, surrogate="triangle", reset_delay=False),
                                dict(reset_mechanism="none")])
def test_feedforward_model_runs_the_fused_op_with_the_same_numbers(monkeypatch, kw):
    torch.manual_seed(0)
    net = FeedForwardSNN(5, [12, 12], 3, max_delay=4, **kw)
    keys = list(net.state_dict())
    x = torch.rand(20, 4, 5) * 2
    calls = []

    def counted(*args, **kwargs):
        calls.append(leaky_sequence_choice(*args[:2])[0].backend)
        return leaky_sequence(*args, **kwargs)

    monkeypatch.setattr(M, "leaky_sequence", counted)
    out, spikes = net(x, record=True)
    assert calls == ["compiled", "compiled"] and sum(int(s.sum()) for s in spikes) > 0
    g = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    monkeypatch.setattr(M, "_leaky_parameters", lambda lif: None)  # snnTorch's modules in a loop
    out2, spikes2 = net(x, record=True)
    g2 = torch.autograd.grad(out2.square().sum(), list(net.parameters()))
    assert torch.equal(out, out2) and all(torch.equal(a, b) for a, b in zip(spikes, spikes2))
    for a, e in zip(g, g2):
        _close(a, e, 2e-6)
    assert list(net.state_dict()) == keys


@pytest.mark.filterwarnings("ignore:Inhibition is an unstable feature")
def test_neurons_the_op_does_not_model_step_snntorch():
    for lif in (snn.Leaky(beta=0.9, inhibition=True), snn.Leaky(beta=0.9, graded_spikes_factor=2.0),
                snn.Leaky(beta=0.9, init_hidden=True), snn.Leaky(beta=0.9, learn_graded_spikes_factor=True)):
        assert M._leaky_parameters(lif) is None
    lif = snn.Leaky(beta=0.9)
    assert M._leaky_parameters(lif) is not None
    calls = []
    handle = lif.register_forward_hook(lambda *a: calls.append(1))  # e.g. NIR export's tracing
    assert M._leaky_parameters(lif) is None
    M._run_leaky(lif, torch.rand(4, 2, 3))
    assert len(calls) == 4  # the hook saw every step
    handle.remove()
    assert M._leaky_parameters(lif) is not None


# -- CUDA ------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(reset, reset_delay, dtype):
    if "cuda" not in ops.leaky_sequence_devices():
        pytest.skip("no CUDA leaky_sequence kernel in this build (or no GPU)")
    x, beta, thr = _case(40, 5, 300, 1.0, 11, dtype=dtype)
    out = {}
    for dev in ("cpu", "cuda"):
        xs, bs, ts = (t.detach().to(dev).requires_grad_() for t in (x, beta, thr))
        p = LeakyParameters(bs, ts, sg.fast_sigmoid(slope=10), reset, reset_delay)
        s, m = leaky_sequence(xs, p, backend="compiled")
        out[dev] = [t.cpu() for t in (s, m) + tuple(_grads(s, m, (xs, bs, ts)))]
    tol = 1e-9 if dtype == torch.float64 else 1e-4  # CUDA contracts multiply-adds (FMA)
    same = (out["cpu"][0] == out["cuda"][0]).float().mean()
    assert same > 0.999  # a float32 FMA may flip a membrane sitting on the threshold
    if dtype == torch.float64:
        for a, e in zip(out["cuda"], out["cpu"]):
            torch.testing.assert_close(a, e, rtol=tol, atol=tol)
