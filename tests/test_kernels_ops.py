"""Custom-op plumbing: opcheck, gradcheck, torch.compile, modules, backend, fallback."""

from __future__ import annotations

import warnings

import pytest
import snntorch.surrogate as sg
import torch

import snn_delays_ext
from snn_delays_ext import DelayedLinear, DelayedRecurrentLeaky, ops
from snn_delays_ext.functional._compiled import recurrent_leaky_compiled
from snn_delays_ext.functional.interpolation import banded_taps
from snn_delays_ext.surrogate import surrogate_spec, triangle

from _kernel_helpers import SURROGATES, compiled_delayed_linear, ref_delayed_linear, reference_recurrent

compiled = pytest.mark.skipif(not ops.AVAILABLE, reason=f"compiled ops not built: {ops.LOAD_ERROR}")
OPS = torch.ops.snn_delays_ext if ops.AVAILABLE else None
DT = torch.float64


def _taps(shape, D, min_delay, mode="triangle", sigma=0.5):
    d = torch.rand(shape, dtype=DT) * D
    return banded_taps(d, D, sigma, min_delay, mode)


# -- opcheck -------------------------------------------------------------------------------------
@compiled
def test_opcheck_feedforward_ops():
    x = torch.randn(9, 2, 3, dtype=DT, requires_grad=True)
    start, vals = _taps((3,), 4, 0)
    vals.detach_().requires_grad_()
    torch.library.opcheck(OPS.delay_channels.default, (x, start, vals))
    torch.library.opcheck(OPS.delay_channels_backward.default, (torch.randn(9, 2, 3, dtype=DT), x.detach(), start, vals.detach()))
    w = torch.randn(4, 3, dtype=DT, requires_grad=True)
    s2, v2 = _taps((4, 3), 4, 0)
    v2.detach_().requires_grad_()
    torch.library.opcheck(OPS.synaptic_delay.default, (x, w, s2, v2))
    torch.library.opcheck(OPS.synaptic_delay_backward.default,
                          (torch.randn(9, 2, 4, dtype=DT), x.detach(), w.detach(), s2, v2.detach()))


@compiled
@pytest.mark.parametrize("synaptic", [False, True])
@pytest.mark.parametrize("reset_delay,reset,dropout", [(True, 0, False), (False, 0, False), (False, 3, True),
                                                       (False, 4, True)],
                         ids=["late-reset", "same-step", "once-subtract-dropout", "once-zero-dropout"])
