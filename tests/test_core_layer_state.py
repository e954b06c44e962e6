"""DelayedLinear: checkpoints (max_delay / delay_type / interpolation), meta-device
initialisation, parametrized delays, torch.autocast, and the banded step mode."""

import sys
import warnings

import pytest
import torch
import torch.nn.utils.parametrize as P
from torch import nn

import snn_delays_ext as sde
from snn_delays_ext import DelayedLinear
from snn_delays_ext.functional.delayed_linear import run_delayed_linear

FDL = sys.modules["snn_delays_ext.functional.delayed_linear"]
KINDS = ["synaptic", "axonal", "dendritic"]


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_from_a_larger_max_delay_is_refused_before_anything_is_copied():
    src = DelayedLinear(2, 1, 10, delay_init=torch.tensor([[8.0, 2.0]]))
    dst = DelayedLinear(2, 1, 5)
    before = {k: v.clone() for k, v in dst.state_dict().items() if isinstance(v, torch.Tensor)}
    with pytest.raises(ValueError, match="max_delay: the checkpoint was saved from a layer with max_delay=10"):
        dst.load_state_dict(src.state_dict())
    for k, v in before.items():
        assert torch.equal(dst.state_dict()[k], v), k
    with pytest.raises(ValueError, match="max_delay=5"):
        DelayedLinear(2, 1, 10).load_state_dict(dst.state_dict())
    # inside a network, too
    with pytest.raises(ValueError, match="max_delay"):
        nn.Sequential(DelayedLinear(2, 1, 5)).load_state_dict(nn.Sequential(src).state_dict())


def test_checkpoint_of_another_delay_kind_with_the_same_shape_is_refused():
    axonal = DelayedLinear(3, 3, 5, delay_type="axonal")
    dendritic = DelayedLinear(3, 3, 5, delay_type="dendritic")
    with pytest.raises(ValueError, match="delay_type: the checkpoint was saved from a layer with delay_type='axonal'"):
        dendritic.load_state_dict(axonal.state_dict())


def test_checkpoint_restores_sigma_and_interpolation_and_says_so():
    tr = DelayedLinear(2, 1, 5, interpolation="triangle", sigma=2.0)
    ev = DelayedLinear(2, 1, 5, interpolation="round")
    with pytest.warns(UserWarning, match="interpolation: the checkpoint's 'triangle' replaces this layer's 'round'"):
        ev.load_state_dict(tr.state_dict())
    assert ev.interpolation == "triangle" and ev.sigma == 2.0
    x = torch.rand(12, 2, 2)
    assert torch.equal(ev(x), tr(x))
    same = DelayedLinear(2, 1, 5, sigma=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same interpolation: silent
        same.load_state_dict(tr.state_dict())


def test_checkpoint_without_the_new_fields_still_loads():
    src = DelayedLinear(2, 3, 5, sigma=1.5)
    state = src.state_dict()
    state["_extra_state"] = {"sigma": 1.5, "interpolation": "triangle"}  # an older checkpoint
    dst = DelayedLinear(2, 3, 5)
    dst.load_state_dict(state)
    assert torch.equal(dst.delays, src.delays) and dst.sigma == 1.5
    assert set(src.state_dict()["_extra_state"]) == {"sigma", "interpolation", "max_delay", "delay_type"}


def test_checkpoint_with_bad_extra_state_is_refused():
    src = DelayedLinear(2, 3, 5)
    state = src.state_dict()
    state["_extra_state"] = {**state["_extra_state"], "sigma": -1.0}
    with pytest.raises(ValueError, match="sigma"):
        DelayedLinear(2, 3, 5).load_state_dict(state)


# -- meta device and reset_parameters --------------------------------------------------------------
@pytest.mark.parametrize("init", ["uniform", "half_normal", 2.5, "tensor"])
def test_meta_device_then_to_empty_then_reset_parameters_initialises_the_delays(init):
    spec = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]]) if init == "tensor" else init
    m = DelayedLinear(2, 3, 5, delay_init=spec, device="meta")
    y = m(torch.zeros(4, 1, 2, device="meta"))  # shape propagation works on meta tensors
    assert y.shape == (4, 1, 3) and y.device.type == "meta"
    m = m.to_empty(device="cpu")
    with torch.no_grad():
        m.delays.fill_(float("nan"))  # whatever to_empty left there
    m.reset_parameters()
    d = m.delays.detach()
    assert torch.isfinite(d).all() and (d >= 0).all() and (d <= 5).all()
    if init == 2.5:
        assert (d == 2.5).all()
    if init == "tensor":
        assert torch.equal(d, spec.clamp(0, 5))
    if init == "uniform":
        assert d.std() > 0
    m(torch.rand(4, 1, 2))


