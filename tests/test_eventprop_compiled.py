"""Compiled EventProp ops (``torch.ops.snn_delays_ext.eventprop_lif_*``) against the plain-PyTorch
reference of :func:`snn_delays_ext.eventprop.eventprop_lif` (``backend="reference"``).

Spike functions have no meaningful finite-difference check at the op level (``gradcheck``
perturbs binary inputs), so the gradients are checked by parity with the reference, whose
gradients are themselves checked against finite differences and BPTT in
``test_eventprop_gradients.py``: float64 at 1e-9, float32 with the same spikes and float
tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snn_delays_ext import ops
from snn_delays_ext.eventprop import EventPropConfig, eventprop_lif, first_spike_times

D64 = torch.float64

pytestmark = pytest.mark.skipif(
    "cpu" not in ops.eventprop_devices(), reason="compiled EventProp ops not built (python setup.py build_ext)"
)


def _cfg(md, **kw):
    base = dict(alpha=0.8, beta=0.9, threshold=1.0, max_delay=md, syn_scale=0.9)
    base.update(kw)
    return EventPropConfig(**base)


def _net(seed, T, B, F, N, md, recurrent, dtype=D64, rate=0.15, wscale=2.0, extremes=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, B, F, generator=g, dtype=D64) < rate).to(dtype)
    W = (torch.rand(N, F, generator=g, dtype=D64) * wscale).to(dtype)
    D = (torch.rand(N, F, generator=g, dtype=D64) * (md + 2) - 1).to(dtype)  # some outside [0, md]
    if extremes:
        D[0, :] = 0.0
        D[-1, :] = float(md)
        D[0, 0] = 0.5  # a half: rounds up
    R = E = None
    if recurrent:
        R = (torch.randn(N, N, generator=g, dtype=D64) * 0.8).to(dtype)
        E = (torch.rand(N, N, generator=g, dtype=D64) * (md + 1)).to(dtype)  # some below 1
        if extremes:
            E[0, :] = 1.0
            E[-1, :] = float(md)
    return x, W, D, R, E


def _run(backend, x, W, D, R, E, cfg, seed=1, spk_loss=True, mem_loss=True):
    """Forward + backward of a random linear functional; returns outputs and all gradients."""
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, W, D, R, E)]
    spk, mem = eventprop_lif(*leaves, config=cfg, backend=backend)
    g = torch.Generator().manual_seed(seed)
    loss = spk.sum() * 0.0
    if spk_loss:
        # the random weights are drawn on the CPU (the same numbers for every device) and moved
        loss = loss + (spk * torch.randn(spk.shape, generator=g, dtype=D64).to(spk)).sum()
    if mem_loss and mem.numel():
        loss = loss + (mem * torch.randn(mem.shape, generator=g, dtype=D64).to(mem)).sum()
    loss.backward()
    grads = [t.grad if t is not None else None for t in leaves]
    return spk.detach(), mem.detach(), grads


def _assert_parity(ref, got, rtol, atol):
    s0, m0, g0 = ref
    s1, m1, g1 = got
    torch.testing.assert_close(s1, s0, rtol=0, atol=0)  # spikes exact
    torch.testing.assert_close(m1, m0, rtol=rtol, atol=atol)
    for name, a, b in zip(("x", "weight", "delays", "rec_weight", "rec_delays"), g0, g1):
        if a is None:
            assert b is None, name
            continue
        scale = max(1.0, float(a.abs().max()))
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol * scale, msg=lambda m, n=name: f"{n}: {m}")


def _both(x, W, D, R, E, cfg, **kw):
    return _run("reference", x, W, D, R, E, cfg, **kw), _run("compiled", x, W, D, R, E, cfg, **kw)


# ---------------------------------------------------------------------------------------------
# parity in float64 (1e-9) and float32
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_float64(seed, recurrent):
    md = 7
    x, W, D, R, E = _net(seed, 70, 3, 5, 6, md, recurrent)
    ref, got = _both(x, W, D, R, E, _cfg(md))
    assert ref[0].sum() > 20  # real spiking
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)
    assert got[2][2].abs().sum() > 0  # delay gradients are not trivially zero
    if recurrent:
        assert got[2][4].abs().sum() > 0


@pytest.mark.parametrize("recurrent", [False, True])
def test_parity_float32(recurrent):
    md = 5
    x, W, D, R, E = _net(3, 60, 4, 6, 8, md, recurrent, dtype=torch.float32)
    ref, got = _both(x, W, D, R, E, _cfg(md))
    assert ref[0].sum() > 20
    _assert_parity(ref, got, rtol=1e-4, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    T=st.integers(1, 40),
    B=st.integers(1, 4),
    F=st.integers(1, 5),
    N=st.integers(1, 6),
    md=st.integers(1, 9),
    recurrent=st.booleans(),
    reg=st.booleans(),
    record_mem=st.booleans(),
)
def test_parity_hypothesis(seed, T, B, F, N, md, recurrent, reg, record_mem):
    x, W, D, R, E = _net(seed, T, B, F, N, md, recurrent, rate=0.3, extremes=False)
    cfg = _cfg(md, reg_strength=0.5 if reg else 0.0, reg_target=1.0, record_mem=record_mem)
    ref, got = _both(x, W, D, R, E, cfg)
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)


def test_delays_at_bounds():
    # every feed-forward delay 0 or max_delay, every recurrent delay 1 or max_delay
    md = 6
    x, W, D, R, E = _net(5, 50, 2, 4, 5, md, True)
    D = torch.where(torch.rand(D.shape, generator=torch.Generator().manual_seed(0), dtype=D64) < 0.5,
                    torch.zeros_like(D), torch.full_like(D, md))
    E = torch.where(torch.rand(E.shape, generator=torch.Generator().manual_seed(1), dtype=D64) < 0.5,
                    torch.ones_like(E), torch.full_like(E, md))
    ref, got = _both(x, W, D, R, E, _cfg(md))
    assert ref[0].sum() > 5
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)


def test_no_spikes():
    md = 4
    x, W, D, R, E = _net(0, 30, 2, 3, 4, md, True, wscale=0.01)
    ref, got = _both(x, W, D, R, E, _cfg(md))
    assert got[0].sum() == 0
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)
    assert got[2][1].abs().sum() > 0  # the membrane loss still reaches the weights
    # no input spikes at all: all-zero gradients for the weights
    ref, got = _both(torch.zeros_like(x), W, D, R, E, _cfg(md))
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)
    assert got[2][1].abs().sum() == 0


def test_spike_in_last_step():
    # one input at step T - 2 with delay 1 arrives at T - 1 and is strong enough to fire at once
    T, md = 12, 3
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=1.0, max_delay=md, syn_scale=1.0)
    x = torch.zeros(T, 1, 1, dtype=D64)
    x[T - 2] = 1.0
    x[2] = 1.0
    W = torch.tensor([[4.0]], dtype=D64)
    D = torch.tensor([[1.2]], dtype=D64)
    outs = {}
    for be in ("reference", "compiled"):
        w = W.clone().requires_grad_()
        d = D.clone().requires_grad_()
        xr = x.clone().requires_grad_()
        spk, mem = eventprop_lif(xr, w, d, config=cfg, backend=be)
        (first_spike_times(spk) ** 2 + spk[-1].sum() * 0.3 + mem.sum()).sum().backward()
        outs[be] = (spk.detach(), w.grad, d.grad, xr.grad)
    assert outs["compiled"][0][T - 1, 0, 0] == 1
    for a, b in zip(outs["reference"], outs["compiled"]):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert outs["compiled"][3][T - 2, 0, 0] != 0


@pytest.mark.parametrize("recurrent", [False, True])
def test_regulariser_and_min_denominator(recurrent):
    md = 5
    x, W, D, R, E = _net(7, 60, 3, 5, 6, md, recurrent)
    cfg = _cfg(md, reg_strength=0.3, reg_target=2.0, min_denominator=0.05)
    ref, got = _both(x, W, D, R, E, cfg)
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)
    # the regulariser changes the gradient (so it is really applied)
    plain = _run("compiled", x, W, D, R, E, _cfg(md, min_denominator=0.05))
    assert (plain[2][1] - got[2][1]).abs().max() > 1e-6


def test_readout_mode_and_no_mem():
    md = 4
    x, W, D, _, _ = _net(2, 40, 3, 4, 3, md, False)
    ref, got = _both(x, W, D, None, None, _cfg(md, threshold=math.inf))
    assert got[0].sum() == 0
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)
    ref, got = _both(x, W, D, None, None, _cfg(md, record_mem=False), mem_loss=False)
    assert got[1].numel() == 0
    _assert_parity(ref, got, rtol=1e-9, atol=1e-9)


def test_spike_loss_only_and_mem_loss_only():
    md = 5
    x, W, D, R, E = _net(4, 50, 2, 4, 5, md, True)
    for kw in (dict(mem_loss=False), dict(spk_loss=False)):
        ref, got = _both(x, W, D, R, E, _cfg(md), **kw)
        _assert_parity(ref, got, rtol=1e-9, atol=1e-9)


def test_two_layers_chain():
    # the input-time gradient of the second layer drives the first layer's backward
    md = 4
    x, W, D, R, E = _net(8, 50, 2, 4, 6, md, True)
    g = torch.Generator().manual_seed(3)
    W2 = torch.rand(3, 6, generator=g, dtype=D64) * 2.0
    D2 = torch.rand(3, 6, generator=g, dtype=D64) * md
    res = {}
    for be in ("reference", "compiled"):
        ps = [t.clone().requires_grad_() for t in (W, D, R, E, W2, D2)]
        h, _ = eventprop_lif(x, ps[0], ps[1], ps[2], ps[3], config=_cfg(md), backend=be)
        _, v = eventprop_lif(h, ps[4], ps[5], config=_cfg(md, threshold=math.inf), backend=be)
        (v * torch.linspace(-1, 1, v.shape[0], dtype=D64)[:, None, None]).sum().backward()
        res[be] = [p.grad for p in ps]
    for a, b in zip(res["reference"], res["compiled"]):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


def test_thread_count_does_not_change_results():
    md = 5
    x, W, D, R, E = _net(9, 40, 6, 4, 5, md, True)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("compiled", x, W, D, R, E, _cfg(md))
        torch.set_num_threads(max(2, n))
        many = _run("compiled", x, W, D, R, E, _cfg(md))
    finally:
        torch.set_num_threads(n)
    _assert_parity(one, many, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# errors, saved memory, dispatch, opcheck
# ---------------------------------------------------------------------------------------------
def test_overflow_raises_runtime_error():
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=0.1, max_delay=2, syn_scale=1.0, max_spikes=3)
    x = torch.ones(10, 2, 1)
    with pytest.raises(RuntimeError, match="spike buffer overflow.*max_spikes=3"):
        eventprop_lif(x, torch.tensor([[5.0]]), torch.tensor([[0.0]]), config=cfg, backend="compiled")
    # exactly at the limit is fine
    cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=0.1, max_delay=2, syn_scale=1.0, max_spikes=10)
    x = torch.zeros(10, 1, 1)
    x[:, 0, 0] = 1.0
    spk, _ = eventprop_lif(x, torch.tensor([[5.0]]), torch.tensor([[0.0]]), config=cfg, backend="compiled")
    assert spk.sum() == 10


def test_backend_argument():
    cfg = _cfg(2)
    x = torch.zeros(3, 1, 1)
    with pytest.raises(ValueError, match="backend"):
        eventprop_lif(x, torch.ones(1, 1), torch.zeros(1, 1), config=cfg, backend="fast")
    with pytest.raises(ValueError, match="backend"):
        eventprop_lif(x.half(), torch.ones(1, 1).half(), torch.zeros(1, 1).half(), config=cfg, backend="compiled")


def _saved_bytes(backend, x, W, D, R, E, cfg):
    sizes = {}

    def pack(t):
        sizes[t.untyped_storage().data_ptr()] = (t.untyped_storage().nbytes(), t.dtype, tuple(t.shape))
        return t

    leaves = [t.clone().requires_grad_() for t in (W, D, R, E)]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spk, mem = eventprop_lif(x, *leaves, config=cfg, backend=backend)
    return sizes, spk


def test_saved_tensors_are_compact():
    md = 10
    T, B, F, N = 200, 4, 8, 16
    x, W, D, R, E = _net(0, T, B, F, N, md, True, rate=0.1, wscale=0.6)
    cfg = _cfg(md, record_mem=False)
    sizes, spk = _saved_bytes("compiled", x, W, D, R, E, cfg)
    n_sp, n_in = int(spk.sum()), int(x.sum())
    assert 0 < n_sp < T * B * N / 4
    for nbytes, dtype, shape in sizes.values():
        assert math.prod(shape) < T * B * N / 2, (dtype, shape)  # nothing dense over time
    # int32 indices, one float64 rise per spike, float64 weights and int16 rounded delays; the
    # storages of the real-valued delay parameters also show up (the finiteness check of the
    # inputs runs abs() on them; no extra memory)
    expect = n_in * 4 + n_sp * (4 + 8) + (N * F + N * N) * (8 + 2) + (N * F + N * N) * 8
    assert sum(v[0] for v in sizes.values()) == expect
    ref_sizes, _ = _saved_bytes("reference", x, W, D, R, E, cfg)
    assert sum(v[0] for v in ref_sizes.values()) == expect


def test_layer_uses_compiled_op():
    from snn_delays_ext.eventprop import DelayedRecurrentSynaptic

    layer = DelayedRecurrentSynaptic(4, 5, max_delay=3, backward="eventprop").double()
    x = (torch.rand(20, 2, 4) < 0.3).double()
    seen = []

    class _Mode(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    with _Mode():
        layer(x)
    assert any("eventprop_lif_forward" in s for s in seen)


def _op_args(recurrent, dtype=D64):
    md = 4
    x, W, D, R, E = _net(1, 20, 2, 3, 4, md, recurrent, dtype=dtype)
    W.requires_grad_()
    D.requires_grad_()
    if recurrent:
        R.requires_grad_()
        E.requires_grad_()
    return (x, W, D, R, E, md, 0.8, 0.9, 1.0, 0.9, 1e-6, 0.1, 1.0, -1, True)


@pytest.mark.parametrize("recurrent", [False, True])
def test_opcheck_forward(recurrent):
    args = _op_args(recurrent)
    torch.library.opcheck(torch.ops.snn_delays_ext.eventprop_lif_forward.default, args)


def test_opcheck_backward():
    x, W, D, R, E, md, a, b, th, c, mden, rs, rt, _, _ = _op_args(True)
    _, mem, x_idx, s_idx, s_rise = torch.ops.snn_delays_ext.eventprop_lif_forward(
        x, W.detach(), D.detach(), R.detach(), E.detach(), md, a, b, th, c, mden, rs, rt, -1, True)
    assert s_idx.numel() > 0
    d_ff = torch.floor(D.detach().clamp(0, md) + 0.5).to(torch.int16)
    d_rec = torch.floor(E.detach().clamp(1, md) + 0.5).to(torch.int16)
    T, B = x.shape[:2]
    args = (torch.randn_like(mem), torch.randn_like(mem), x_idx, s_idx, s_rise, W.detach(), d_ff, R.detach(),
            d_rec, T, B, md, a, b, th, c, mden, rs, rt)
    torch.library.opcheck(torch.ops.snn_delays_ext.eventprop_lif_backward.default, args)


LOSSES = {  # losses whose gradients reach the backward as broadcast or permuted tensors
    "mean": lambda spk, mem: mem.mean() + 0.0 * spk.sum(),
    "readout-sum-over-time": lambda spk, mem: (mem.sum(0) * torch.linspace(-1, 1, mem.shape[-1]).to(mem)).sum()
    + spk.sum(0).square().sum() * 0.01,
    "per-step": lambda spk, mem: (mem.sum((1, 2)) * torch.linspace(0, 1, mem.shape[0]).to(mem)).sum(),
    "permuted": lambda spk, mem: (mem.permute(2, 1, 0) * torch.arange(mem.numel()).view(
        mem.shape[::-1]).to(mem).sin()).sum() + (spk.transpose(0, 1) * 0.5).sum(),
}


def _grads_of_loss(loss_fn, backend, device, x, W, D, R, E, cfg):
    leaves = [t.to(device).requires_grad_() if t is not None else None for t in (x, W, D, R, E)]
    spk, mem = eventprop_lif(*leaves, config=cfg, backend=backend)
    loss_fn(spk, mem).backward()
    return [t.grad.cpu() if t is not None else None for t in leaves]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("recurrent", [False, True])
def test_broadcast_and_permuted_loss_gradients(recurrent, loss, device):
    # the op reads the loss gradients through their strides instead of densifying them
    if device not in ops.eventprop_devices():
        pytest.skip(f"no {device} EventProp kernels in this build")
    md = 6
    x, W, D, R, E = _net(5, 60, 3, 5, 7, md, recurrent)
    cfg = _cfg(md, reg_strength=0.1, reg_target=2.0)
    ref = _grads_of_loss(LOSSES[loss], "reference", "cpu", x, W, D, R, E, cfg)
    got = _grads_of_loss(LOSSES[loss], "compiled", device, x, W, D, R, E, cfg)
    assert ref[1].abs().sum() > 0
    for name, a, b in zip(("x", "weight", "delays", "rec_weight", "rec_delays"), ref, got):
        if a is None:
            assert b is None, name
            continue
        scale = max(1.0, float(a.abs().max()))
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9 * scale, msg=lambda m, n=name: f"{n}: {m}")


def test_opcheck_backward_with_broadcast_gradients():
    x, W, D, R, E, md, a, b, th, c, mden, rs, rt, _, _ = _op_args(True)
    _, mem, x_idx, s_idx, s_rise = torch.ops.snn_delays_ext.eventprop_lif_forward(
        x, W.detach(), D.detach(), R.detach(), E.detach(), md, a, b, th, c, mden, rs, rt, -1, True)
    d_ff = torch.floor(D.detach().clamp(0, md) + 0.5).to(torch.int16)
    d_rec = torch.floor(E.detach().clamp(1, md) + 0.5).to(torch.int16)
    T, B, N = mem.shape
    gs = torch.tensor(0.25, dtype=mem.dtype).expand(T, B, N)
    gm = torch.randn(1, B, N, dtype=mem.dtype).expand(T, B, N)
    args = (gs, gm, x_idx, s_idx, s_rise, W.detach(), d_ff, R.detach(), d_rec, T, B, md, a, b, th, c, mden, rs, rt)
    torch.library.opcheck(torch.ops.snn_delays_ext.eventprop_lif_backward.default, args)
    dense = torch.ops.snn_delays_ext.eventprop_lif_backward(gs.contiguous(), gm.contiguous(), *args[2:])
    for got, want in zip(torch.ops.snn_delays_ext.eventprop_lif_backward(*args), dense):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("recurrent", [False, True])
def test_cuda_parity_with_reference(recurrent, dtype):
    if "cuda" not in ops.eventprop_devices():
        pytest.skip("no CUDA EventProp kernels in this build")
    md = 6
    x, W, D, R, E = _net(11, 80, 5, 6, 40, md, recurrent, dtype=dtype, wscale=1.0)
    cfg = _cfg(md, reg_strength=0.2, reg_target=2.0)
    ref = _run("reference", x, W, D, R, E, cfg)
    dev = [t.cuda() if t is not None else None for t in (x, W, D, R, E)]
    s, m, g = _run("compiled", *dev, cfg)
    got = (s.cpu(), m.cpu(), [t.cpu() if t is not None else None for t in g])
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    assert ref[0].sum() > 20
    _assert_parity(ref, got, rtol=tol, atol=tol)


@pytest.mark.cuda
@pytest.mark.parametrize("recurrent", [False, True])
def test_cuda_state_too_large_for_shared_memory(recurrent):
    # 256 neurons and a ring of 512 slots (max_delay 300): about 0.5 MB of state per block in the
    # forward, 1 MB in the backward, more than any GPU's shared memory: the kernels keep it in
    # global memory (smaller layers, as in the other CUDA tests, keep it in shared memory)
    if "cuda" not in ops.eventprop_devices():
        pytest.skip("no CUDA EventProp kernels in this build")
    md = 300
    x, W, D, R, E = _net(13, 40, 2, 5, 256, md, recurrent)
    cfg = _cfg(md)
    ref = _run("reference", x, W, D, R, E, cfg)
    dev = [t.cuda() if t is not None else None for t in (x, W, D, R, E)]
    s, m, g = _run("compiled", *dev, cfg)
    assert ref[0].sum() > 20
    _assert_parity(ref, (s.cpu(), m.cpu(), [t.cpu() if t is not None else None for t in g]), rtol=1e-9, atol=1e-9)


@pytest.mark.cuda
def test_cuda_opcheck():
    if "cuda" not in ops.eventprop_devices():
        pytest.skip("no CUDA EventProp kernels in this build")
    args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in _op_args(True))
    torch.library.opcheck(torch.ops.snn_delays_ext.eventprop_lif_forward.default, args)


_OVERFLOW = """
import torch
from snn_delays_ext.eventprop import EventPropConfig, eventprop_lif
cfg = EventPropConfig(alpha=0.5, beta=0.5, threshold=0.1, max_delay=2, syn_scale=1.0, max_spikes=3)
args = (torch.ones(10, 2, 1, device="cuda"), torch.tensor([[5.0]], device="cuda"), torch.tensor([[0.0]], device="cuda"))
for backend in ("compiled", "compiled"):  # twice: the process goes on after the error
    try:
        eventprop_lif(*args, config=cfg, backend=backend)
    except RuntimeError as e:
        assert "spike buffer overflow" in str(e) and "max_spikes=3" in str(e), e
    else:
        raise SystemExit("no error")
