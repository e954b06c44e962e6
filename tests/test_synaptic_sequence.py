"""The fused sequence op of snnTorch's current-based neuron
(``torch.ops.snn_delays_ext.synaptic_sequence``) and :func:`snn_delays_ext.functional.synaptic_sequence`.

Oracles: snnTorch 1.0's own ``snn.Synaptic`` in a step loop (float32, every reset, reset timing,
surrogate and parameter shape), the plain-PyTorch reference (float64, 1e-9, hypothesis over
shapes and drives), finite differences (``gradcheck``) where the function is smooth, and a hand
computation of the reset-once convention.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.surrogate as sg
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_delays_ext import ops
from snn_delays_ext.functional import SynapticParameters, synaptic_sequence, synaptic_step
from snn_delays_ext.functional._compiled import synaptic_sequence_compiled
from snn_delays_ext.functional.synaptic_sequence import synaptic_sequence_choice
from snn_delays_ext.surrogate import triangle

from _kernel_helpers import SNNTORCH_SURROGATES, SURROGATES, assert_float32_grads_as_accurate, case_seed

compiled = pytest.mark.skipif("cpu" not in ops.synaptic_sequence_devices(),
                              reason=f"compiled synaptic_sequence not built: {ops.LOAD_ERROR}")
OPS = torch.ops.snn_delays_ext if ops.AVAILABLE else None
RESETS = ["subtract", "zero", "none"]


def _snntorch_loop(lif: snn.Synaptic, x: torch.Tensor):
    syn, mem = lif.reset_mem()
    out = []
    for xt in x.unbind(0):
        spk, syn, mem = lif(xt, syn, mem)
        out.append((spk, syn, mem))
    return tuple(torch.stack(v) for v in zip(*out))


def _grads(outputs, inputs, seed=3):
    g = torch.Generator().manual_seed(seed)
    # float32 weights for every dtype: a float64 oracle sees the same loss
    loss = sum((o * torch.randn(o.shape, generator=g).to(o.device, o.dtype)).sum() for o in outputs)
    return torch.autograd.grad(loss, inputs, allow_unused=True)


# -- snnTorch's Synaptic, float32 -----------------------------------------------------------------
@compiled
@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("surrogate", list(SNNTORCH_SURROGATES))
@pytest.mark.parametrize("reset_delay", [True, False], ids=["late-reset", "same-step"])
@pytest.mark.parametrize("reset", RESETS)
def test_equals_snntorch_synaptic_float32(reset, reset_delay, surrogate, per_neuron, backend):
    T, B, N = 25, 3, 6
    g = torch.Generator().manual_seed(case_seed(reset, reset_delay, surrogate, per_neuron))
    x = (torch.rand(T, B, N, generator=g) * 1.0 - 0.3).requires_grad_()
    alpha = torch.rand(N, generator=g) * 0.9 + 0.05 if per_neuron else torch.tensor(0.6)
    beta = torch.rand(N, generator=g) * 0.9 + 0.05 if per_neuron else torch.tensor(0.8)
    thr = torch.rand(N, generator=g) * 0.6 + 0.7 if per_neuron else torch.tensor(0.9)

    def build():  # a fresh neuron: snnTorch's holds its last state
        return snn.Synaptic(alpha=alpha, beta=beta, threshold=thr, spike_grad=SNNTORCH_SURROGATES[surrogate](),
                            learn_alpha=True, learn_beta=True, learn_threshold=True, reset_mechanism=reset,
                            reset_delay=reset_delay)

    lif = build()
    expected = _snntorch_loop(lif, x)
    params = SynapticParameters(lif.alpha, lif.beta, lif.threshold, lif.spike_grad, reset, reset_delay)
    assert synaptic_sequence_choice(x, params, backend=backend)[0].backend == backend
    got = synaptic_sequence(x, params, backend=backend)
    assert got[0].dtype == torch.float32 and 0 < int(got[0].sum()) < got[0].numel()
    for a, e in zip(got, expected):  # the same spikes, currents and membranes, bit for bit
        torch.testing.assert_close(a, e, rtol=0, atol=0)
    lif64, x64 = build().double(), x.detach().double().requires_grad_()
    oracle = _snntorch_loop(lif64, x64)
    assert torch.equal(oracle[0].float(), expected[0])  # the same spikes in float64
    inputs = (x, lif.alpha, lif.beta, lif.threshold)
    assert_float32_grads_as_accurate(_grads(got, inputs), _grads(expected, inputs),
                                     _grads(oracle, (x64, lif64.alpha, lif64.beta, lif64.threshold)),
                                     x.numel())


def test_synaptic_step_is_one_snntorch_step():
    x, syn, mem = torch.rand(4, 3) * 2, torch.rand(4, 3), torch.rand(4, 3) * 2
    for reset in RESETS:
        for rd in (True, False):
            lif = snn.Synaptic(alpha=0.6, beta=0.7, threshold=0.8, reset_mechanism=reset, reset_delay=rd)
            expected = lif(x, syn.clone(), mem.clone())
            got = synaptic_step(x, syn, mem, SynapticParameters(lif.alpha, lif.beta, lif.threshold, None, reset, rd))
            assert all(torch.equal(a, e) for a, e in zip(got, expected))


@compiled
@pytest.mark.parametrize("backend", ["compiled", "reference"])
def test_reset_once_convention_by_hand(backend):
    # alpha 0 (the current is the input), beta 0.5, threshold 1, subtract in the spike's step:
    # 2.5 fires and leaves 1.5; then 0.5 * 1.5 + 0.6 = 1.35. snnTorch's convention tests it less
    # the late reset (0.35: silent, the same-step reset gives the threshold back), spikingjelly's
    # tests 1.35 (fires, 0.35 left).
    x = torch.tensor([2.5, 0.6]).view(2, 1, 1)
    p = SynapticParameters(torch.tensor(0.0), torch.tensor(0.5), torch.tensor(1.0), sg.atan(), "subtract", False)
    spk, _, mem = synaptic_sequence(x, p, backend=backend)
    torch.testing.assert_close(spk.flatten(), torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mem.flatten(), torch.tensor([1.5, 1.35]))
    spk, _, mem = synaptic_sequence(x, p._replace(reset_convention="spikingjelly"), backend=backend)
    torch.testing.assert_close(spk.flatten(), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(mem.flatten(), torch.tensor([1.5, 0.35]))


# -- compiled vs reference, float64 --------------------------------------------------------------
def _case(T, B, N, level, seed, per_neuron=True, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, N, generator=g, dtype=dtype) * 2 * level - 0.5 * level).requires_grad_()

    def decay(scalar):  # per neuron: some outside [0, 1], the clamp
        return (torch.rand(N, generator=g, dtype=dtype) * 1.2 - 0.1 if per_neuron
                else torch.tensor(scalar, dtype=dtype)).requires_grad_()

    alpha, beta = decay(0.6), decay(0.8)
    thr = (torch.rand(N, generator=g, dtype=dtype) * 0.8 + 0.6 if per_neuron
           else torch.tensor(1.0, dtype=dtype)).requires_grad_()
    return x, alpha, beta, thr


def _both(x, alpha, beta, thr, surrogate, **kw):
    code, param, make = SURROGATES[surrogate]
    p = SynapticParameters(alpha, beta, thr, make(param), **kw)
    # the op is told the code of the float64 oracle surrogate
    c = synaptic_sequence_compiled(x, alpha, beta, thr, p.reset_mechanism, (code, param), p.reset_delay,
                                   p.detach_reset, p.reset_convention)
    r = synaptic_sequence(x, p, backend="reference")
    inputs = (x, alpha, beta, thr)
    return c + _grads(c, inputs), r + _grads(r, inputs)


@compiled
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(0, 30), B=st.integers(0, 4), N=st.integers(0, 7),
       level=st.sampled_from([0.0, 0.3, 1.0, 3.0, 50.0]), seed=st.integers(0, 2**16),
       reset=st.sampled_from(RESETS), reset_delay=st.booleans(), detach_reset=st.booleans(),
       convention=st.sampled_from(["snntorch", "spikingjelly"]), surrogate=st.sampled_from(list(SURROGATES)),
       per_neuron=st.booleans())
def test_compiled_equals_reference_float64(T, B, N, level, seed, reset, reset_delay, detach_reset, convention,
                                           surrogate, per_neuron):
    if convention == "spikingjelly":
        reset_delay = False
    x, alpha, beta, thr = _case(T, B, N, level, seed, per_neuron)
    c, r = _both(x, alpha, beta, thr, surrogate, reset_mechanism=reset, reset_delay=reset_delay,
                 detach_reset=detach_reset, reset_convention=convention)
    for a, e in zip(c, r):
        if e is None:  # no step: nothing depends on the neuron parameters
            assert a is None or not a.abs().any()
            continue
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@compiled
@pytest.mark.parametrize("level", ["silent", "all-spiking"])
def test_silent_and_all_spiking(level):
    x, alpha, beta, thr = _case(20, 3, 4, 0.0 if level == "silent" else 1.0, 0)
    if level == "all-spiking":
        x = (x.detach() + 5.0).requires_grad_()
    for reset in RESETS:
        for reset_delay in (True, False):
            c, r = _both(x, alpha, beta, thr, "atan", reset_mechanism=reset, reset_delay=reset_delay)
            # all-spiking: the late zero reset clears the membrane every other step (0 < thr)
            full = c[0].numel() // (2 if (reset, reset_delay) == ("zero", True) else 1)
            assert int(c[0].sum()) == (0 if level == "silent" else full)
            for a, e in zip(c, r):
                torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


@compiled
def test_non_contiguous_input_and_float32_cast_parameters():
    x = torch.rand(6, 10, 4, dtype=torch.float64).transpose(0, 1)  # (10, 6, 4), not contiguous
    p = SynapticParameters(torch.tensor(0.7), torch.tensor(0.9), torch.tensor(1.0), sg.atan())  # float32
    c = synaptic_sequence(x, p, backend="compiled")
    r = synaptic_sequence(x, p, backend="reference")
    assert all(t.dtype == torch.float64 for t in c)
    torch.testing.assert_close(c[0], r[0], rtol=0, atol=0)
    for a, e in zip(c[1:], r[1:]):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


# -- finite differences --------------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("reset,reset_delay,detach", [("subtract", True, False), ("zero", True, False),
                                                      ("none", True, False), ("none", False, False),
                                                      ("subtract", False, True), ("zero", False, True)])
def test_gradcheck_current_and_membrane_with_spikes(reset, reset_delay, detach):
    # Where the reset carries no gradient (the late reset, or a detached same-step one), current
    # and membrane are smooth functions of input, alpha, beta and threshold while no membrane
    # crosses the threshold: finite differences check the op's adjoint, with spikes in the sequence.
    x, alpha, beta, thr = _case(12, 2, 3, 1.0, 7)
    alpha, beta = (t.detach().clamp(0.05, 0.95).requires_grad_() for t in (alpha, beta))  # off the clamp's kinks

    def f(x, alpha, beta, thr):
        p = SynapticParameters(alpha, beta, thr, sg.atan(), reset, reset_delay, detach)
        s, i, m = synaptic_sequence(x, p, backend="compiled")
        assert s.sum() > 0
        return i, m

    assert torch.autograd.gradcheck(f, (x, alpha, beta, thr))


@compiled
def test_gradcheck_below_threshold_spike_output():
    # no membrane near the threshold and the heaviside surrogate (zero derivative below it):
    # the spike output's gradient is zero, as its finite differences
    x, alpha, beta, _ = _case(10, 2, 3, 0.2, 1)
    thr = torch.full((3,), 100.0, dtype=torch.float64, requires_grad=True)

    def f(x, alpha, beta, thr):
        return synaptic_sequence(x, SynapticParameters(alpha, beta, thr, sg.heaviside(), "subtract", False),
                                 backend="compiled")

    assert torch.autograd.gradcheck(f, (x, alpha, beta, thr))


@compiled
@pytest.mark.parametrize("reset", RESETS)
def test_spike_gradient_is_the_straight_through_derivative(reset):
    # with the straight-through surrogate, d(spk)/d(membrane) = 1: the op's adjoint against the
    # reference autograd with an independent float64 STE (same-step reset carrying it)
    x, alpha, beta, thr = _case(15, 2, 4, 1.0, 5)
    c, r = _both(x, alpha, beta, thr, "straight_through_estimator", reset_mechanism=reset, reset_delay=False)
    for a, e in zip(c, r):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


# -- the op's registration -----------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("reset,reset_delay", [(0, True), (1, False), (2, True), (4, False)])
def test_opcheck(reset, reset_delay):
    x, alpha, beta, thr = _case(9, 2, 4, 1.0, 2)
    alpha, beta = (t.detach().clamp(0, 1).requires_grad_() for t in (alpha, beta))
    args = (x, alpha, beta, thr, reset, 0, 2.0, reset_delay, False)
    torch.library.opcheck(OPS.synaptic_sequence.default, args)
    spk, syn, mem, pre = OPS.synaptic_sequence(x.detach(), alpha.detach(), beta.detach(), thr.detach(), reset, 0,
                                               2.0, reset_delay, False)
    assert pre.shape == ((0,) if reset_delay else mem.shape)
    bargs = (torch.randn_like(mem), torch.randn_like(mem), torch.randn_like(mem), alpha.detach(), beta.detach(),
             thr.detach(), syn, mem, pre, reset, 0, 2.0, reset_delay, True)
    torch.library.opcheck(OPS.synaptic_sequence_backward.default, bargs)


@compiled
def test_only_some_outputs_used_and_no_parameter_gradient():
    # autograd gives None for unused outputs; parameters that need no gradient get none
    x, alpha, beta, thr = _case(8, 2, 3, 1.0, 4)
    alpha, thr = alpha.detach(), thr.detach()
    code, param, make = SURROGATES["atan"]
    for pick in (0, 1, 2):
        c = synaptic_sequence_compiled(x, alpha, beta, thr, "subtract", (code, param))[pick]
        r = synaptic_sequence(x, SynapticParameters(alpha, beta, thr, make(param)), backend="reference")[pick]
        for a, e in zip(_grads([c], (x, beta)), _grads([r], (x, beta))):
            if e is None:  # the current does not depend on beta: the op's gradient is zero
                assert not a.abs().any()
                continue
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)
    p = SynapticParameters(alpha, beta, thr, sg.atan())
    s, i, m = synaptic_sequence(x, p, backend="compiled")
    m.sum().backward()
    assert p.alpha.grad is None and p.threshold.grad is None and beta.grad is not None


@compiled
def test_double_backward_raises_a_clear_error():
    x, alpha, beta, thr = _case(5, 2, 3, 1.0, 0)
    s, i, m = synaptic_sequence(x, SynapticParameters(alpha, beta, thr, sg.atan()), backend="compiled")
    (gx,) = torch.autograd.grad(m.sum() + s.sum() + i.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


@compiled
def test_dispatch_rules():
    x = torch.rand(5, 2, 3)
    p = SynapticParameters(torch.tensor(0.8), torch.tensor(0.9), torch.tensor(1.0), sg.atan())
    assert synaptic_sequence_choice(x, p)[0].backend == "compiled"
    assert synaptic_sequence_choice(x, p, mem=torch.zeros(2, 3))[0].backend == "reference"
    assert synaptic_sequence_choice(x, p, syn=torch.zeros(2, 3))[0].backend == "reference"
    assert synaptic_sequence_choice(x, p._replace(spike_grad=lambda u: (u > 0).float()))[0].backend == "reference"
    assert synaptic_sequence_choice(x, p._replace(spike_grad=None)) == synaptic_sequence_choice(x, p)
    assert synaptic_sequence_choice(x.half(), p)[0].backend == "reference"
    with pytest.raises(ValueError, match="backend: 'compiled' cannot run synaptic_sequence here: .*zero current"):
        synaptic_sequence(x, p, syn=torch.zeros(2, 3), backend="compiled")
    # a given state runs the reference from it: the same as one more step that leads there
    syn0, mem0 = torch.full((2, 3), 0.4), torch.full((2, 3), 0.5)
    s, i, m = synaptic_sequence(x, p, syn=syn0, mem=mem0)
    lif = snn.Synaptic(alpha=0.8, beta=0.9, threshold=1.0, spike_grad=sg.atan())
    syn_s, mem_s = syn0.clone(), mem0.clone()
    ms = []
    for xt in x.unbind(0):
        _, syn_s, mem_s = lif(xt, syn_s, mem_s)
        ms.append(mem_s)
    torch.testing.assert_close(m, torch.stack(ms), rtol=0, atol=0)
    # torch.func transforms run the reference (with a surrogate that supports them)
    p = p._replace(spike_grad=triangle())
    out = torch.func.vmap(lambda xb: synaptic_sequence(xb, p)[2])(x.unsqueeze(0).expand(2, -1, -1, -1))
    torch.testing.assert_close(out[0], synaptic_sequence(x, p)[2])


# -- errors ----------------------------------------------------------------------------------------
def _op_error(device, **change):
    x = torch.rand(4, 2, 3, device=device)
    args = dict(x=x, alpha=torch.rand(3, device=device), beta=torch.rand(3, device=device),
                threshold=torch.ones(3, device=device), reset=0, surrogate=0, surrogate_param=2.0, reset_delay=True,
                detach_reset=False)
    args.update({k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in change.items()})
    with pytest.raises((TypeError, ValueError)) as info:
        OPS.synaptic_sequence(*args.values())
    return info.type, str(info.value).splitlines()[0]


@compiled
@pytest.mark.parametrize("change,name", [
    (dict(x=torch.rand(4, 3)), "x"),
    (dict(x=torch.rand(4, 2, 3).to(torch.float16)), "x"),
    (dict(alpha=torch.rand(4)), "alpha"),
    (dict(alpha=torch.rand(3, dtype=torch.float64)), "alpha"),
    (dict(beta=torch.rand(())), "beta"),
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
    assert cpu[1] == meta[1] and f"synaptic_sequence: {name}:" in cpu[1]


@compiled
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_bad_backward_arguments_raise_named_errors(device):
    def t(*shape, dtype=torch.float32):
        return torch.rand(*shape, dtype=dtype).to(device)

    ok = dict(grad_spk=t(4, 2, 3), grad_syn=t(4, 2, 3), grad_mem=t(4, 2, 3), alpha=t(3), beta=t(3),
              threshold=t(3), syn=t(4, 2, 3), mem=t(4, 2, 3), pre_mem=t(4, 2, 3), reset=0, surrogate=0,
              surrogate_param=2.0, reset_delay=False, detach_reset=False)
    for change, name in ((dict(grad_spk=t(4, 2, 2)), "grad_spk"),
                         (dict(grad_syn=t(4, 2, 3, dtype=torch.float64)), "grad_syn"),
                         (dict(syn=t(3, 2, 3)), "syn"),
                         (dict(alpha=t(2)), "alpha"),
                         (dict(pre_mem=t(0)), "pre_mem"),
                         (dict(mem=t(4, 2)), "mem")):
        with pytest.raises((TypeError, ValueError), match=f"synaptic_sequence_backward: {name}:"):
            OPS.synaptic_sequence_backward(*{**ok, **change}.values())


def test_bad_function_arguments_raise_named_errors():
    x = torch.rand(4, 2, 3)
    p = SynapticParameters(torch.tensor(0.8), torch.tensor(0.9), torch.tensor(1.0))
    for args, kw, err, match in (
            ((x[0], p), {}, ValueError, "x: expected a time-first sequence"),
            ((x.long(), p), {}, TypeError, "x: expected a floating-point"),
            ((x, (0.8, 0.9, 1.0)), {}, TypeError, "params: expected a SynapticParameters"),
            ((x, p._replace(alpha=torch.rand(4))), {}, ValueError, r"params.alpha: expected a scalar or a \(3,\)"),
            ((x, p._replace(alpha=0.5)), {}, TypeError, "params.alpha: expected a floating-point"),
            ((x, p._replace(alpha=torch.tensor(0.5, device="meta"))), {}, ValueError,
             "params.alpha: expected a tensor on cpu"),
            ((x, p._replace(alpha=torch.tensor(float("inf")))), {}, ValueError, "params.alpha: expected finite"),
            ((x, p._replace(beta=torch.rand(4))), {}, ValueError, r"params.beta: expected a scalar or a \(3,\)"),
            ((x, p._replace(threshold=1.0)), {}, TypeError, "params.threshold: expected a floating-point"),
            ((x, p._replace(reset_mechanism="reset")), {}, ValueError, "params.reset_mechanism"),
            ((x, p._replace(reset_delay=1)), {}, TypeError, "params.reset_delay"),
            ((x, p._replace(reset_convention="spikingjelly")), {}, ValueError, "params.reset_convention"),
            ((x, p._replace(spike_grad=3)), {}, TypeError, "params.spike_grad"),
            ((x, p), dict(syn=torch.zeros(2, 4)), ValueError, "syn: expected shape"),
            ((x, p), dict(mem=torch.zeros(3, 3)), ValueError, "mem: expected shape"),
            ((x, p), dict(backend="fast"), ValueError, "backend"),
    ):
        with pytest.raises(err, match=match):
            synaptic_sequence(*args, **kw)
    with pytest.raises(ValueError, match="syn: expected shape"):
        synaptic_step(x[0], torch.zeros(2, 4), None, p)


# -- meta device -------------------------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("reset_delay", [True, False])
def test_function_on_meta(reset_delay):
    x = torch.rand(7, 2, 3, device="meta", requires_grad=True)
    p = SynapticParameters(torch.tensor(0.7, device="meta", requires_grad=True),
                           torch.full((3,), 0.9, device="meta", requires_grad=True), torch.tensor(1.0, device="meta"),
                           sg.atan(), "zero", reset_delay)
    assert synaptic_sequence_choice(x, p)[0].backend == "compiled"
    s, i, m = synaptic_sequence(x, p)
    assert s.shape == i.shape == m.shape == (7, 2, 3) and s.device.type == "meta"
    (s.sum() + i.sum() + m.sum()).backward()
    assert x.grad.shape == x.shape and p.alpha.grad.shape == () and p.beta.grad.shape == (3,)


# -- CUDA ------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(reset, reset_delay, dtype):
    if "cuda" not in ops.synaptic_sequence_devices():
        pytest.skip("no CUDA synaptic_sequence kernel in this build (or no GPU)")
    x, alpha, beta, thr = _case(40, 5, 300, 1.0, 11, dtype=dtype)
    out = {}
    for dev in ("cpu", "cuda"):
        inputs = tuple(t.detach().to(dev).requires_grad_() for t in (x, alpha, beta, thr))
        p = SynapticParameters(*inputs[1:], sg.fast_sigmoid(slope=10), reset, reset_delay)
        res = synaptic_sequence(inputs[0], p, backend="compiled")
        out[dev] = [t.cpu() for t in res + _grads(res, inputs)]
    same = (out["cpu"][0] == out["cuda"][0]).float().mean()
    assert same > 0.999  # a float32 FMA (CUDA contracts multiply-adds) may flip a membrane on the threshold
    if dtype == torch.float64:
        for a, e in zip(out["cuda"], out["cpu"]):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)
