"""Norse flavour: exact parity with Norse's own layers (gradients of the reset, given weights)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("norse")
from norse.torch import LIF, LIFCell, LIFParameters, LIFRecurrent, LIFRecurrentCell  # noqa: E402
from norse.torch.functional.lif import LIFFeedForwardState, lif_feed_forward_step  # noqa: E402

from snn_delays_ext.norse import (  # noqa: E402
    DelayedLIF,
    DelayedLIFCell,
    DelayedLIFFeedForwardState,
    DelayedLIFRecurrent,
    DelayedLIFRecurrentCell,
    delayed_lif_feed_forward_step,
)

P = LIFParameters(v_th=torch.as_tensor(0.3), method="super", alpha=torch.as_tensor(100.0))


def _drive(T, B, I, seed, rate=0.5, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, I, generator=g) < rate).float() * scale


def _loss(z, v, N):
    """Weights the spikes per neuron and adds ``v**2``: the reset path carries gradient."""
    return (z * torch.arange(1.0, N + 1, dtype=z.dtype)).sum() + v.pow(2).sum()


def _linear_like(ours, bias):
    lin = torch.nn.Linear(ours.input_size, ours.hidden_size, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(ours.weight)
        if bias:
            lin.bias.copy_(ours.bias)
    return lin


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("delay_type", ["synaptic", "axonal", "dendritic"])
def test_feed_forward_cell_zero_delays_matches_norse_values_and_gradients(delay_type, bias):
    """Zero delays: DelayedLIFCell == nn.Linear + norse LIFCell, forward and every gradient
    (Norse's ``lif_feed_forward_step`` does not detach the spike in the reset)."""
    torch.manual_seed(21)
    I, N, B, T = 4, 6, 3, 40
    ours = DelayedLIFCell(I, N, max_delay=3, p=P, delay_type=delay_type, bias=bias, delay_init=0.0)
    if bias:
        with torch.no_grad():
            ours.bias.copy_(torch.randn(N) * 0.5)
    lin, ref = _linear_like(ours, bias), LIFCell(p=P)
    x = _drive(T, B, I, seed=22)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ours = s_ref = None
    loss_ours = loss_ref = 0.0
    n_spikes = 0.0
    for t in range(T):
        z_ours, s_ours = ours(x_ours[t], s_ours)
        z_ref, s_ref = ref(lin(x_ref[t]), s_ref)
        assert torch.equal(z_ours, z_ref), f"spikes differ at step {t}"
        torch.testing.assert_close(s_ours.v, s_ref.v)
        torch.testing.assert_close(s_ours.i, s_ref.i)
        loss_ours = loss_ours + _loss(z_ours, s_ours.v, N)
        loss_ref = loss_ref + _loss(z_ref, s_ref.v, N)
        n_spikes += float(z_ref.detach().sum())
    assert n_spikes > 0.1 * T * B * N, "neurons must spike (and reset) often"
    loss_ours.backward()
    loss_ref.backward()
    assert float(lin.weight.grad.abs().sum()) > 0
    torch.testing.assert_close(ours.weight.grad, lin.weight.grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    if bias:
        torch.testing.assert_close(ours.bias.grad, lin.bias.grad)


@pytest.mark.parametrize("bias", [False, True])
def test_feed_forward_sequence_zero_delays_matches_norse_values_and_gradients(bias):
    """Zero delays: DelayedLIF == nn.Linear + norse LIF over a sequence, values and gradients."""
    torch.manual_seed(23)
    I, N, B, T = 5, 4, 2, 50
    ours = DelayedLIF(I, N, max_delay=4, p=P, delay_type="synaptic", bias=bias, delay_init=0.0)
    if bias:
        with torch.no_grad():
            ours.bias.copy_(torch.randn(N) * 0.5)
    lin, ref = _linear_like(ours, bias), LIF(p=P)
    x = _drive(T, B, I, seed=24)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    z_ours, s_ours = ours(x_ours)
    z_ref, s_ref = ref(lin(x_ref))
    assert torch.equal(z_ours, z_ref)
    torch.testing.assert_close(s_ours.v, s_ref.v)
    torch.testing.assert_close(s_ours.i, s_ref.i)
    assert float(z_ref.detach().mean()) > 0.1
    _loss(z_ours, s_ours.v, N).backward()
    _loss(z_ref, s_ref.v, N).backward()
    assert float(lin.weight.grad.abs().sum()) > 0
    torch.testing.assert_close(ours.weight.grad, lin.weight.grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    if bias:
        torch.testing.assert_close(ours.bias.grad, lin.bias.grad)


def test_feed_forward_functional_step_matches_norse_gradients():
    """``delayed_lif_feed_forward_step`` with zero delays == ``lif_feed_forward_step``."""
    torch.manual_seed(25)
    I, N, B, T = 3, 4, 2, 30
    w = (torch.randn(N, I) * 1.5).requires_grad_()
    w_ref = w.detach().clone().requires_grad_()
    x = _drive(T, B, I, seed=26)
    s = DelayedLIFFeedForwardState(torch.zeros(B, N), torch.zeros(B, N), torch.zeros(0, B, I))
    s_ref = LIFFeedForwardState(torch.zeros(B, N), torch.zeros(B, N))
    loss = loss_ref = 0.0
    for t in range(T):
        z, s = delayed_lif_feed_forward_step(x[t], s, w, None, torch.zeros(N, I), P, max_delay=1)
        z_ref, s_ref = lif_feed_forward_step(torch.nn.functional.linear(x[t], w_ref), s_ref, P)
        assert torch.equal(z, z_ref)
        loss = loss + _loss(z, s.v, N)
        loss_ref = loss_ref + _loss(z_ref, s_ref.v, N)
    loss.backward()
    loss_ref.backward()
    assert float(w_ref.grad.abs().sum()) > 0
    torch.testing.assert_close(w.grad, w_ref.grad)


def test_recurrent_sequence_lag_one_gradients_still_match_norse():
    """The recurrent layers keep Norse's ``lif_step`` (which detaches the spike in the reset)."""
    torch.manual_seed(27)
    I, N, B, T = 3, 5, 2, 30
    w_in, w_rec = torch.randn(N, I) * 2.0, torch.randn(N, N)
    ref = LIFRecurrent(I, N, p=P, input_weights=torch.nn.Parameter(w_in.clone()),
                       recurrent_weights=torch.nn.Parameter(w_rec.clone()))
    ours = DelayedLIFRecurrent(I, N, max_delay=3, p=P, input_weights=w_in.clone(),
                               recurrent_weights=w_rec.clone(), delay_init=1.0)
    x = _drive(T, B, I, seed=28)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    z_ours, s_ours = ours(x_ours)
    z_ref, s_ref = ref(x_ref)
    assert torch.equal(z_ours, z_ref) and float(z_ref.detach().sum()) > 0
    _loss(z_ours, s_ours.v, N).backward()
    _loss(z_ref, s_ref.v, N).backward()
    torch.testing.assert_close(ours.input_weights.grad, ref.input_weights.grad)
    torch.testing.assert_close(ours.recurrent_weights.grad, ref.recurrent_weights.grad)
    torch.testing.assert_close(x_ours.grad, x_ref.grad)


# --- user-passed weights: the same object / storage and dtype as Norse keeps ------------------

@pytest.mark.parametrize("wrap", [False, True], ids=["tensor", "parameter"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_given_recurrent_weights_keep_dtype_and_storage_like_norse(dtype, wrap):
    I, N = 3, 4

    def given():
        g = torch.Generator().manual_seed(31)
        w_in = torch.randn(N, I, generator=g, dtype=dtype)
        w_rec = torch.randn(N, N, generator=g, dtype=dtype)
        return (torch.nn.Parameter(w_in), torch.nn.Parameter(w_rec)) if wrap else (w_in, w_rec)

    ref_in, ref_rec = given()
    ours_in, ours_rec = given()
    ref = LIFRecurrentCell(I, N, input_weights=ref_in, recurrent_weights=ref_rec)
    ours = DelayedLIFRecurrentCell(I, N, max_delay=2, input_weights=ours_in,
                                   recurrent_weights=ours_rec)
    for name, r_given, o_given in (("input_weights", ref_in, ours_in),
                                   ("recurrent_weights", ref_rec, ours_rec)):
        r, o = getattr(ref, name), getattr(ours, name)
        assert o.dtype == r.dtype == dtype
        assert isinstance(o, torch.nn.Parameter)
        # Norse keeps the passed object itself: a Parameter is the same Parameter, a tensor
        # the same storage (ours wraps it in a Parameter sharing that storage)
        assert r is r_given
        if wrap:
            assert o is o_given
        assert o.data_ptr() == o_given.data_ptr() and r.data_ptr() == r_given.data_ptr()
    # both zero the autapse diagonal of the passed tensor itself
    assert torch.equal(torch.diagonal(ref_rec.detach()), torch.diagonal(ours_rec.detach()))
    assert torch.equal(torch.diagonal(ours_rec.detach()), torch.zeros(N, dtype=dtype))
    # an in-place update of the passed tensor is seen by the layer
    with torch.no_grad():
        ours_in.add_(1.0)
    assert torch.equal(ours.input_weights.detach(), ours_in.detach())
    # every other tensor of the layer follows the given dtype
    assert all(t.dtype == dtype for t in ours.parameters())
    assert all(b.dtype == dtype for b in ours.buffers())


def test_given_float64_weights_run_like_norse_in_float64():
    torch.manual_seed(33)
    I, N, B, T = 3, 5, 2, 30
    w_in = torch.randn(N, I, dtype=torch.float64) * 2.0
    w_rec = torch.randn(N, N, dtype=torch.float64)
    ref = LIFRecurrentCell(I, N, p=P, input_weights=torch.nn.Parameter(w_in.clone()),
                           recurrent_weights=torch.nn.Parameter(w_rec.clone()))
    ours = DelayedLIFRecurrentCell(I, N, max_delay=3, p=P, input_weights=w_in.clone(),
                                   recurrent_weights=w_rec.clone(), delay_init=1.0)
    x = _drive(T, B, I, seed=34).double()
    s_ref = s_ours = None
    loss_ref = loss_ours = 0.0
    for t in range(T):
        z_ref, s_ref = ref(x[t], s_ref)
        z_ours, s_ours = ours(x[t], s_ours)
        assert z_ours.dtype == z_ref.dtype == torch.float64
        assert torch.equal(z_ours, z_ref)
        torch.testing.assert_close(s_ours.v, s_ref.v)
        loss_ref = loss_ref + _loss(z_ref, s_ref.v, N)
        loss_ours = loss_ours + _loss(z_ours, s_ours.v, N)
    loss_ref.backward()
    loss_ours.backward()
    torch.testing.assert_close(ours.input_weights.grad, ref.input_weights.grad)
    torch.testing.assert_close(ours.recurrent_weights.grad, ref.recurrent_weights.grad)


@pytest.mark.parametrize("cls", [DelayedLIFCell, DelayedLIF])
def test_given_feed_forward_weight_keeps_dtype_and_storage(cls):
    w = torch.randn(4, 3, dtype=torch.float64)
    layer = cls(3, 4, max_delay=2, weight=w, bias=True, delay_init=0.0)
    assert isinstance(layer.weight, torch.nn.Parameter)
    assert layer.weight.dtype == torch.float64 and layer.weight.data_ptr() == w.data_ptr()
    assert all(t.dtype == torch.float64 for t in layer.parameters())
    p = torch.nn.Parameter(w.clone())
    assert cls(3, 4, max_delay=2, weight=p).weight is p
    x = torch.ones((2, 3) if cls is DelayedLIFCell else (5, 2, 3), dtype=torch.float64)
    z, s = layer(x)
    assert z.dtype == s.v.dtype == torch.float64


def test_one_given_weight_sets_the_dtype_of_the_defaults():
    w_in = torch.zeros(3, 2, dtype=torch.float64)
    layer = DelayedLIFRecurrent(2, 3, max_delay=2, input_weights=w_in)
    assert layer.recurrent_weights.dtype == layer.delays.dtype == torch.float64
    z, _ = layer(torch.ones(4, 1, 2, dtype=torch.float64))
    assert z.dtype == torch.float64


def test_given_weights_of_different_dtypes_or_not_floating_rejected():
    with pytest.raises(ValueError, match="dtype"):
        DelayedLIFRecurrentCell(2, 3, max_delay=2, input_weights=torch.zeros(3, 2),
                                recurrent_weights=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="input_weights"):
        DelayedLIFRecurrentCell(2, 3, max_delay=2,
                                input_weights=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="weight"):
        DelayedLIFCell(2, 3, max_delay=2, weight=torch.zeros(3, 2, dtype=torch.int32))
