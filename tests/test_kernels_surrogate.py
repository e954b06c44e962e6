"""Recognition of snnTorch surrogates by :func:`snn_delays_ext.surrogate.surrogate_spec`."""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.surrogate as sg
import torch

from snn_delays_ext.surrogate import SURROGATE_KINDS, surrogate_spec


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
