"""Argument checks of the public functions (functional API, compiled wrapper, helpers) and the
edge cases they used to get wrong: empty sequences, NumPy scalars, non-module arguments."""

import numpy as np
import pytest
import torch

import snn_delays_ext as sde
from snn_delays_ext import functional as Fn
from snn_delays_ext import ops
from snn_delays_ext._checks import has_data, reads_values, validation_mode
from snn_delays_ext.functional.delayed_linear import delay_shape

compiled = pytest.mark.skipif(not ops.AVAILABLE, reason=f"compiled ops not built: {ops.LOAD_ERROR}")

X = torch.randn(4, 2, 3)
W = torch.randn(2, 3)
B_ = torch.randn(2)
D = torch.rand(2, 3) * 4


def _call(**kw):
    args = dict(x=X, weight=W, bias=B_, delays=D, max_delay=5, delay_type="synaptic", sigma=0.0,
                interpolation="triangle")
    args.update(kw)
    return args


BAD = [
    # (changed arguments, exception, text the message must contain)
    (dict(max_delay=2.5), TypeError, "max_delay: expected an int"),
    (dict(max_delay=0), ValueError, "max_delay: expected an int >= 1, got 0"),
    (dict(max_delay=-3), ValueError, "max_delay: expected an int >= 1, got -3"),
    (dict(max_delay=True), TypeError, "max_delay"),
    (dict(sigma=-0.5), ValueError, "sigma: expected a finite float >= 0, got -0.5"),
    (dict(sigma=float("nan")), ValueError, "sigma"),
    (dict(sigma="1"), TypeError, "sigma"),
    (dict(delays=torch.full((2, 3), float("nan"))), ValueError, "delays: expected finite values"),
    (dict(x=X.clone().fill_(float("inf"))), ValueError, "x: expected finite values"),
    (dict(delays=torch.rand(3)), ValueError, r"delays: expected shape \(2, 3\) \(synaptic delays\), got \(3,\)"),
    (dict(delays=torch.tensor(2.0)), ValueError, "delays: expected shape"),
    (dict(delays=torch.rand(2, 1)), ValueError, "delays: expected shape"),
    (dict(delays=torch.rand(2), delay_type="axonal"), ValueError, r"delays: expected shape \(3,\) \(axonal"),
    (dict(delays=torch.rand(3), delay_type="dendritic"), ValueError, r"delays: expected shape \(2,\) \(dendritic"),
    (dict(delays=torch.tensor([[1, 2, 3], [1, 2, 3]])), TypeError, "delays: expected a floating-point"),
    (dict(delays=[[1.0] * 3] * 2), TypeError, "delays: expected a torch.Tensor"),
    (dict(weight=torch.randn(2, 4)), ValueError, r"weight: expected shape \(\*, 3\)"),
    (dict(weight=torch.randn(3)), ValueError, "weight: expected shape"),
    (dict(bias=torch.randn(3)), ValueError, r"bias: expected shape \(2,\)"),
    (dict(x=X[0]), ValueError, r"x: expected a time-first sequence \(T, B, in\) of rank 3, got rank 2"),
    (dict(x=X.long()), TypeError, "x: expected a floating-point tensor"),
    (dict(x=X.double()), TypeError, r"weight: expected dtype torch.float64 \(the dtype of x\), got torch.float32"),
    (dict(delays=D.double()), TypeError, "delays: expected dtype torch.float32"),
    (dict(bias=B_.double()), TypeError, "bias: expected dtype"),
    (dict(delay_type="foo"), ValueError, "delay_type: expected one of"),
    (dict(interpolation="foo"), ValueError, "interpolation: expected one of"),
]


@pytest.mark.parametrize("changes, exc, match", BAD)
def test_functional_delayed_linear_rejects_bad_arguments(changes, exc, match):
    with pytest.raises(exc, match=match):
        Fn.delayed_linear(**_call(**changes))


@compiled
@pytest.mark.parametrize("changes, exc, match", BAD)
def test_compiled_delayed_linear_rejects_bad_arguments(changes, exc, match):
    with pytest.raises(exc, match=match):
        Fn.delayed_linear(**_call(**changes), backend="compiled")


@compiled
def test_compiled_delayed_linear_rejects_dtypes_without_kernel():
    with pytest.raises(ValueError, match="backend: 'compiled' cannot run delayed_linear here: the kernels take "
                                         "float32 or float64, got torch.float16"):
        Fn.delayed_linear(X.half(), W.half(), B_.half(), D.half(), 5, backend="compiled")
    y, _ = Fn.delayed_linear(X.half(), W.half(), B_.half(), D.half(), 5)  # "auto": the reference runs
    assert y.dtype == torch.float16


def test_backend_argument_is_checked():
    with pytest.raises(ValueError, match=r"backend: expected one of \['auto', 'compiled', 'reference'\], got 'fast'"):
        Fn.delayed_linear(**_call(), backend="fast")