def test_reset_parameters_draws_like_the_constructor():
    torch.manual_seed(3)
    a = DelayedLinear(4, 3, 7, delay_init="half_normal", delay_std=2.0)
    torch.manual_seed(3)
    a2 = DelayedLinear(4, 3, 7, delay_init="half_normal", delay_std=2.0)
    torch.manual_seed(3)
    a2.reset_parameters()
    for name in ("delays", "weight", "bias"):
        assert torch.equal(getattr(a, name), getattr(a2, name)), name


# -- parametrized delays ------------------------------------------------------------------------
class Softplus(nn.Module):
    def forward(self, d):
        return nn.functional.softplus(d)

    def right_inverse(self, d):
        return d + torch.log(-torch.expm1(-d))


def test_parametrized_delays_split_into_their_leaf():
    m = DelayedLinear(3, 2, 5)
    P.register_parametrization(m, "delays", Softplus())
    leaf = m.parametrizations.delays.original
    assert [id(p) for p in m.delay_parameters()] == [id(leaf)]
    assert all(p is not leaf for p in m.weight_parameters())
    assert {id(p) for p in m.weight_parameters()} == {id(m.weight), id(m.bias)}
    net = nn.Sequential(m, nn.Linear(2, 2))
    assert [id(p) for p in sde.delay_parameters(net)] == [id(leaf)]
    assert len(sde.weight_parameters(net)) == 4 and all(p is not leaf for p in sde.weight_parameters(net))
    opt = torch.optim.Adam([{"params": sde.weight_parameters(net)}, {"params": sde.delay_parameters(net), "lr": 5e-2}])
    net(torch.rand(6, 2, 3)).sum().backward()
    opt.step()
    # clamping and rounding write through the parametrization
    with torch.no_grad():
        leaf.fill_(9.0)
    sde.clamp_delays_(net)
    assert torch.allclose(m.delays, torch.full_like(m.delays, 5.0))
    with torch.no_grad():
        leaf.fill_(2.3)
    m.quantize_delays()
    assert torch.allclose(m.delays, torch.round(m.delays.detach()), atol=1e-5)


