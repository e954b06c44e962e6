"""Recognition of snnTorch surrogates by :func:`snn_delays_ext.surrogate.surrogate_spec`."""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.surrogate as sg
import torch

from snn_delays_ext.surrogate import SURROGATE_KINDS, surrogate_spec, triangle


@pytest.mark.parametrize(
    "fn, name, param",
    [
        (sg.atan(), "atan", 2.0),
        (sg.atan(alpha=3.5), "atan", 3.5),
        (sg.fast_sigmoid(), "fast_sigmoid", 25.0),
        (sg.fast_sigmoid(slope=7), "fast_sigmoid", 7.0),
        (sg.sigmoid(slope=4), "sigmoid", 4.0),
        (sg.triangular(threshold=0.5), "triangular", 0.5),
        (sg.straight_through_estimator(), "straight_through_estimator", 0.0),
        (sg.heaviside(), "heaviside", 0.0),
        (None, "atan", 2.0),  # snnTorch's default
    ],
)
def test_recognised(fn, name, param):
    spec = surrogate_spec(fn)
    assert spec is not None
    assert spec.name == name and spec.kind == SURROGATE_KINDS[name] and spec.param == param


@pytest.mark.parametrize(
    "fn",
    [
        lambda u: (u > 0).float(),
        sg.spike_rate_escape(),
        sg.LSO(),
        sg.SFS(),
        torch.sigmoid,
        snn.RLeaky(0.5, linear_features=2, surrogate_disable=True).spike_grad,
        sg.custom_surrogate(lambda input_, grad_input, spikes: grad_input),
    ],
)
def test_unrecognised_returns_none(fn):
    assert surrogate_spec(fn) is None


def test_rleaky_default_surrogate_is_atan():
    assert surrogate_spec(snn.RLeaky(0.5, linear_features=2).spike_grad).name == "atan"


# -- snn_delays_ext.surrogate.triangle -------------------------------------------------------------
def test_triangle_is_recognised_with_its_gamma():
    assert surrogate_spec(triangle()) == ("triangle", SURROGATE_KINDS["triangle"], 1.0)
    assert surrogate_spec(triangle(gamma=0.25)).param == 0.25


def test_triangle_values_by_hand():
    # u = mem - threshold; derivative max(0, gamma - |u|) / gamma^2, forward u > 0
    u = torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    s = triangle(gamma=2.0)(u)
    assert s.dtype == torch.float64
    assert s.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    (g,) = torch.autograd.grad((s * torch.arange(1.0, 7.0, dtype=torch.float64)).sum(), u)
    # (2 - |u|) / 4 = 0, 0.375, 0.5, 0.375, 0.25, 0; times the incoming gradient 1..6
    assert g.tolist() == [0.0, 2 * 0.375, 3 * 0.5, 4 * 0.375, 5 * 0.25, 0.0]


def test_triangle_has_unit_area():
    u = torch.linspace(-1.0, 1.0, 200001, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(triangle(0.6)(u).sum(), u)
    assert abs(float(g.sum()) * float(u[1].detach() - u[0].detach()) - 1.0) < 1e-4


def test_triangle_differs_from_snntorch_triangular():
    # snnTorch 1.0's "triangular" derivative is +threshold below and -threshold at/above the
    # threshold, everywhere; the triangle vanishes away from it and is never negative
    u = torch.tensor([-3.0, 0.5, 3.0], requires_grad=True)
    (g_sn,) = torch.autograd.grad(sg.triangular()(u).sum(), u)
    (g_tri,) = torch.autograd.grad(triangle()(u).sum(), u)
    assert g_sn.tolist() == [1.0, -1.0, -1.0]
    assert g_tri.tolist() == [0.0, 0.5, 0.0]


def test_triangle_in_snntorch_leaky():
    lif = snn.Leaky(beta=0.5, spike_grad=triangle())
    x = torch.tensor([[0.8], [0.8]], requires_grad=True)
    mem = lif.init_leaky()
    spk1, mem = lif(x[0], mem)
    spk2, mem = lif(x[1], mem)
    assert spk1.item() == 0.0 and spk2.item() == 1.0  # 0.8, then 0.4 + 0.8 = 1.2 > 1
    (g,) = torch.autograd.grad(spk2.sum(), x)
    # d spk2 / d x[1] = triangle'(0.2) = 0.8 (snnTorch detaches the reset by default)
    assert g[1].item() == pytest.approx(0.8)


@pytest.mark.parametrize("gamma, err", [(0.0, ValueError), (-1.0, ValueError), (float("nan"), ValueError),
                                        (float("inf"), ValueError), ("1", TypeError), (True, TypeError)])
def test_triangle_rejects_bad_gamma(gamma, err):
    with pytest.raises(err, match="gamma"):
        triangle(gamma)


def test_same_named_closures_elsewhere_are_not_recognised():
    # a user's own factories named like ours or snnTorch's: the kernels must not take them for
    # the known functions (their derivative may differ), so they fall back to the reference
    # (each closure holds a parameter cell of the right name, as the real ones do)
    def triangle(gamma=1.0):  # noqa: F811 - deliberately the same name
        def inner(u):
            return (u > gamma).float()
        return inner

    def atan(alpha=2.0):
        def inner(u):
            return (u > alpha).float()
        return inner

    assert triangle.__module__ == atan.__module__ == __name__
    # qualnames are "test_...<locals>.triangle.<locals>.inner": also make plain ones
    for fn in (triangle(), atan()):
        fn.__qualname__ = fn.__qualname__.split(".<locals>.", 1)[1]
        assert fn.__qualname__ in ("triangle.<locals>.inner", "atan.<locals>.inner")
        assert surrogate_spec(fn) is None


def test_surrogate_spec_constant_is_marked_as_torch_dynamo_marks():
    """``surrogate_spec_constant`` is marked for torch.compile without importing torch._dynamo:
    the mark must be the one ``torch._dynamo.assume_constant_result`` sets."""
    import torch._dynamo

    from snn_delays_ext.surrogate import surrogate_spec_constant

    def probe():
        return None

    torch._dynamo.assume_constant_result(probe)
    assert set(vars(probe)) == {"_dynamo_marked_constant"} and probe._dynamo_marked_constant is True
    assert surrogate_spec_constant._dynamo_marked_constant is True