spk, _ = eventprop_lif(*args, config=EventPropConfig(alpha=0.5, beta=0.5, threshold=0.1, max_delay=2, syn_scale=1.0,
                                                     max_spikes=20), backend="compiled")
assert int(spk.sum()) == 20, spk.sum()
torch.cuda.synchronize()
print("overflow raised")
"""


@pytest.mark.cuda
def test_cuda_overflow_raises_and_the_process_survives():
    """A spike-buffer overflow on CUDA is a RuntimeError, as on the CPU (it once killed the
    process): run in a subprocess so that a crash fails this test, not the whole session."""
    if "cuda" not in ops.eventprop_devices():
        pytest.skip("no CUDA EventProp kernels in this build")
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _OVERFLOW], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "overflow raised" in res.stdout, (res.returncode, res.stdout, res.stderr[-3000:])


def test_memory_benchmark_compares_compiled_and_reference():
    from benchmarks.eventprop_memory import measure

    kw = dict(T=30, B=2, n_in=4, n_hid=6, max_delay=3, rate=0.3, device="cpu")
    comp = measure("eventprop", **kw)
    ref = measure("eventprop-reference", **kw)
    assert comp["backend"] == "compiled" and ref["backend"] == "reference"
    assert comp["saved_MB"] == ref["saved_MB"] > 0
    assert comp["rate"] == ref["rate"]
