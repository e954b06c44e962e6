"""Event-driven feed-forward synaptic delays (issue "kernels v2", item 1).

The ``synaptic_delay`` op runs event-driven on sparse inputs: on the CPU its compressed path
(the non-zeros of each input channel), on CUDA the scatter / gather kernels of
``csrc/cuda/delays_cuda.cu``. These tests check

* the compiled CPU op (both paths: sparse and dense inputs) against the plain-PyTorch reference
  in float64 to 1e-9, forward and every gradient, with and without ``grad_x``
  (``input_grad=False`` skips the one dense part of the backward pass: a first layer's data);
* a plain-PyTorch mirror of the CUDA event algorithm (the same event list: channel-grouped
  non-zeros with per-channel offsets, the same index arithmetic for the forward scatter and the
  per-connection gather of the backward) against the reference, so the algorithm the GPU runs
  is checked on machines without one;
* CUDA against the CPU where a GPU exists (sparse inputs run the event kernels, dense inputs
  and ``torch.use_deterministic_algorithms`` the dense ones).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snn_delays_ext
from snn_delays_ext import ops

compiled = pytest.mark.skipif(not ops.AVAILABLE, reason=f"compiled ops not built: {ops.LOAD_ERROR}")
DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)
#: Events of one channel per block of the CUDA gradient kernel (kEventsPerBlock in delays_cuda.cu).
EVENTS_PER_BLOCK = 256


def _case(T, B, I, O, W, density, seed, lo=-2, hi=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=DT) * (torch.rand(T, B, I, generator=g) < density)
    w = torch.randn(O, I, generator=g, dtype=DT)
    start = torch.randint(lo, hi, (O, I), generator=g)
    vals = torch.rand(O, I, W, generator=g, dtype=DT)
    return x, w, start, vals


def _reference(x, w, start, vals, gy):
    """Forward and (grad_x, grad_weight, grad_vals) of the plain-PyTorch reference (an empty
    input or output: zeros, which the reference's convolution cannot shape)."""
    T, B, I = x.shape
    O = w.shape[0]
    if 0 in (B, I, O):
        return x.new_zeros(T, B, O), torch.zeros_like(x), torch.zeros_like(w), torch.zeros_like(vals)
    x, w, vals = (t.detach().clone().requires_grad_() for t in (x, w, vals))
    y = ops._synaptic_delay_ref(x, w, start, vals)
    gx, gw, gv = torch.autograd.grad(y, (x, w, vals), gy, allow_unused=True)
    zero = torch.zeros_like
    return y.detach(), (gx if gx is not None else zero(x)), (gw if gw is not None else zero(w)), \
        (gv if gv is not None else zero(vals))


# -- a mirror of the CUDA event algorithm, in plain PyTorch ---------------------------------------
def _input_events(x):
    """``input_events`` of delays_cuda.cu: channel-major non-zeros, per-channel offsets."""
    T, B, I = x.shape
    TB = T * B
    flat = x.permute(2, 0, 1).contiguous().view(-1)
    nz = torch.nonzero(flat).view(-1)
    offsets = torch.searchsorted(nz, torch.arange(I + 1) * TB)
    return nz.remainder(TB), nz.div(TB, rounding_mode="floor"), flat[nz], offsets


def _event_forward(x, w, start, vals):
    """``synaptic_event_fwd_kernel``: each event adds ``w[o, i] * vals[o, i, k] * x`` to
    ``y[t + start[o, i] + k, b, o]`` for every output ``o`` and tap ``k`` inside ``[0, T)``."""
    T, B, _ = x.shape
    O, W = w.shape[0], vals.shape[-1]
    pos, chan, val, _ = _input_events(x)
    t, b = pos // B, pos % B
    y = x.new_zeros(T * B * O)
    o = torch.arange(O)
    for k in range(W):  # (E, O) contributions of tap k
        dst = t[:, None] + start[o[None, :], chan[:, None]] + k
        c = w[o[None, :], chan[:, None]] * vals[o[None, :], chan[:, None], k] * val[:, None]
        ok = (dst >= 0) & (dst < T)
        idx = (dst * B + b[:, None]) * O + o[None, :]
        y.index_add_(0, idx[ok], c[ok])
    return y.view(T, B, O)


def _event_grad_wv(x, w, start, vals, gy):
    """``synaptic_event_bwd_wv_kernel``: for each connection ``(o, i)``, blocks of
    :data:`EVENTS_PER_BLOCK` events of channel ``i`` sum ``x * gy[t + lag, b, o]`` per tap; the
    block sums are added (atomically on the GPU) into grad_vals and grad_weight."""
    T, B, I = x.shape
    O, W = w.shape[0], vals.shape[-1]
    pos, _, val, offsets = _input_events(x)
    gw = torch.zeros_like(w)
    gv = torch.zeros_like(vals)
    for i in range(I):
        for e0 in range(int(offsets[i]), int(offsets[i + 1]), EVENTS_PER_BLOCK):
            e1 = min(int(offsets[i + 1]), e0 + EVENTS_PER_BLOCK)
            p, v = pos[e0:e1], val[e0:e1]
            t, b = p // B, p % B
            for k in range(W):
                dst = t[:, None] + start[:, i][None, :] + k  # (events, O)
                ok = (dst >= 0) & (dst < T)
                g = gy[dst.clamp(0, max(T - 1, 0)), b[:, None], torch.arange(O)[None, :]] * ok
                acc = (v[:, None] * g).sum(0)  # (O,)
                gv[:, i, k] += w[:, i] * acc
                gw[:, i] += vals[:, i, k] * acc
    return gw, gv


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(0, 12), B=st.integers(0, 3), I=st.integers(0, 5), O=st.integers(0, 5),
       W=st.integers(1, 4), density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), seed=st.integers(0, 2**16))
