"""Surrogate choice of the training models, and the CLI flags for every config field."""

from __future__ import annotations

import json

import pytest
import torch

from snn_delays_ext.surrogate import surrogate_spec
from snn_delays_ext.train import PRESETS, FeedForwardSNN, RecurrentSNN, build_model, make_config
from snn_delays_ext.train.cli import build_parser, main


@pytest.mark.parametrize("preset", ["ssc-delrec", "psmnist-delrec"])
def test_delrec_presets_use_a_true_triangle(preset):
    # DelRec's surrogate on SSC and PS-MNIST is max(0, 1 - |u|) (its SHD one is ATan(5));
    # snnTorch's "triangular" is +-1 everywhere
    cfg = make_config(preset, overrides={"hidden": [4, 4]})
    net = build_model(cfg.model.name, 3, 2, cfg)
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


def test_every_option_is_reachable_from_the_command_line(capsys):
    """Every option of every section, set with --set, ends in the resolved config
    (--print-config); the everyday ones have flags of their own, about fifteen."""
    from snn_delays_ext.train.config import options

    flags = ["--set", "data.gap=7", "--set", "surrogate.delay_std=3.5", "--set", "surrogate.surrogate=triangle",
             "--set", "surrogate.surrogate_param=0.5", "--set", "optim.sigma_decay=0.9", "--set", "run.num_workers=1",
             "--set", "run.tensorboard=false"]
    assert main(["train", *flags, "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["data"]["gap"], cfg["surrogate"]["delay_std"], cfg["surrogate"]["surrogate"]) == (7, 3.5, "triangle")
    assert cfg["surrogate"]["surrogate_param"] == 0.5
    assert (cfg["optim"]["sigma_decay"], cfg["run"]["num_workers"], cfg["run"]["tensorboard"]) == (0.9, 1, False)
    # every option: its section in the printed config, and --set accepts its name
    for section, short, f in options():
        assert f.name in cfg[section], (section, f.name)
        assert f.metadata["help"]
    dests = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions}
    flagged = {short for _, short, f in options() if f.metadata["flag"]}
    assert flagged <= dests and 12 <= len(flagged) <= 18
    # the rest only through --set (run.out's name is also the --out run folder argument)
    assert ({short for _, short, f in options()} - flagged) & dests == {"out"}


def test_bad_surrogate_param_through_cli(capsys):
    assert main(["train", "--set", "surrogate.surrogate_param=-1", "--print-config"]) == 2
    assert "surrogate.surrogate_param: expected a number in (0, inf], got -1" in capsys.readouterr().err


def test_presets_name_known_surrogates():
    for name, values in PRESETS.items():
        if "surrogate" in values.get("surrogate", {}):
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