@pytest.mark.parametrize("past, match", [
    (torch.zeros(5, 7, 3), r"past: expected shape \(\*, 2, 3\)"),
    (torch.zeros(5, 2, 4), r"past: expected shape \(\*, 2, 3\)"),
    (torch.zeros(5, 2), "past: expected shape"),
    (torch.zeros(5, 2, 3, dtype=torch.float64), "past: expected dtype"),
])
def test_functional_rejects_a_past_of_the_wrong_shape_or_dtype(past, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Fn.delayed_linear(**_call(past=past))


def test_dendritic_past_holds_out_features():
    kw = _call(delay_type="dendritic", delays=torch.rand(2))
    _, past = Fn.delayed_linear(**kw)
    assert past.shape[-1] == 2
    Fn.delayed_linear(**kw, past=past)
    with pytest.raises(ValueError, match="F = 2 = out for dendritic"):
        Fn.delayed_linear(**kw, past=torch.zeros(5, 2, 3))


def test_validation_off_skips_only_the_value_checks():
    kw = _call(delays=torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="delays: expected finite values"):
        Fn.delayed_linear(**kw)  # the default ("auto") checks CPU tensors
    sde.set_validation(False)
    try:
        y, _ = Fn.delayed_linear(**kw)
        assert torch.isnan(y).all()
        with pytest.raises(ValueError, match="max_delay"):
            Fn.delayed_linear(**_call(max_delay=0))
    finally:
        sde.set_validation("auto")


@pytest.mark.parametrize("bad, exc", [("on", ValueError), (1, TypeError), (None, TypeError)])
def test_set_validation_refuses_other_values(bad, exc):
    with pytest.raises(exc, match="enabled"):
        sde.set_validation(bad)
    assert validation_mode() == "auto"


def test_value_checks_follow_the_mode_and_the_device():
    x = torch.zeros(3)
    meta = torch.empty(3, device="meta")
    assert reads_values(x) and not reads_values(meta) and not has_data(meta)
    sde.set_validation(True)
    try:
        assert reads_values(x) and not reads_values(meta)
    finally:
        sde.set_validation("auto")
    # "auto" skips accelerators: a tensor whose device is not the CPU is not read
    class _Dev:  # stands for a CUDA tensor on a machine without one
        device = torch.device("cuda")
    assert not reads_values(_Dev())  # type: ignore[arg-type]


@pytest.mark.parametrize("call, exc, match", [
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 5, -1.0), ValueError, "sigma"),
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 5, float("nan")), ValueError, "sigma"),
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 0), ValueError, "max_delay: expected an int >= 1"),
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 2.5), TypeError, "max_delay: expected an int"),
    (lambda: Fn.delay_taps(torch.tensor([2]), 5), TypeError, "delays: expected a floating-point"),
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 5, 0.0, -1), ValueError, "min_delay"),
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 5, 0.0, 6), ValueError, "min_delay: expected an int <= max_delay"),
    (lambda: Fn.delay_taps(torch.tensor([2.0]), 5, 0.0, 0, "foo"), ValueError, "interpolation"),
    (lambda: Fn.tap_range(5, -2.0), ValueError, "sigma"),
    (lambda: Fn.tap_range(0, 0.0), ValueError, "max_delay"),
    (lambda: Fn.tap_range(5.0, 0.0), TypeError, "max_delay"),
    (lambda: Fn.history_length(-1, 0.0), ValueError, "max_delay"),
])
def test_taps_and_ranges_reject_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# -- empty sequences on the reference path -------------------------------------------------------
@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
def test_reference_path_returns_an_empty_output_for_an_empty_sequence(kind):
    n_in, n_out, md, sigma = 3, 2, 5, 1.3
    shape = delay_shape(kind, n_in, n_out)
    w = torch.randn(n_out, n_in, requires_grad=True)
    d = (torch.rand(shape) * md).requires_grad_()
    x = torch.zeros(0, 2, n_in, requires_grad=True)
    y, past = Fn.delayed_linear(x, w, None, d, md, kind, sigma, backend="reference")
    K = Fn.history_length(md, sigma)
    f = n_out if kind == "dendritic" else n_in
    assert y.shape == (0, 2, n_out) and past.shape == (K, 2, f) and not past.any()
    y.sum().backward()  # connected to the graph: zero gradients, no error
    assert not w.grad.any() and not d.grad.any()
    # a given past passes through unchanged (refitted to the current length)
    old = torch.randn(K, 2, f)
    _, past2 = Fn.delayed_linear(x.detach(), w, None, d, md, kind, sigma, past=old, backend="reference")
    assert torch.equal(past2, old)
    _, past3 = Fn.delayed_linear(x.detach(), w, None, d, md, kind, sigma, past=old[2:], backend="reference")
    assert torch.equal(past3[2:], old[2:]) and not past3[:2].any()
    # the layer on the reference path (float16: no compiled kernel)
    layer = sde.DelayedLinear(n_in, n_out, md, delay_type=kind).half()
    assert layer(torch.zeros(0, 2, n_in).half()).shape == (0, 2, n_out)