def test_event_algorithm_mirror_matches_reference(T, B, I, O, W, density, seed):
    x, w, start, vals = _case(T, B, I, O, W, density, seed)
    gy = torch.randn(T, B, O, dtype=DT, generator=torch.Generator().manual_seed(seed + 1))
    y, _, gw, gv = _reference(x, w, start, vals, gy)
    torch.testing.assert_close(_event_forward(x, w, start, vals), y, **TOL)
    ew, ev = _event_grad_wv(x, w, start, vals, gy)
    torch.testing.assert_close(ew, gw, **TOL)
    torch.testing.assert_close(ev, gv, **TOL)


def test_event_mirror_crosses_block_boundaries():
    # more events per channel than one block of the gradient kernel holds
    x, w, start, vals = _case(200, 4, 2, 3, 2, 0.9, 5)
    gy = torch.randn(200, 4, 3, dtype=DT)
    _, _, gw, gv = _reference(x, w, start, vals, gy)
    assert int((x[..., 0] != 0).sum()) > 2 * EVENTS_PER_BLOCK
    ew, ev = _event_grad_wv(x, w, start, vals, gy)
    torch.testing.assert_close(ew, gw, **TOL)
    torch.testing.assert_close(ev, gv, **TOL)


# -- the compiled CPU op ------------------------------------------------------------------------
@compiled
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(T=st.integers(0, 14), B=st.integers(0, 3), I=st.integers(0, 6), O=st.integers(0, 5),
       W=st.integers(1, 4), density=st.sampled_from([0.0, 0.02, 0.1, 0.5, 1.0]), seed=st.integers(0, 2**16),
       input_grad=st.booleans())
def test_compiled_op_matches_reference(T, B, I, O, W, density, seed, input_grad):
    x, w, start, vals = _case(T, B, I, O, W, density, seed)
    gy = torch.randn(T, B, O, dtype=DT, generator=torch.Generator().manual_seed(seed + 1))
    _check_compiled_op(x, w, start, vals, gy, input_grad)


def _check_compiled_op(x, w, start, vals, gy, input_grad):
    """The compiled op's forward and backward equal the reference's (float64, 1e-9)."""
    y, gx, gw, gv = _reference(x, w, start, vals, gy)
    K = torch.ops.snn_delays_ext
    torch.testing.assert_close(K.synaptic_delay(x, w, start, vals), y, **TOL)
    cx, cw, cv = K.synaptic_delay_backward(gy, x, w, start, vals, input_grad)
    if input_grad:
        torch.testing.assert_close(cx, gx, **TOL)
    else:
        assert cx.shape == (0,)
    torch.testing.assert_close(cw, gw, **TOL)
    torch.testing.assert_close(cv, gv, **TOL)


@compiled
@pytest.mark.parametrize("W", [1, 2, 5, 7, 8, 9, 17])
@pytest.mark.parametrize("input_grad", [True, False])
def test_compiled_op_sparse_all_tap_widths(W, input_grad):
    # the CPU backward sums up to 8 taps with compile-time unrolled loops, wider bands (up to 16) in
    # a generic loop, and W > 16 tap by tap; events near both ends of the sequence fall outside
    # the range where every tap lands inside and take the per-tap walk
    x, w, start, vals = _case(40, 3, 5, 4, W, 0.08, W, lo=-3, hi=9)
    gy = torch.randn(40, 3, 4, dtype=DT, generator=torch.Generator().manual_seed(W))
    _check_compiled_op(x, w, start, vals, gy, input_grad)


