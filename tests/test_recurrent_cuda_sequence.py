"""The recurrent op's CUDA paths: the whole-sequence kernels (one block per batch element, the
time loop inside; ``N <= 1024``) and the per-step host loop (``SNN_DELAYS_CUDA_RECURRENT=steps``,
and ``N > 1024``) against the CPU kernel, forward and every gradient, in float64. Needs a GPU."""

from __future__ import annotations

import pytest
import torch

from snn_delays_ext import ops
from snn_delays_ext.functional.interpolation import banded_taps

pytestmark = pytest.mark.cuda
DT = torch.float64


def _args(T, B, N, synaptic, reset, reset_delay, dropout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(T, B, N, generator=g, dtype=DT) * 1.2
    w = torch.randn(N, N, generator=g, dtype=DT) * (1.5 / N ** 0.5)
    b = torch.randn(N, generator=g, dtype=DT) * 0.1
    d = torch.rand((N, N) if synaptic else (N,), generator=g, dtype=DT) * 12 + 1
    start, vals = banded_taps(d, 12, 0.5, 1, "triangle")
    beta = torch.rand(N, generator=g, dtype=DT) * 0.3 + 0.6
    thr = torch.rand(N, generator=g, dtype=DT) * 0.5 + 0.75
    scale = (torch.rand(B, N, generator=g) > 0.3).to(DT) / 0.7 if dropout else None
    return (x, w, b, start, vals.detach(), beta, thr, reset, 0, 2.0, synaptic, reset_delay, False, scale)


def _run(args, device):
    K = torch.ops.snn_delays_ext
    a = [t.to(device) if isinstance(t, torch.Tensor) else t for t in args]
    spk, mem, bits, pre = K.recurrent_lif(*a)
    g = torch.Generator().manual_seed(9)
    gs = torch.randn(spk.shape, generator=g, dtype=DT).to(device)
    gm = torch.randn(spk.shape, generator=g, dtype=DT).to(device) * 0.1
    x, w, b, start, vals, beta, thr, reset, sk, sp, syn, rd, dr, scale = a
    grads = K.recurrent_lif_backward(gs, gm, w, start, vals, beta, thr, mem, bits, pre, reset, sk, sp, syn, rd, dr,
                                     scale)
    return [t.cpu() for t in (spk, mem, *grads)]


def _needs_cuda():
    if "cuda" not in ops.available_devices():
        pytest.skip("no CUDA kernels in this build (or no GPU)")


@pytest.mark.parametrize("synaptic", [False, True], ids=["axonal", "synaptic"])
@pytest.mark.parametrize("reset,reset_delay,dropout", [(0, True, False), (1, False, True), (3, False, True)],
                         ids=["late-subtract", "same-step-zero-dropout", "once-subtract-dropout"])
@pytest.mark.parametrize("path", ["sequence", "steps"])
def test_cuda_paths_match_cpu(synaptic, reset, reset_delay, dropout, path, monkeypatch):
    _needs_cuda()
    if path == "steps":
        monkeypatch.setenv("SNN_DELAYS_CUDA_RECURRENT", "steps")
    args = _args(60, 5, 70, synaptic, reset, reset_delay, dropout)  # N not a multiple of 32
    want = _run(args, "cpu")
    got = _run(args, "cuda")
    assert got[0].sum() > 0  # the case spikes
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


def test_cuda_above_the_block_limit_runs_the_step_loop():
    _needs_cuda()
    args = _args(8, 2, 1100, False, 0, True, False)
    for a, e in zip(_run(args, "cuda"), _run(args, "cpu")):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)
