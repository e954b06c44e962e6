"""The benchmark baselines compute the same numbers as the reference (and snnTorch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import snntorch as snn
import snntorch.surrogate as sg
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.delrec_style import (  # noqa: E402
    delrec_style_recurrent_leaky,
    plain_recurrent_leaky,
    triangle_mask,
)
from benchmarks.saved_bytes import SavedTensorCounter, saved_tensor_bytes  # noqa: E402
from snn_delays_ext.functional.recurrent_leaky import (  # noqa: E402
    RecurrentLeakyParameters,
    RecurrentLeakyState,
    recurrent_history_length,
    recurrent_leaky_sequence,
)


def _problem(delay_type, N=6, B=3, T=30, max_delay=7, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, N, generator=g, dtype=dtype) * 1.4).requires_grad_()
    w = (torch.randn(N, N, generator=g, dtype=dtype) * 0.5).requires_grad_()
    b = (torch.randn(N, generator=g, dtype=dtype) * 0.1).requires_grad_()
    shape = (N,) if delay_type == "axonal" else (N, N)
    d = (1 + torch.rand(shape, generator=g, dtype=dtype) * (max_delay - 1)).requires_grad_()
    return x, w, b, d


@pytest.mark.parametrize("delay_type", ["axonal", "synaptic"])
@pytest.mark.parametrize("sigma", [0.0, 2.5])
def test_delrec_style_matches_reference(delay_type, sigma):
    max_delay = 7
    x, w, b, d = _problem(delay_type, max_delay=max_delay)
    beta, thr, fn = torch.tensor(0.6, dtype=x.dtype), torch.tensor(1.0, dtype=x.dtype), sg.atan()

    spk1, mem1 = delrec_style_recurrent_leaky(x, w, b, d, beta, thr, fn, max_delay, delay_type, sigma)
    loss1 = (spk1 * torch.linspace(0, 1, spk1.numel(), dtype=x.dtype).view_as(spk1)).sum() + mem1.square().sum()
    g1 = torch.autograd.grad(loss1, (x, w, b, d))

    T, B, N = x.shape
    K = recurrent_history_length(max_delay, sigma)
    state = RecurrentLeakyState(x.new_zeros(B, N), x.new_zeros(K, B, N))
    params = RecurrentLeakyParameters(beta, thr, fn, "subtract", True)
    spk2, mem2, _ = recurrent_leaky_sequence(x, state, w, b, d, params, max_delay, delay_type, sigma)
    loss2 = (spk2 * torch.linspace(0, 1, spk2.numel(), dtype=x.dtype).view_as(spk2)).sum() + mem2.square().sum()
    g2 = torch.autograd.grad(loss2, (x, w, b, d))

    assert 0 < spk1.sum() < spk1.numel()  # some spikes, not all: the recurrence matters
    torch.testing.assert_close(spk1, spk2, rtol=0, atol=0)
    torch.testing.assert_close(mem1, mem2, rtol=1e-12, atol=1e-12)
    for a, c in zip(g1, g2):
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-10)


def test_triangle_mask_hand_values():
    # s = 1: lag 2.25 -> 0.75 at k = 2, 0.25 at k = 3; s = 2: (2 - |k - 3|) / 4 around 3
    m = triangle_mask(torch.tensor([2.25, 3.0]), max_delay=4)
    torch.testing.assert_close(m, torch.tensor([[0.0, 0.75, 0.25, 0.0], [0.0, 0.0, 1.0, 0.0]]))
    m2 = triangle_mask(torch.tensor([3.0]), max_delay=4, sigma=1.0)  # K = 5
    torch.testing.assert_close(m2, torch.tensor([[0.0, 0.25, 0.5, 0.25, 0.0]]))


def test_plain_loop_matches_snntorch_rleaky():
    T, B, N = 25, 2, 5
    x = torch.rand(T, B, N) * 1.5
    lif = snn.RLeaky(beta=0.7, linear_features=N, spike_grad=sg.atan())
    with torch.no_grad():
        lif.recurrent.weight.copy_(torch.randn(N, N) * 0.5)
    spk, mem = lif.init_rleaky()
    ref_s, ref_m = [], []
    for t in range(T):
        spk, mem = lif(x[t], spk, mem)
        ref_s.append(spk)
        ref_m.append(mem)
    s, m = plain_recurrent_leaky(x, lif.recurrent.weight, lif.recurrent.bias, torch.tensor(0.7),
                                 torch.tensor(1.0), sg.atan())
    assert s.sum() > 0
    torch.testing.assert_close(s, torch.stack(ref_s))
    torch.testing.assert_close(m, torch.stack(ref_m))
    # delays of exactly one step with sigma 0 are no delays at all
    s2, m2 = delrec_style_recurrent_leaky(x, lif.recurrent.weight, lif.recurrent.bias,
                                          torch.ones(N), torch.tensor(0.7), torch.tensor(1.0),
                                          sg.atan(), max_delay=4)
    torch.testing.assert_close(s2, s)
    torch.testing.assert_close(m2, m)


def test_delrec_style_bad_input():
    with pytest.raises(ValueError, match="x"):
        delrec_style_recurrent_leaky(torch.rand(2, 3), torch.eye(3), None, torch.ones(3),
                                     torch.tensor(0.5), torch.tensor(1.0), sg.atan(), 4)
    with pytest.raises(ValueError, match="delays"):
        delrec_style_recurrent_leaky(torch.rand(2, 1, 3), torch.eye(3), None, torch.ones(4),
                                     torch.tensor(0.5), torch.tensor(1.0), sg.atan(), 4)
    with pytest.raises(ValueError, match="delay_type"):
        delrec_style_recurrent_leaky(torch.rand(2, 1, 3), torch.eye(3), None, torch.ones(3),
                                     torch.tensor(0.5), torch.tensor(1.0), sg.atan(), 4, "dendritic")


def test_saved_bytes_counts_distinct_storages():
    x = torch.randn(100, 10)
    w = torch.randn(10, requires_grad=True)
    # x * w with only w requiring a gradient saves x (for w's gradient), nothing else
    s = saved_tensor_bytes(lambda: (x * w).sum())
    assert s.total_bytes == 100 * 10 * 4 and s.n_storages == 1
    a = torch.randn(100, 10, requires_grad=True)
    s1 = saved_tensor_bytes(lambda: (a * w).sum())  # both operands saved
    assert s1.total_bytes == 100 * 10 * 4 + 10 * 4
    # w * w saves w twice: counted once
    s2 = saved_tensor_bytes(lambda: (w * w).sum())
    assert s2.n_tensors == 2 and s2.n_storages == 1 and s2.total_bytes == 40
    s3 = saved_tensor_bytes(lambda: (a * w).sum(), exclude=[w])
    assert s3.total_bytes == 100 * 10 * 4
    assert s3.by_dtype == {"float32": 4000}
    s3.result.backward()  # the graph is intact after counting
    torch.testing.assert_close(w.grad, a.detach().sum(0))
    with torch.no_grad(), SavedTensorCounter() as c:
        (x * w).sum()
    assert c.stats.total_bytes == 0
    with pytest.raises(TypeError, match="fn"):
        saved_tensor_bytes(3)
    with pytest.raises(TypeError, match="exclude"):
        SavedTensorCounter(exclude=[1.0])