@compiled
@pytest.mark.parametrize("density", [0.0, 0.05, 1.0], ids=["silent", "sparse", "all-spiking"])
def test_delays_at_zero_and_max(density):
    D = 7
    x, w, _, _ = _case(20, 2, 4, 3, 2, density, 1)
    delays = torch.tensor([[0.0, D, 0.0, D], [D, 0.0, D / 2, 0.0], [0.0, 0.0, D, D]], dtype=DT)
    out = {}
    for backend in ("compiled", "reference"):
        wi = w.clone().requires_grad_()
        di = delays.detach().clone().requires_grad_()
        y, _ = snn_delays_ext.functional.delayed_linear(x, wi, None, di, D, "synaptic", 0.5, backend=backend)
        (y * torch.linspace(-1, 1, y.numel(), dtype=DT).view_as(y)).sum().backward()
        out[backend] = (y, wi.grad, di.grad)
    for a, e in zip(out["compiled"], out["reference"]):
        torch.testing.assert_close(a, e, **TOL)


@compiled
def test_opcheck_backward_without_input_grad():
    x, w, start, vals = _case(9, 2, 3, 4, 2, 0.2, 3)
    gy = torch.randn(9, 2, 4, dtype=DT)
    for flag in (True, False):
        torch.library.opcheck(torch.ops.snn_delays_ext.synaptic_delay_backward.default, (gy, x, w, start, vals, flag))
    fake = torch.ops.snn_delays_ext.synaptic_delay_backward(gy.to("meta"), x.to("meta"), w.to("meta"), start.to("meta"),
                                                            vals.to("meta"), False)
    assert fake[0].shape == (0,) and fake[1].shape == w.shape and fake[2].shape == vals.shape


@compiled
def test_first_layer_data_gets_no_input_gradient_and_right_parameter_gradients():
    torch.manual_seed(0)
    layer = snn_delays_ext.DelayedLinear(6, 5, max_delay=8).double()
    x = (torch.rand(30, 3, 6, dtype=DT) < 0.05).to(DT)  # data: requires no gradient
    choice = layer.backend(x)
    assert choice.backend == "compiled" and "event-driven on inputs with fewer than 15% non-zeros" in choice.reason
    layer(x).square().sum().backward()
    got = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    y, _ = snn_delays_ext.functional.delayed_linear(x, layer.weight, layer.bias, layer.delays, layer.max_delay,
                                                    sigma=layer.sigma, backend="reference")
    y.square().sum().backward()
    for a, p in zip(got, layer.parameters()):
        torch.testing.assert_close(a, p.grad, **TOL)


@compiled
def test_gradcheck_sparse_input_parameters_only():
    x, w, start, vals = _case(15, 2, 3, 2, 2, 0.1, 4)
    w.requires_grad_()
    vals.requires_grad_()
    assert torch.autograd.gradcheck(lambda w_, v_: torch.ops.snn_delays_ext.synaptic_delay(x, w_, start, v_),
                                    (w, vals))


# -- CUDA ------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("density", [0.0, 0.03, 0.1, 0.5], ids=["silent", "events-3%", "events-10%", "dense"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_cuda_matches_cpu(density, deterministic):
    if "cuda" not in ops.available_devices():
        pytest.skip("no CUDA kernels in this build (or no GPU)")
    x, w, start, vals = _case(300, 6, 40, 70, 3, density, 7, lo=-1, hi=30)
    gy = torch.randn(300, 6, 70, dtype=DT)
    K = torch.ops.snn_delays_ext
    want = (K.synaptic_delay(x, w, start, vals),) + tuple(K.synaptic_delay_backward(gy, x, w, start, vals, True))
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)
    try:
        c = [t.cuda() for t in (gy, x, w, start, vals)]
        got = (K.synaptic_delay(*c[1:]),) + tuple(K.synaptic_delay_backward(*c, True))
        no_x = K.synaptic_delay_backward(*c, False)
    finally:
        torch.use_deterministic_algorithms(prev)
    for a, e in zip(got, want):
        torch.testing.assert_close(a.cpu(), e, **TOL)
    assert no_x[0].numel() == 0
    torch.testing.assert_close(no_x[1].cpu(), want[2], **TOL)
