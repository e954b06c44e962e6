"""Surrogate choice of the training models, and the CLI flags for every config field."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from snn_delays_ext.surrogate import surrogate_spec
from snn_delays_ext.train import PRESETS, FeedForwardSNN, RecurrentSNN, TrainConfig, build_model, make_config
from snn_delays_ext.train.cli import build_parser, main


@pytest.mark.parametrize("preset", ["shd-delrec", "ssc-delrec", "psmnist-delrec"])
def test_delrec_presets_use_a_true_triangle(preset):
    # DelRec's surrogate is max(0, 1 - |u|); snnTorch's "triangular" is +-1 everywhere
    cfg = make_config(preset, overrides={"hidden": [4, 4]})
    net = build_model(cfg.model, 3, 2, cfg)
    spec = surrogate_spec(net.recs[0].spike_grad)
    assert (spec.name, spec.param) == ("triangle", 1.0)
    u = torch.tensor([-2.0, -0.5, 0.5, 2.0], requires_grad=True)
    (g,) = torch.autograd.grad(net.recs[0].spike_grad(u).sum(), u)
    assert g.tolist() == [0.0, 0.5, 0.5, 0.0]


@pytest.mark.parametrize("name, param, expected", [
    ("atan", None, ("atan", 2.0)),
    ("atan", 5.0, ("atan", 5.0)),
    ("fast_sigmoid", 10.0, ("fast_sigmoid", 10.0)),
    ("triangle", 0.5, ("triangle", 0.5)),
    ("triangular", None, ("triangular", 1.0)),
])
@pytest.mark.parametrize("model", ["ff-delays", "delrec"])
def test_surrogate_and_its_parameter_reach_every_hidden_neuron(model, name, param, expected):
    cfg = make_config(overrides={"model": model, "hidden": [4, 3], "surrogate": name, "surrogate_param": param})
    net = build_model(model, 3, 2, cfg)
    layers = net.lifs if model == "ff-delays" else net.recs
    assert [tuple(surrogate_spec(m.spike_grad)[i] for i in (0, 2)) for m in layers] == [expected, expected]


def test_every_config_field_has_a_flag(capsys):
    # a value set by a flag ends in the resolved config (--print-config)
    flags = ["--gap", "7", "--delay-std", "3.5", "--surrogate", "triangle", "--surrogate-param", "0.5",
             "--sigma-decay", "0.9", "--num-workers", "1", "--no-tensorboard"]
    assert main(["train", *flags, "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["gap"], cfg["delay_std"], cfg["surrogate"], cfg["surrogate_param"]) == (7, 3.5, "triangle", 0.5)
    assert (cfg["sigma_decay"], cfg["num_workers"], cfg["tensorboard"]) == (0.9, 1, False)
    dests = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in dests]
    assert missing == []


def test_bad_surrogate_param_through_cli(capsys):
    assert main(["train", "--surrogate-param", "-1", "--print-config"]) == 2
    assert "surrogate_param: expected a number in (0.0, inf], got -1.0" in capsys.readouterr().err


def test_presets_name_known_surrogates():
    for name, values in PRESETS.items():
        if "surrogate" in values:
            make_config(name)  # validates


@pytest.mark.parametrize("cls", [FeedForwardSNN, RecurrentSNN])
@pytest.mark.parametrize("kwargs, exc, words", [
    ({"surrogate": "sigmoid"}, ValueError, "surrogate: expected one of"),
    ({"surrogate_param": 0.0}, ValueError, "surrogate_param: expected a finite float > 0, got 0.0"),
    ({"surrogate_param": float("nan")}, ValueError, "surrogate_param: expected a finite float > 0"),
    ({"surrogate_param": "5"}, TypeError, "surrogate_param: expected a float > 0, got str"),
])
def test_models_refuse_bad_surrogates(cls, kwargs, exc, words):
    with pytest.raises(exc) as e:
        cls(3, [4], 2, **kwargs)
    assert words in str(e.value)
