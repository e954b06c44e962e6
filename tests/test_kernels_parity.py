"""Parity of the compiled ops with the plain-PyTorch reference (forward and every gradient)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snn_delays_ext import ops
from snn_delays_ext.functional._compiled import recurrent_leaky_compiled

from _kernel_helpers import SURROGATES, compiled_delayed_linear, ref_delayed_linear, reference_recurrent

pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason=f"compiled ops not built: {ops.LOAD_ERROR}")

FF_KINDS = ("synaptic", "axonal", "dendritic")
MODES = ("triangle", "round")
RESETS = ("subtract", "zero", "none")
TOL = {torch.float64: dict(rtol=1e-9, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=2e-5)}


def _ff_case(kind, T, B, I, O, D, sigma, dtype, gen, density=0.5):
    x = torch.randn(T, B, I, dtype=dtype, generator=gen)
    x = x * (torch.rand(T, B, I, dtype=dtype, generator=gen) < density)  # some exact zeros
    w = torch.randn(O, I, dtype=dtype, generator=gen)
    b = torch.randn(O, dtype=dtype, generator=gen)
    shape = {"synaptic": (O, I), "axonal": (I,), "dendritic": (O,)}[kind]
    d = torch.rand(shape, dtype=dtype, generator=gen) * (D + 1) - 0.5  # some clamped
    return [t.requires_grad_() for t in (x, w, b, d)]


def _ff_compare(kind, mode, T, B, I, O, D, sigma, dtype, seed, density=0.5):
    gen = torch.Generator().manual_seed(seed)
    x, w, b, d = _ff_case(kind, T, B, I, O, D, sigma, dtype, gen, density)
    y_ref, _ = ref_delayed_linear(x, w, b, d, D, kind, sigma, mode)
    y = compiled_delayed_linear(x, w, b, d, D, kind, sigma, mode)
    torch.testing.assert_close(y, y_ref, **TOL[dtype])
    gy = torch.randn(y.shape, dtype=dtype, generator=gen)
    g_ref = torch.autograd.grad(y_ref, (x, w, b, d), gy)
    g = torch.autograd.grad(y, (x, w, b, d), gy)
    for name, a, e in zip(("x", "weight", "bias", "delays"), g, g_ref):
        torch.testing.assert_close(a, e, **TOL[dtype], msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("kind", FF_KINDS)
@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    T=st.integers(1, 14), B=st.integers(1, 3), I=st.integers(1, 5), O=st.integers(1, 5),
    D=st.integers(1, 8), sigma=st.sampled_from([0.0, 0.4, 1.0, 2.7]), seed=st.integers(0, 2**16),
)
def test_feedforward_parity_float64(kind, mode, T, B, I, O, D, sigma, seed):
    _ff_compare(kind, mode, T, B, I, O, D, sigma, torch.float64, seed)


@pytest.mark.parametrize("kind", FF_KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_feedforward_parity_float32(kind, mode):
    _ff_compare(kind, mode, 40, 4, 9, 7, 12, 1.5, torch.float32, 3)


# the compiled synaptic kernels switch to a compressed copy of x below 15% non-zeros (spike
# trains): both sides of the switch, no non-zeros at all, and a fully dense input
@pytest.mark.parametrize("density", (0.0, 0.03, 0.12, 0.18, 1.0))
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32))
def test_synaptic_parity_across_input_density(density, dtype):
    _ff_compare("synaptic", "triangle", 37, 5, 23, 9, 11, 1.5, dtype, 7, density=density)


def _rec_compare(kind, mode, reset, surrogate, T, B, N, D, sigma, dtype, seed, scale=1.2, beta_v=0.8,
                 tol=None, reset_delay=True, detach_reset=False):
    gen = torch.Generator().manual_seed(seed)
    code, param, make = SURROGATES[surrogate]
    fn = make(param)
    x = (torch.rand(T, B, N, dtype=dtype, generator=gen) * scale).requires_grad_()
    w = (torch.randn(N, N, dtype=dtype, generator=gen) * 0.5).requires_grad_()
    b = (torch.randn(N, dtype=dtype, generator=gen) * 0.1).requires_grad_()
    shape = (N,) if kind == "axonal" else (N, N)
    d = (torch.rand(shape, dtype=dtype, generator=gen) * (D + 1)).requires_grad_()
    beta = torch.full((N,), beta_v, dtype=dtype).add_(0.05 * torch.rand(N, dtype=dtype, generator=gen))
    beta.requires_grad_()
    thr = (1.0 + 0.2 * torch.rand(N, dtype=dtype, generator=gen)).requires_grad_()
    s_ref, m_ref = reference_recurrent(x, w, b, d, beta, thr, fn, D, kind, sigma, mode, reset, reset_delay,
                                       detach_reset)
    s, m = recurrent_leaky_compiled(x, w, b, d, beta, thr, D, kind, sigma, mode, reset, (code, param),
                                    reset_delay, detach_reset)
    tol = tol or TOL[dtype]
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    torch.testing.assert_close(m, m_ref, **tol)
    gs = torch.randn(s.shape, dtype=dtype, generator=gen)
    gm = torch.randn(m.shape, dtype=dtype, generator=gen)
    inputs = (x, w, b, d, beta, thr)
    g_ref = torch.autograd.grad((s_ref * gs).sum() + (m_ref * gm).sum(), inputs)
    g = torch.autograd.grad((s * gs).sum() + (m * gm).sum(), inputs)
    for name, a, e in zip(("x", "weight", "bias", "delays", "beta", "threshold"), g, g_ref):
        torch.testing.assert_close(a, e, **tol, msg=lambda msg: f"grad {name}: {msg}")
    return s


@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reset", RESETS)
@settings(max_examples=6, deadline=None)
@given(
    T=st.integers(1, 25), B=st.integers(1, 3), N=st.integers(1, 6), D=st.integers(1, 9),
    sigma=st.sampled_from([0.0, 0.5, 2.0]), seed=st.integers(0, 2**16),
)
def test_recurrent_parity_float64(kind, mode, reset, T, B, N, D, sigma, seed):
    _rec_compare(kind, mode, reset, "fast_sigmoid", T, B, N, D, sigma, torch.float64, seed)


@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("detach_reset", (False, True))
@settings(max_examples=6, deadline=None)
@given(
    T=st.integers(1, 25), B=st.integers(1, 3), N=st.integers(1, 6), D=st.integers(1, 9),
    sigma=st.sampled_from([0.0, 0.5, 2.0]), seed=st.integers(0, 2**16),
    surrogate=st.sampled_from(["fast_sigmoid", "atan", "sigmoid", "triangle"]),
)
def test_recurrent_same_step_reset_parity_float64(kind, reset, detach_reset, T, B, N, D, sigma, seed, surrogate):
    # snnTorch's reset_delay=False (DelRec's neuron: the spike resets in its own step), the reset
    # carrying the spike's surrogate gradient or not (detach_reset)
    _rec_compare(kind, "triangle", reset, surrogate, T, B, N, D, sigma, torch.float64, seed, reset_delay=False,
                 detach_reset=detach_reset)


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
def test_recurrent_parity_surrogates(surrogate, kind):
    s = _rec_compare(kind, "triangle", "subtract", surrogate, 30, 3, 6, 7, 0.5, torch.float64, 11)
    assert 0 < s.mean() < 1  # the case exercises spikes and silence


@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
@pytest.mark.parametrize("reset", RESETS)
def test_recurrent_parity_float32(kind, reset):
    # float32: spikes may flip where a membrane sits within rounding of the threshold, so use a
    # seed/shape whose spikes agree and a tolerance for the accumulated rounding
    _rec_compare(kind, "triangle", reset, "atan", 60, 4, 16, 12, 1.0, torch.float32, 5,
                 tol=dict(rtol=2e-3, atol=1e-3))


# -- edge cases ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
def test_recurrent_lags_at_bounds_and_short_sequences(kind):
    D, N = 6, 4
    for T in (1, 3, D + 4):  # T < max_delay and T > max_delay
        gen = torch.Generator().manual_seed(T)
        code, param, make = SURROGATES["fast_sigmoid"]
        x = (torch.rand(T, 1, N, dtype=torch.float64, generator=gen) * 2).requires_grad_()  # batch 1
        w = torch.randn(N, N, dtype=torch.float64, generator=gen).requires_grad_()
        shape = (N,) if kind == "axonal" else (N, N)
        d = torch.where(torch.rand(shape, generator=gen) < 0.5, 1.0, float(D)).to(torch.float64)
        d = (d + torch.tensor([-0.5, 0.5], dtype=torch.float64)[torch.randint(0, 2, shape, generator=gen)]).requires_grad_()
        beta, thr = torch.tensor(0.9, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        s_ref, m_ref = reference_recurrent(x, w, None, d, beta, thr, make(param), D, kind, 0.0, "triangle", "subtract")
        s, m = recurrent_leaky_compiled(x, w, None, d, beta, thr, D, kind, 0.0, "triangle", "subtract", (code, param))
        torch.testing.assert_close(m, m_ref, rtol=1e-10, atol=1e-12)
        g_ref = torch.autograd.grad(m_ref.sum() + s_ref.sum(), (x, w, d))
        g = torch.autograd.grad(m.sum() + s.sum(), (x, w, d))
        for a, e in zip(g, g_ref):
            torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
@pytest.mark.parametrize("level", (0.0, 50.0))
def test_recurrent_silent_and_all_spiking(kind, level):
    s = _rec_compare(kind, "triangle", "subtract", "atan", 12, 2, 5, 4, 0.0, torch.float64, 2,
                     scale=0.0 if level == 0 else level)
    if level == 0:
        assert s.sum() == 0
    else:
        assert s.mean() == 1


@pytest.mark.parametrize("kind", FF_KINDS)
def test_feedforward_lags_at_bounds_and_non_contiguous(kind):
    D, T, B, I, O = 5, 3, 2, 3, 4  # T < max_delay
    xs = torch.randn(B, T, I, dtype=torch.float64).transpose(0, 1).requires_grad_()  # non-contiguous
    assert not xs.is_contiguous()
    w = torch.randn(O, I, dtype=torch.float64, requires_grad=True)
    shape = {"synaptic": (O, I), "axonal": (I,), "dendritic": (O,)}[kind]
    d = torch.zeros(shape, dtype=torch.float64)
    d.view(-1)[::2] = float(D)
    d.requires_grad_()
    for mode in MODES:
        y_ref, _ = ref_delayed_linear(xs, w, None, d, D, kind, 0.0, mode)
        y = compiled_delayed_linear(xs, w, None, d, D, kind, 0.0, mode)
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        g_ref = torch.autograd.grad(y_ref.square().sum(), (xs, w, d))
        g = torch.autograd.grad(y.square().sum(), (xs, w, d))
        for a, e in zip(g, g_ref):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-12)


def test_recurrent_non_contiguous_input():
    x = torch.rand(3, 20, 5, dtype=torch.float64).transpose(0, 1) * 1.5  # (T=20, B=3, N=5)
    x.requires_grad_()
    w = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    d = torch.rand(5, dtype=torch.float64) * 4 + 1
    code, param, make = SURROGATES["atan"]
    beta, thr = torch.tensor(0.7, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    s_ref, m_ref = reference_recurrent(x, w, None, d, beta, thr, make(param), 5, "axonal", 0.3, "round", "zero")
    s, m = recurrent_leaky_compiled(x, w, None, d, beta, thr, 5, "axonal", 0.3, "round", "zero", (code, param))
    torch.testing.assert_close(m, m_ref)
    torch.testing.assert_close(torch.autograd.grad(m.sum(), x)[0], torch.autograd.grad(m_ref.sum(), x)[0])


# -- CUDA ----------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("kind", FF_KINDS)
@pytest.mark.parametrize("mode", MODES)
def test_feedforward_cuda_matches_cpu(kind, mode):
    if "cuda" not in ops.available_devices():
        pytest.skip("CUDA kernels not built")
    gen = torch.Generator().manual_seed(0)
    x, w, b, d = _ff_case(kind, 30, 3, 6, 5, 9, 1.0, torch.float64, gen)
    y = compiled_delayed_linear(x, w, b, d, 9, kind, 1.0, mode)
    g = torch.autograd.grad(y.square().sum(), (x, w, b, d))
    xc, wc, bc, dc = (t.detach().cuda().requires_grad_() for t in (x, w, b, d))
    yc = compiled_delayed_linear(xc, wc, bc, dc, 9, kind, 1.0, mode)
    gc = torch.autograd.grad(yc.square().sum(), (xc, wc, bc, dc))
    torch.testing.assert_close(yc.cpu(), y)
    for a, e in zip(gc, g):
        torch.testing.assert_close(a.cpu(), e)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", ("axonal", "synaptic"))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("surrogate", ("fast_sigmoid", "triangle"))
def test_recurrent_cuda_matches_reference(kind, mode, reset, surrogate):
    if "cuda" not in ops.available_devices():
        pytest.skip("CUDA kernels not built")
    gen = torch.Generator().manual_seed(1)
    code, param, make = SURROGATES[surrogate]
    dt = torch.float64
    x = (torch.rand(40, 3, 8, dtype=dt, generator=gen) * 1.2).cuda().requires_grad_()
    w = (torch.randn(8, 8, dtype=dt, generator=gen) * 0.5).cuda().requires_grad_()
    b = (torch.randn(8, dtype=dt, generator=gen) * 0.1).cuda().requires_grad_()
    d = (torch.rand((8,) if kind == "axonal" else (8, 8), dtype=dt, generator=gen) * 9).cuda().requires_grad_()
    beta = torch.full((8,), 0.8, dtype=dt, device="cuda", requires_grad=True)
    thr = torch.full((8,), 1.0, dtype=dt, device="cuda", requires_grad=True)
    s_ref, m_ref = reference_recurrent(x, w, b, d, beta, thr, make(param), 8, kind, 0.5, mode, reset)
    s, m = recurrent_leaky_compiled(x, w, b, d, beta, thr, 8, kind, 0.5, mode, reset, (code, param))
    torch.testing.assert_close(s, s_ref)
    torch.testing.assert_close(m, m_ref)
    inputs = (x, w, b, d, beta, thr)
    g_ref = torch.autograd.grad(s_ref.sum() + m_ref.sum(), inputs)
    g = torch.autograd.grad(s.sum() + m.sum(), inputs)
    for a, e in zip(g, g_ref):
        torch.testing.assert_close(a, e)


# the synaptic reverse loop works on the whole batch at once (batch-minor buffer, vector loop
# over the batch): batches that are not a multiple of the vector width, several taps
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32))
@pytest.mark.parametrize("B,sigma", [(11, 2.0), (17, 0.0), (1, 3.0)])
def test_recurrent_synaptic_parity_wide_batches(dtype, B, sigma):
    s = _rec_compare("synaptic", "triangle", "subtract", "atan", 30, B, 13, 6, sigma, dtype, 40 + B)
    assert 0 < float(s.mean()) < 1


@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
@pytest.mark.parametrize("past_len", [0, 3, 9])
def test_feedforward_compiled_with_a_past_equals_reference(kind, past_len):
    """The compiled path continues a sequence from a given past (prepended, outputs dropped):
    the same output, new past and gradients (past's too) as the reference."""
    from snn_delays_ext.functional import delayed_linear

    gen = torch.Generator().manual_seed(5)
    dt = torch.float64
    n_in, n_out, D, sigma = 4, 3, 6, 0.7
    x = torch.rand(11, 2, n_in, generator=gen, dtype=dt).requires_grad_()
    w = torch.randn(n_out, n_in, generator=gen, dtype=dt).requires_grad_()
    b = torch.randn(n_out, generator=gen, dtype=dt).requires_grad_()
    shape = {"synaptic": (n_out, n_in), "axonal": (n_in,), "dendritic": (n_out,)}[kind]
    d = (torch.rand(shape, generator=gen, dtype=dt) * D).requires_grad_()
    f = n_out if kind == "dendritic" else n_in
    past = torch.rand(past_len, 2, f, generator=gen, dtype=dt).requires_grad_()
    outs = []
    for backend in ("compiled", "reference"):
        y, new_past = delayed_linear(x, w, b, d, D, kind, sigma, "triangle", past=past, backend=backend)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=dt).view(y.shape)).sum() + new_past.square().sum()
        outs.append((y, new_past, torch.autograd.grad(loss, [x, w, b, d, past])))
    (y1, p1, g1), (y2, p2, g2) = outs
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(p1, p2)
    for a, e in zip(g1, g2):
        torch.testing.assert_close(a, e)