# -- torch.autocast -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_autocast_after_nn_linear_computes_in_float32_and_returns_bfloat16(kind):
    lin = nn.Linear(3, 4)
    layer = DelayedLinear(4, 2, 5, delay_type=kind, sigma=0.5)
    x = torch.randn(6, 2, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        y = layer(h)
    assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    assert torch.equal(y, layer(h.float()).to(torch.bfloat16))
    y.float().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32
    assert layer.delays.grad is not None and lin.weight.grad is not None
    # step mode under autocast
    layer.reset_state()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        steps = torch.stack([layer(h[t]) for t in range(6)])
    assert steps.dtype == torch.bfloat16
    assert torch.allclose(steps.float(), y.float(), atol=1e-2)


def test_autocast_still_checks_the_input():
    layer = DelayedLinear(4, 2, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(ValueError, match="input_: expected 4 features"):
            layer(torch.randn(3, 2, 3))
        with pytest.raises(TypeError, match="input_: expected a floating-point tensor"):
            layer(torch.ones(3, 2, 4, dtype=torch.long))
        with pytest.raises(TypeError, match="float64"):
            layer(torch.ones(3, 2, 4, dtype=torch.float64))
    f64 = DelayedLinear(4, 2, 5, dtype=torch.float64)  # float64 is never autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert f64(torch.rand(3, 2, 4, dtype=torch.float64)).dtype == torch.float64


# -- step mode: only the band of taps ----------------------------------------------------------------
def _step_loop(layer, x):
    layer.reset_state()
    return torch.stack([layer(x[t]) for t in range(x.shape[0])])


def _full_tap_steps(layer, x):
    """The former step mode: one T = 1 call of the full-tap reference per step."""
    past, ys = None, []
    for t in range(x.shape[0]):
        y, past = run_delayed_linear(x[t:t + 1], layer.weight, layer.bias, layer.delays, layer.max_delay,
                                  layer.delay_type, layer.sigma, layer.interpolation, past, backend="reference")
        ys.append(y[0])
    return torch.stack(ys)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("interpolation", ["triangle", "round"])
@pytest.mark.parametrize("strategy", ["auto", "gather", "dense", "chunked"])
def test_banded_step_matches_full_taps_in_values_and_gradients(monkeypatch, kind, interpolation, strategy):
    if strategy in ("gather", "chunked"):
        monkeypatch.setattr(FDL, "_use_gather", lambda seq, idx: True)
    if strategy == "dense":
        monkeypatch.setattr(FDL, "_use_gather", lambda seq, idx: False)
    if strategy == "chunked":
        monkeypatch.setattr(FDL, "_STEP_CHUNK", 7)
    for sigma in (0.0, 1.3, 3.0):
        layer = DelayedLinear(5, 4, 6, delay_type=kind, sigma=sigma, interpolation=interpolation,
                              dtype=torch.float64)
        with torch.no_grad():  # out-of-range, whole-step and half-step delays included
            layer.delays.copy_(torch.rand_like(layer.delays) * 8 - 1)
            layer.delays.view(-1)[:3] = torch.tensor([2.0, 0.5, 6.0], dtype=torch.float64)[: layer.delays.numel()]
        x = torch.randn(9, 3, 5, dtype=torch.float64, requires_grad=True)
        params = [x, layer.weight, layer.bias, layer.delays]
        y_new = _step_loop(layer, x)
        y_old = _full_tap_steps(layer, x)
        torch.testing.assert_close(y_new, y_old, rtol=0, atol=1e-12)
        g = torch.randn_like(y_new)
        for a, b in zip(torch.autograd.grad(y_new, params, g), torch.autograd.grad(y_old, params, g)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
        # sequence call (compiled or reference) agrees too
        torch.testing.assert_close(y_new, layer(x), rtol=0, atol=1e-12)


def test_banded_step_is_twice_differentiable():
    for kind in KINDS:
        layer = DelayedLinear(3, 2, 4, delay_type=kind, sigma=0.5, dtype=torch.float64)
        x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)

        def f(x, w, d):
            out = torch.func.functional_call(layer, {"weight": w, "delays": d}, (x[0],))
            for t in range(1, 5):
                out = out + torch.func.functional_call(layer, {"weight": w, "delays": d}, (x[t],))
            layer.reset_state()
            return out

        w = layer.weight.detach().clone().requires_grad_()
        d = (layer.delays.detach().clone() + 0.25).requires_grad_()
        layer.reset_state()
        assert torch.autograd.gradgradcheck(f, (x, w, d))


def test_step_mode_saves_nothing_of_size_max_delay_per_synapse():
    n, md, B = 16, 100, 2
    layer = DelayedLinear(n, n, md)
    x = torch.rand(B, n)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    layer(x)  # a filled buffer
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x).sum()
    K = md
    assert max(sizes) < n * n * (K + 1) // 4, max(sizes)  # the full taps would be n * n * (K + 1)
    assert max(sizes) <= (K + 1) * B * n  # the buffer itself