def test_opcheck_recurrent_ops(synaptic, reset_delay, reset, dropout):
    N = 4
    x = (torch.rand(12, 2, N, dtype=DT) * 1.5).requires_grad_()
    w = torch.randn(N, N, dtype=DT, requires_grad=True)
    b = torch.randn(N, dtype=DT, requires_grad=True)
    start, vals = _taps((N, N) if synaptic else (N,), 5, 1)
    vals = vals.detach().requires_grad_()
    beta = torch.full((N,), 0.8, dtype=DT, requires_grad=True)
    thr = torch.ones(N, dtype=DT, requires_grad=True)
    scale = (torch.rand(2, N, dtype=DT) > 0.5).to(DT) * 2.0 if dropout else None
    args = (x, w, b, start, vals, beta, thr, reset, 1, 5.0, synaptic, reset_delay, False, scale)
    # the bytes output is not differentiable; check schema, fake and dispatch, and gradients via
    # the parity tests
    torch.library.opcheck(OPS.recurrent_lif.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))
    spk, mem, bits, pre = OPS.recurrent_lif(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
    assert pre.shape == ((0,) if reset_delay else mem.shape)
    bargs = (torch.randn_like(mem), torch.randn_like(mem), w.detach(), start, vals.detach(), beta.detach(),
             thr.detach(), mem, bits, pre, reset, 1, 5.0, synaptic, reset_delay, True, scale)
    torch.library.opcheck(OPS.recurrent_lif_backward.default, bargs)


# -- gradcheck -----------------------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
def test_gradcheck_feedforward(kind):
    x = torch.randn(7, 2, 3, dtype=DT, requires_grad=True)
    w = torch.randn(2, 3, dtype=DT, requires_grad=True)
    b = torch.randn(2, dtype=DT, requires_grad=True)
    shape = {"synaptic": (2, 3), "axonal": (3,), "dendritic": (2,)}[kind]
    # keep delays away from integers (the triangle has kinks there)
    d = (torch.randint(0, 4, shape).to(DT) + 0.3 + 0.4 * torch.rand(shape, dtype=DT)).requires_grad_()
    f = lambda x, w, b, d: compiled_delayed_linear(x, w, b, d, 5, kind, 0.7, "triangle")
    assert torch.autograd.gradcheck(f, (x, w, b, d))


@compiled
@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_gradcheck_recurrent_below_threshold(kind):
    # Spikes are a step function; below threshold (no spike can occur) the membrane is a smooth
    # function of input, weights, bias, delays and beta, and the op's gradient must be exact.
    # (heaviside surrogate: zero derivative below threshold, so no surrogate term leaks in)
    N = 3
    x = (torch.rand(10, 2, N, dtype=DT) * 0.2).requires_grad_()
    w = (torch.randn(N, N, dtype=DT) * 0.3).requires_grad_()
    b = (torch.rand(N, dtype=DT) * 0.1).requires_grad_()
    shape = (N,) if kind == "axonal" else (N, N)
    d = (torch.randint(1, 4, shape).to(DT) + 0.3 + 0.4 * torch.rand(shape, dtype=DT)).requires_grad_()
    beta = torch.tensor(0.7, dtype=DT, requires_grad=True)
    thr = torch.tensor(100.0, dtype=DT)

    def f(x, w, b, d, beta):
        return recurrent_leaky_compiled(x, w, b, d, beta, thr, 5, kind, 0.5, "triangle", "subtract", (5, 0.0))[1]

    assert torch.autograd.gradcheck(f, (x, w, b, d, beta))
    # DelRec's options: learnable per-neuron widths and a recurrent-dropout mask (no gradient)
    p = torch.randn(N, dtype=DT, requires_grad=True)
    scale = torch.tensor([[0.0, 2.0, 2.0], [2.0, 0.0, 2.0]], dtype=DT)

    def g(x, w, b, d, beta, p):
        return recurrent_leaky_compiled(x, w, b, d, beta, thr, 5, kind, 1.5, "triangle", "subtract", (5, 0.0),
                                        False, False, torch.sigmoid(p), scale, "spikingjelly")[1]

    assert torch.autograd.gradcheck(g, (x, w, b, d, beta, p))


@compiled
def test_recurrent_spike_gradient_matches_finite_differences_of_a_smooth_spike():
    # With the straight-through surrogate the op's derivative of spikes is 1; compare the
    # adjoint against the reference autograd with an independent float64 STE.
    code, param, make = SURROGATES["straight_through_estimator"]
    x = (torch.rand(15, 2, 4, dtype=DT) * 1.5).requires_grad_()
    w = torch.randn(4, 4, dtype=DT, requires_grad=True)
    d = (torch.rand(4, dtype=DT) * 4 + 1).requires_grad_()
    beta, thr = torch.tensor(0.6, dtype=DT), torch.tensor(1.0, dtype=DT)
    s_ref, _ = reference_recurrent(x, w, None, d, beta, thr, make(param), 5, "axonal", 0.0, "triangle", "subtract")
    s, _ = recurrent_leaky_compiled(x, w, None, d, beta, thr, 5, "axonal", 0.0, "triangle", "subtract", (code, param))
    for a, e in zip(torch.autograd.grad(s.sum(), (x, w, d)), torch.autograd.grad(s_ref.sum(), (x, w, d))):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


# -- modules use the compiled ops ------------------------------------------------------------------
@compiled
@pytest.mark.parametrize("delay_type", ["axonal", "synaptic"])
@pytest.mark.parametrize("surrogate", [sg.atan(alpha=3.0), sg.fast_sigmoid(slope=10), sg.triangular(),
                                       triangle(0.8)])
def test_recurrent_module_uses_compiled_op_and_matches_reference(monkeypatch, delay_type, surrogate):
    lif = DelayedRecurrentLeaky(0.8, 6, max_delay=7, delay_type=delay_type, spike_grad=surrogate,
                                sigma=0.5).double()
    x = (torch.rand(25, 3, 6, dtype=DT) * 1.3).requires_grad_()
    assert lif.backend(x).backend == "compiled"
    spk, mem = lif(x)
    params = list(lif.parameters())
    g = torch.autograd.grad(mem.sum() + spk.sum(), [x] + params)
    # reference: the functional path with the module's own parameters and snnTorch's surrogate
    s_ref, m_ref = reference_recurrent(x, lif.recurrent.weight, lif.recurrent.bias, lif.delays, lif.beta,
                                       lif.threshold, surrogate, 7, delay_type, 0.5, "triangle", "subtract")
    torch.testing.assert_close(spk, s_ref)
    torch.testing.assert_close(mem, m_ref)
    g_ref = torch.autograd.grad(m_ref.sum() + s_ref.sum(), [x] + params, allow_unused=True)
    for a, e in zip(g, g_ref):
        # snnTorch's surrogates return float32 spikes, so the reference gradient is float32-exact
        torch.testing.assert_close(a, e if e is not None else torch.zeros_like(a), rtol=1e-5, atol=1e-6)


@compiled
def test_unrecognised_spike_grad_falls_back_to_reference(monkeypatch):
    import snn_delays_ext.functional._compiled as compiled_path

    custom = lambda u: (u > 0).to(u.dtype)  # noqa: E731
    assert surrogate_spec(custom) is None
    lif = DelayedRecurrentLeaky(0.8, 4, max_delay=5, spike_grad=custom).double()
    x = torch.rand(10, 2, 4, dtype=DT)
    choice = lif.backend(x)
    assert choice.backend == "reference" and "spike_grad" in choice.reason
    monkeypatch.setattr(compiled_path, "recurrent_leaky_compiled", lambda *a, **k: pytest.fail("compiled op used"))
    spk, mem = lif(x)
    assert spk.shape == (10, 2, 4)
    lif2 = DelayedRecurrentLeaky(0.8, 4, max_delay=5, inhibition=True).double()
    assert "inhibition" in lif2.backend(x).reason
    lif2(x)  # inhibition: reference path
    with pytest.raises(ValueError, match="backend: 'compiled' cannot run recurrent_leaky_sequence here"):
        from snn_delays_ext.functional import recurrent_leaky_sequence

        recurrent_leaky_sequence(x, None, lif2.recurrent.weight, None, lif2.delays, lif2._params(), 5,
                                 backend="compiled")
    # snnTorch's same-step reset (DelRec's neuron) runs in the kernel, detached or not
    for detach in (False, True):
        lif3 = DelayedRecurrentLeaky(0.8, 4, max_delay=5, reset_delay=False, reset_mechanism="zero",
                                     detach_reset=detach).double()
        assert lif3.backend(x).backend == "compiled"


@compiled
@pytest.mark.parametrize("delay_type", ["synaptic", "axonal", "dendritic"])
def test_linear_module_uses_compiled_op(delay_type):
    layer = DelayedLinear(5, 3, max_delay=6, delay_type=delay_type, sigma=1.0).double()
    x = torch.randn(12, 2, 5, dtype=DT)
    y = layer(x)
    y_ref, _ = ref_delayed_linear(x, layer.weight, layer.bias, layer.delays, 6, delay_type, 1.0, "triangle")
    torch.testing.assert_close(y, y_ref)
    # step mode (reference path) still agrees with the sequence call
    layer.reset_state()
    steps = torch.stack([layer(x[t]) for t in range(12)])
    torch.testing.assert_close(steps, y)


def test_backend_reports_path():
    assert snn_delays_ext.backend() == ("compiled" if ops.AVAILABLE else "reference")
    assert snn_delays_ext.backend("cuda") == ("compiled" if "cuda" in ops.available_devices() else "reference")


def test_reference_fallback_warns_once(monkeypatch):
    monkeypatch.setattr(ops, "AVAILABLE", False)
    monkeypatch.setattr(ops, "_DEVICES", set())
    monkeypatch.setattr(ops, "_warned", False)
    assert snn_delays_ext.backend() == "reference"
    layer = DelayedLinear(3, 2, max_delay=4)
    lif = DelayedRecurrentLeaky(0.9, 2, max_delay=4)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = layer(torch.randn(6, 1, 3))
        lif(y)
        layer(torch.randn(6, 1, 3))
    msgs = [w for w in rec if "reference path" in str(w.message)]
    assert len(msgs) == 1


# -- torch.compile -------------------------------------------------------------------------------
@compiled
@pytest.mark.slow
def test_torch_compile_fullgraph_cpu():
    torch._dynamo.reset()

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = DelayedLinear(8, 16, max_delay=6, delay_type="axonal")
            self.lif1 = DelayedRecurrentLeaky(0.8, 16, max_delay=6, spike_grad=sg.fast_sigmoid(slope=25))
            self.fc2 = DelayedLinear(16, 4, max_delay=6, delay_type="synaptic")

        def forward(self, x):
            spk, _ = self.lif1(self.fc1(x))
            return self.fc2(spk).sum(0)

    net = Net()
    x = torch.rand(20, 3, 8) * 2
    eager = net(x)
    g_eager = torch.autograd.grad(eager.square().sum(), list(net.parameters()))
    cnet = torch.compile(net, fullgraph=True, backend="inductor")
    out = cnet(x)
    g = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out, eager, rtol=1e-5, atol=1e-5)
    for a, e in zip(g, g_eager):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)


