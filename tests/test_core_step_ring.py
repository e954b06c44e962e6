"""Step mode on a ring buffer (``DelayLine``): the numbers and gradients of the history buffer,
at a per-step cost that does not grow with ``max_delay``.

The reference is the same layer on the history-buffer step (``delay_line.FORCE = False``),
itself tested against the sequence mode and snnTorch elsewhere.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
import snntorch as snn
import torch

import snn_delays_ext.functional.delay_line as delay_line
from snn_delays_ext import DelayedLinear, DelayedRecurrentLeaky

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.saved_bytes import SavedTensorCounter  # noqa: E402

DT = torch.float64


@pytest.fixture
def force():
    def set_(value):
        delay_line.FORCE = value
    yield set_
    delay_line.FORCE = None


def _linear_run(layer, x, force, ring, detach_at=None):
    force(ring)
    layer.reset_state()
    layer.zero_grad()
    outs = []
    for t in range(x.shape[0]):
        if t == detach_at:
            layer.detach_state()
        outs.append(layer(x[t]))
    assert (layer._line is not None) == ring
    y = torch.stack(outs)
    w = torch.linspace(-1, 1, y.numel(), dtype=DT).view(y.shape)
    params = [x, layer.weight, layer.delays, layer.bias]
    return y, torch.autograd.grad((y * w).sum(), params)


@pytest.mark.parametrize("kind, sigma, interp", list(itertools.product(
    ("axonal", "synaptic", "dendritic"), (0.0, 1.5), ("triangle", "round"))))
def test_linear_ring_matches_the_history_buffer(kind, sigma, interp, force):
    torch.manual_seed(0)
    layer = DelayedLinear(5, 4, max_delay=9, delay_type=kind, sigma=sigma, interpolation=interp, dtype=DT)
    x = torch.rand(25, 3, 5, dtype=DT, requires_grad=True)
    y0, g0 = _linear_run(layer, x, force, False)
    y1, g1 = _linear_run(layer, x, force, True)
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-13)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # and both equal the sequence mode
    torch.testing.assert_close(y1, layer(x), rtol=0, atol=1e-13)


def test_linear_ring_truncated_bptt_matches(force):
    torch.manual_seed(1)
    layer = DelayedLinear(4, 3, max_delay=6, delay_type="dendritic", sigma=0.5, dtype=DT)
    x = torch.rand(20, 2, 4, dtype=DT, requires_grad=True)
    y0, g0 = _linear_run(layer, x, force, False, detach_at=9)
    y1, g1 = _linear_run(layer, x, force, True, detach_at=9)
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-13)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def _recurrent_run(layer, x, force, ring, detach_at=None, init_hidden=False):
    force(ring)
    layer.reset_mem()
    layer.zero_grad()
    outs = []
    spk, mem = layer.init_rleaky()
    for t in range(x.shape[0]):
        if init_hidden:
            if t == detach_at:
                layer.detach_hidden()
            layer(x[t])
            spk, mem = layer.spk, layer.mem
        else:
            if t == detach_at:  # snnTorch-style truncated BPTT: the loop detaches its state
                spk, mem = spk.detach(), mem.detach()
            spk, mem = layer(x[t], spk, mem)
        outs.append(mem + spk)
    assert (layer._line is not None) == ring
    y = torch.stack(outs)
    w = torch.linspace(-1, 1, y.numel(), dtype=DT).view(y.shape)
    params = [x, layer.recurrent.weight, layer.delays]
    return y, torch.autograd.grad((y * w).sum(), params)


@pytest.mark.parametrize("kind, sigma, reset, detach_at, init_hidden", [
    ("axonal", 0.0, "subtract", None, False),
    ("axonal", 1.5, "zero", 11, False),
    ("synaptic", 0.0, "subtract", 11, False),
    ("synaptic", 1.0, "none", None, False),
    ("axonal", 0.5, "subtract", 11, True),
])
def test_recurrent_ring_matches_the_history_buffer(kind, sigma, reset, detach_at, init_hidden, force):
    torch.manual_seed(2)
    layer = DelayedRecurrentLeaky(0.8, 5, max_delay=7, delay_type=kind, sigma=sigma, reset_mechanism=reset,
                                  init_hidden=init_hidden).to(DT)
    with torch.no_grad():
        layer.recurrent.weight.mul_(3.0)
    x = (torch.rand(30, 3, 5, dtype=DT) * 1.4).requires_grad_()
    y0, g0 = _recurrent_run(layer, x, force, False, detach_at, init_hidden)
    y1, g1 = _recurrent_run(layer, x, force, True, detach_at, init_hidden)
    assert y0.detach().abs().sum() > 0
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-12)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_recurrent_ring_hands_over_to_the_buffer_for_foreign_spikes(force):
    # spikes that are not the layer's own (here: scaled) continue on the history buffer with
    # the same numbers as a layer that never used the ring
    torch.manual_seed(3)
    layer = DelayedRecurrentLeaky(0.8, 4, max_delay=6).to(DT)
    x = torch.rand(16, 2, 4, dtype=DT) * 1.5

    def run(ring):
        force(ring)
        layer.reset_mem()
        spk, mem = layer.init_rleaky()
        out = []
        for t in range(16):
            if t == 8:
                spk = spk * 0.5
            spk, mem = layer(x[t], spk, mem)
            out.append(mem)
        return torch.stack(out), layer._line

    y0, _ = run(False)
    y1, line = run(True)
    assert line is None  # handed over at step 8
    torch.testing.assert_close(y1, y0, rtol=0, atol=1e-13)


def test_ring_double_backward_says_what_to_do(force):
    force(True)
    layer = DelayedLinear(3, 2, max_delay=5, delay_type="axonal", dtype=DT)
    x = torch.rand(6, 2, 3, dtype=DT)
    y = torch.stack([layer(x[t]) for t in range(6)])
    (g,) = torch.autograd.grad(y.pow(2).sum(), layer.delays, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward .* step mode"):
        g.sum().backward()


def test_ring_backward_twice_with_retain_graph(force):
    force(True)
    layer = DelayedRecurrentLeaky(0.8, 3, max_delay=5).to(DT)
    x = torch.rand(12, 2, 3, dtype=DT, requires_grad=True) * 2
    spk, mem = layer.init_rleaky()
    total = 0
    for t in range(12):
        spk, mem = layer(x[t], spk, mem)
        total = total + mem.sum()
    g1 = torch.autograd.grad(total, layer.delays, retain_graph=True)[0]
    g2 = torch.autograd.grad(total, layer.delays)[0]
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


def test_ring_refuses_another_batch_size(force):
    force(True)
    layer = DelayedLinear(3, 2, max_delay=5, delay_type="axonal")
    layer(torch.rand(4, 3))
    with pytest.raises(ValueError, match="input_: batch size 2 differs"):
        layer(torch.rand(2, 3))
    layer.reset_state()
    assert layer(torch.rand(2, 3)).shape == (2, 2)


@pytest.mark.parametrize("make", [
    lambda D: DelayedLinear(16, 16, max_delay=D, delay_type="axonal"),
    lambda D: DelayedLinear(16, 16, max_delay=D, delay_type="synaptic"),
    lambda D: DelayedRecurrentLeaky(0.9, 16, max_delay=D),
], ids=["linear-axonal", "linear-synaptic", "recurrent-axonal"])
def test_step_memory_does_not_grow_with_max_delay(make, force):
    # what autograd keeps per step: the ring saves the gathered band, the same at max_delay 40
    # and 4000
    def saved(D, ring):
        force(ring)
        layer = make(D)
        x = torch.rand(30, 4, 16, requires_grad=True)
        with SavedTensorCounter(exclude=list(layer.parameters()) + [x]) as c:
            for t in range(30):
                layer(x[t])
        assert (layer._line is not None) == ring
        return c.stats.total_bytes

    small, large = saved(40, True), saved(4000, True)
    assert large <= 1.1 * small, (small, large)


def test_a_dtype_change_mid_sequence_continues_on_the_history_buffer(force):
    # the ring keeps its dtype; converting the layer mid-sequence hands the history over
    force(True)
    layer = DelayedLinear(3, 2, max_delay=5, delay_type="axonal")
    x = torch.rand(8, 2, 3)
    ys = [layer(x[t]) for t in range(4)]
    layer.to(DT)
    ys += [layer(x[t].to(DT)) for t in range(4, 8)]
    assert layer._line is None and layer._past.dtype == DT
    force(False)
    layer.reset_state()
    ref = [layer(x[t].to(DT)) for t in range(8)]
    torch.testing.assert_close(torch.stack([y.to(DT) for y in ys]), torch.stack(ref), rtol=1e-6, atol=1e-6)