# -- NumPy scalars -----------------------------------------------------------------------------
def test_numpy_scalars_are_accepted_and_bools_are_not():
    layer = sde.DelayedLinear(np.int64(3), np.int32(2), np.int64(5), sigma=np.float32(0.5))
    assert (layer.in_features, layer.out_features, layer.max_delay) == (3, 2, 5)
    assert type(layer.max_delay) is int and layer.sigma == 0.5 and type(layer.sigma) is float
    assert layer.weight.shape == (2, 3) and layer.delays.shape == (2, 3)
    layer.sigma = np.float64(1.5)
    sde.set_sigma(layer, np.float32(2.0))
    y, _ = Fn.delayed_linear(X, W, B_, D, np.int64(5), "synaptic", np.float32(0.5))
    assert y.shape == (4, 2, 2)
    assert Fn.tap_range(np.int16(4), np.float64(1.0)) == (0, 5)
    sde.SigmaScheduler(torch.nn.Sequential(layer), np.int64(10), sigma0=np.float32(3.0), decay=np.float64(0.9))
    with pytest.raises(TypeError, match="in_features: expected an int, got bool"):
        sde.DelayedLinear(True, 2, 5)
    with pytest.raises(TypeError, match="max_delay: expected an int"):
        sde.DelayedLinear(3, 2, np.bool_(True))
    with pytest.raises(TypeError, match="sigma"):
        sde.DelayedLinear(3, 2, 5, sigma=np.bool_(False))
    with pytest.raises(TypeError, match="max_delay: expected an int"):
        sde.DelayedLinear(3, 2, np.float64(5.0))


# -- helpers ------------------------------------------------------------------------------------
def test_helpers_reject_wrong_argument_types():
    net = torch.nn.Sequential(sde.DelayedLinear(2, 2, 5))
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got int"):
        sde.detach(3)
    with pytest.raises(TypeError, match="net: expected a torch.nn.Module, got str"):
        sde.quantize_delays("x")
    with pytest.raises(TypeError, match="max_hardware_delay: expected an int, got str"):
        sde.quantize_delays(net, max_hardware_delay="5")
    with pytest.raises(ValueError, match="max_hardware_delay: expected an int >= 0"):
        sde.quantize_delays(net, max_hardware_delay=-1)
    with pytest.raises(ValueError, match="device: expected a device such as 'cpu' or 'cuda'"):
        sde.backend("xyz")
    assert sde.backend(torch.device("cpu")) == sde.backend("cpu")


def test_sigma_scheduler_validates_its_arguments_and_state():
    net = torch.nn.Sequential(sde.DelayedLinear(2, 2, 20))
    with pytest.raises(TypeError, match="decay"):
        sde.SigmaScheduler(net, 10, decay="0.9")
    with pytest.raises(ValueError, match="decay"):
        sde.SigmaScheduler(net, 10, decay=1.5)
    with pytest.raises(ValueError, match="decay"):
        sde.SigmaScheduler(net, 10, decay=float("nan"))
    sched = sde.SigmaScheduler(net, 10, sigma0=5.0)
    sched.step()
    good = sched.state_dict()
    for bad, exc, match in [
        ("x", TypeError, "state: expected a dict"),
        ({"epoch": 1}, ValueError, "missing"),
        ({**good, "epochs": 0}, ValueError, "epochs"),
        ({**good, "decay": "0.9"}, TypeError, "decay"),
        ({**good, "sigma0": -1.0}, ValueError, "sigma0"),
        ({**good, "epoch": -2}, ValueError, "epoch"),
        ({**good, "final_sigma": "0"}, TypeError, "final_sigma"),
    ]:
        with pytest.raises(exc, match=match):
            sched.load_state_dict(bad)
        assert sched.state_dict() == good  # unchanged after a refused state
    other = sde.SigmaScheduler(net, 3)
    other.load_state_dict(good)
    assert other.state_dict() == good and net[0].sigma == sched.current()


def test_the_reference_path_warning_points_at_the_caller(monkeypatch):
    """Without the compiled extension, the one-time warning names the user's line (here, this
    file), not a line inside the library."""
    import warnings

    monkeypatch.setattr(ops, "AVAILABLE", False)
    monkeypatch.setattr(ops, "LOAD_ERROR", "not built (test)")
    monkeypatch.setattr(ops, "_warned", False)
    layer = sde.DelayedLinear(3, 2, max_delay=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(torch.zeros(5, 1, 3))
    (w,) = [w for w in caught if "reference path" in str(w.message)]
    assert w.filename == __file__