# -- double backward (gradients of gradients) -----------------------------------------------------
@compiled
def test_gradgradcheck_feedforward_ops_with_any_band():
    # bands reaching before t = 0, after T and (synaptic) to negative lags, as the kernels allow
    x = torch.randn(7, 2, 3, dtype=DT, requires_grad=True)
    w = torch.randn(4, 3, dtype=DT, requires_grad=True)
    start = torch.randint(-4, 9, (4, 3))
    vals = torch.randn(4, 3, 3, dtype=DT, requires_grad=True)
    f = lambda x, w, v: OPS.synaptic_delay(x, w, start, v)
    assert torch.autograd.gradgradcheck(f, (x, w, vals))
    torch.testing.assert_close(f(x, w, vals), ops._synaptic_delay_ref(x, w, start, vals))
    sc = torch.randint(-4, 9, (3,))
    vc = torch.randn(3, 3, dtype=DT, requires_grad=True)
    g = lambda x, v: OPS.delay_channels(x, sc, v)
    assert torch.autograd.gradgradcheck(g, (x, vc))
    torch.testing.assert_close(g(x, vc), ops._delay_channels_ref(x, sc, vc))


@compiled
@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
def test_gradient_penalty_through_the_compiled_layer_matches_the_reference(kind):
    layer = DelayedLinear(3, 2, 4, delay_type=kind, sigma=0.5).double()
    with torch.no_grad():
        layer.delays.copy_(torch.rand_like(layer.delays) * 3.5 + 0.1)
    x = torch.randn(6, 2, 3, dtype=DT, requires_grad=True)
    params = [layer.weight, layer.bias, layer.delays, x]

    def penalty(y):
        g, = torch.autograd.grad((y ** 2).sum(), x, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), params, allow_unused=True)

    got = penalty(layer(x))
    want = penalty(ref_delayed_linear(x, layer.weight, layer.bias, layer.delays, 4, kind, 0.5, "triangle")[0])
    for name, a, b in zip(("weight", "bias", "delays", "x"), got, want):
        if b is None:
            assert a is None or not a.any(), name
            continue
        assert a is not None and a.abs().sum() > 0, name
        torch.testing.assert_close(a, b, msg=name)
    f = lambda x, w: torch.func.functional_call(layer, {"weight": w}, (x,))
    assert torch.autograd.gradgradcheck(f, (x, layer.weight.detach().clone().requires_grad_()))


