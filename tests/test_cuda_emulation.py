"""The CUDA kernels, run on the CPU by emulation, against the CPU ops.

Machines without a GPU cannot run the CUDA kernels, so ``tests/_cuda_emu`` compiles the CUDA
sources (host and device code) for the CPU: each thread block runs with one OS thread per CUDA
thread and a barrier for ``__syncthreads()`` (``tests/_cuda_emu/emu_cuda.h``). The ops it builds
(``torch.ops.sdx_emu.*``, CPU tensors) must give what the CPU ops give: float64 to 1e-9, for the
event-driven and dense synaptic kernels, the whole-sequence and per-step recurrent kernels, the
EventProp kernels and the neuron-sequence kernels. This checks indices, synchronisation points
and arithmetic, not the GPU's timing or memory model; the CUDA tests (``-m cuda``) do that on a
GPU. About a minute, most of it the build.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from snn_delays_ext import ops

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cuda_emu.build import build  # noqa: E402

DT = torch.float64
TOL = dict(rtol=1e-9, atol=1e-9)

pytestmark = pytest.mark.skipif(not ops.AVAILABLE or shutil.which(os.environ.get("CXX", "c++")) is None,
                                reason="needs the compiled CPU ops and a C++20 compiler")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    torch.ops.load_library(str(build(tmp_path_factory.mktemp("cuda_emu"))))
    return torch.ops.sdx_emu


def _close(got, want, tol=TOL):
    assert len(got) == len(want)
    for a, e in zip(got, want):
        assert a.shape == e.shape
        torch.testing.assert_close(a, e, **tol)


# -- feed-forward synaptic delays ------------------------------------------------------------------
@pytest.mark.parametrize("density", [0.0, 0.03, 0.1, 0.5], ids=["silent", "events-3%", "events-10%", "dense"])
@pytest.mark.parametrize("deterministic", [False, True], ids=["auto", "deterministic"])
@pytest.mark.parametrize("T,B,I,O,W", [(30, 3, 5, 40, 3), (17, 2, 4, 300, 2), (9, 1, 3, 5, 9)])
def test_synaptic_delay(emu, density, deterministic, T, B, I, O, W):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(T, B, I, generator=g, dtype=DT) * (torch.rand(T, B, I, generator=g) < density)
    w = torch.randn(O, I, generator=g, dtype=DT)
    start = torch.randint(-2, 6, (O, I), generator=g)
    vals = torch.rand(O, I, W, generator=g, dtype=DT)
    gy = torch.randn(T, B, O, generator=g, dtype=DT)
    K = torch.ops.snn_delays_ext
    want = [K.synaptic_delay(x, w, start, vals), *K.synaptic_delay_backward(gy, x, w, start, vals, True)]
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(deterministic)  # the emulated op then runs the dense kernels
    try:
        got = [emu.synaptic_delay(x, w, start, vals), *emu.synaptic_delay_backward(gy, x, w, start, vals, True)]
        no_x = emu.synaptic_delay_backward(gy, x, w, start, vals, False)
    finally:
        torch.use_deterministic_algorithms(prev)
    _close(got, want)
    assert no_x[0].numel() == 0
    _close(no_x[1:], want[2:])


# -- recurrent LIF -----------------------------------------------------------------------------------
def _recurrent(ops_, args):
    spk, mem, bits, pre = ops_.recurrent_lif(*args)
    g = torch.Generator().manual_seed(9)
    gs = torch.randn(spk.shape, generator=g, dtype=DT)
    gm = torch.randn(spk.shape, generator=g, dtype=DT) * 0.1
    x, w, b, start, vals, beta, thr, reset, sk, sp, syn, rd, dr, scale = args
    return [spk, mem, *ops_.recurrent_lif_backward(gs, gm, w, start, vals, beta, thr, mem, bits, pre, reset, sk, sp,
                                                   syn, rd, dr, scale)]


@pytest.mark.parametrize("path", ["sequence", "steps"])
@pytest.mark.parametrize("synaptic", [False, True], ids=["axonal", "synaptic"])
@pytest.mark.parametrize("reset,reset_delay,dropout", [(0, True, False), (1, False, True), (3, False, True),
                                                       (2, True, False)])
def test_recurrent_lif(emu, path, synaptic, reset, reset_delay, dropout, monkeypatch):
    from test_recurrent_cuda_sequence import _args

    if path == "steps":
        monkeypatch.setenv("SNN_DELAYS_CUDA_RECURRENT", "steps")
    else:
        monkeypatch.delenv("SNN_DELAYS_CUDA_RECURRENT", raising=False)
    args = _args(25, 3, 37, synaptic, reset, reset_delay, dropout)
    want = _recurrent(torch.ops.snn_delays_ext, args)
    assert 0 < float(want[0].mean()) < 1
    _close(_recurrent(emu, args), want)


# -- EventProp ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["shared", "global"])
@pytest.mark.parametrize("shape", ["small", "wide"])
@pytest.mark.parametrize("recurrent", [False, True])
def test_eventprop(emu, recurrent, shape, state, monkeypatch):
    # the blocks' state in shared memory (a device that lets a block opt in to 1 MiB) or in global
    # scratch memory (a device with 4 KiB, below the kernels' reserve)
    monkeypatch.setenv("SDX_EMU_SHARED_OPTIN", str(2**20 if state == "shared" else 4096))
    from test_eventprop_compiled import _net

    md = 6
    # wide: more neurons than threads (several per thread, every warp busy) and more than 32
    # spikes and input events in a step (several reduction batches)
    net = (11, 80, 5, 6, 40) if shape == "small" else (12, 8, 2, 70, 300)
    x, W, D, R, E = (t.detach() if isinstance(t, torch.Tensor) else t
                     for t in _net(*net, md, recurrent, dtype=DT, wscale=1.0,
                                   rate=0.15 if shape == "small" else 0.7))
    args = (x, W, D, R if recurrent else None, E if recurrent else None, md, 0.8, 0.9, 1.0, 0.9, 1e-6, 0.2, 2.0,
            -1, True)
    K = torch.ops.snn_delays_ext
    want = K.eventprop_lif_forward(*args)
    got = emu.eventprop_lif_forward(*args)
    _close(got, want, dict(rtol=1e-12, atol=1e-12))
    spk, mem, x_idx, s_idx, s_rise = want
    assert spk.sum() > 0 and set(spk.unique().tolist()) == {0.0, 1.0}
    if shape == "wide":
        assert spk.sum(2).max() > 32 and x.sum(2).max() > 32  # in one (t, b) cell
    d_ff = torch.floor(D.clamp(0, md) + 0.5).to(torch.int16)
    d_rec = torch.floor(E.clamp(1, md) + 0.5).to(torch.int16) if recurrent else None
    g = torch.Generator().manual_seed(3)
    gs, gm = torch.randn(mem.shape, generator=g, dtype=DT), torch.randn(mem.shape, generator=g, dtype=DT)
    rest = (x_idx, s_idx, s_rise, W, d_ff, R if recurrent else None, d_rec, x.shape[0], x.shape[1], md,
            0.8, 0.9, 1.0, 0.9, 1e-6, 0.2, 2.0)
    T, B, N = mem.shape
    strided = [  # loss gradients read through their strides: broadcasts (a sum or mean) and a permutation
        (torch.tensor(0.3, dtype=DT).expand(T, B, N), torch.randn(1, B, N, generator=g, dtype=DT).expand(T, B, N)),
        (torch.randn(N, B, T, generator=g, dtype=DT).permute(2, 1, 0), torch.randn(T, 1, 1, dtype=DT).expand(T, B, N)),
    ]
    for gs_, gm_ in [(gs, gm)] + strided:
        want = K.eventprop_lif_backward(gs_.contiguous(), gm_.contiguous(), *rest)
        _close(emu.eventprop_lif_backward(gs_, gm_, *rest), want)


# -- neurons over a sequence ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["leaky", "synaptic"])
@pytest.mark.parametrize("reset,reset_delay", [(0, True), (1, True), (2, True), (0, False), (1, False), (3, False),
                                               (4, False)])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_neuron_sequences(emu, name, reset, reset_delay, detach_reset):
    g = torch.Generator().manual_seed(0)
    T, B, N = 30, 3, 45
    x = torch.rand(T, B, N, generator=g, dtype=DT) * 0.8
    alpha = torch.rand(N, generator=g, dtype=DT) * 0.3 + 0.5
    beta = torch.rand(N, generator=g, dtype=DT) * 0.3 + 0.6
    thr = torch.rand(N, generator=g, dtype=DT) * 0.5 + 0.75
    K = torch.ops.snn_delays_ext
    for sur in (0, 1, 6):
        if name == "leaky":
            def fwd(o):
                return o.leaky_sequence(x, beta, thr, reset, sur, 2.0, reset_delay, detach_reset)
        else:
            def fwd(o):
                return o.synaptic_sequence(x, alpha, beta, thr, reset, sur, 2.0, reset_delay, detach_reset)
        want = fwd(K)
        _close(fwd(emu), want, dict(rtol=1e-12, atol=1e-12))
        grads = [torch.randn(want[0].shape, generator=g, dtype=DT) for _ in range(3)]
        if name == "leaky":
            spk, mem, pre = want

            def bwd(o):
                return o.leaky_sequence_backward(grads[0], grads[1], beta, thr, mem, pre, reset, sur, 2.0,
                                                 reset_delay, detach_reset)
        else:
            spk, syn, mem, pre = want

            def bwd(o):
                return o.synaptic_sequence_backward(grads[0], grads[1], grads[2], alpha, beta, thr, syn, mem, pre,
                                                    reset, sur, 2.0, reset_delay, detach_reset)
        _close(bwd(emu), bwd(K))