@compiled
def test_first_order_backward_never_runs_the_plain_pytorch_formula(monkeypatch):
    def boom(*args):
        raise AssertionError("plain-PyTorch backward used outside double backward")

    monkeypatch.setattr(ops, "_synaptic_delay_ref", boom)
    monkeypatch.setattr(ops, "_delay_channels_ref", boom)
    for kind in ("synaptic", "axonal"):
        layer = DelayedLinear(3, 2, 4, delay_type=kind)
        x = torch.randn(6, 2, 3, requires_grad=True)
        layer(x).sum().backward()
        torch._dynamo.reset()
        torch.compile(layer, backend="aot_eager", fullgraph=True)(x).sum().backward()


@compiled
def test_recurrent_double_backward_raises_a_clear_error():
    lif = DelayedRecurrentLeaky(0.9, 4, max_delay=5).double()
    x = torch.rand(10, 2, 4, dtype=DT, requires_grad=True)
    _, mem = lif(x)
    g, = torch.autograd.grad(mem.pow(2).sum(), x, create_graph=True)
    _, mem0 = lif(x)
    g0, = torch.autograd.grad(mem0.pow(2).sum(), x)
    torch.testing.assert_close(g.detach(), g0)  # first order unchanged
    with pytest.raises(RuntimeError, match="double backward .* not supported through the compiled recurrent_lif op"):
        torch.autograd.grad(g.pow(2).sum(), [p for p in lif.parameters() if p.requires_grad], allow_unused=True)
