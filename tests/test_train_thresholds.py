"""Learnable per-neuron firing thresholds (``learn_threshold``) of the feed-forward presets."""

from __future__ import annotations

import pytest
import torch

from snn_delays_ext.train import FeedForwardSNN, build_model, make_config, train
from snn_delays_ext.train.cli import build_parser
from snn_delays_ext.train.engine import _param_groups
from snn_delays_ext.train.models import learned_thresholds


def test_each_hidden_neuron_fires_at_its_own_threshold_hand_computed():
    # no leak (beta 1), constant input 0.6, subtractive reset:
    # threshold 0.5 -> 0.6 > 0.5 at every step (0.6, 0.7, 0.8, ...: one spike per step)
    # threshold 2.0 -> 0.6, 1.2, 1.8, 2.4 (spike), 1.0, 1.6, 2.2 (spike): steps 3 and 6
    net = FeedForwardSNN(1, [2], 1, max_delay=1, delays=False, beta=1.0, learn_threshold=True)
    with torch.no_grad():
        net.linears[0].weight.fill_(0.6)
        net.linears[0].bias.zero_()
        net.lifs[0].threshold.copy_(torch.tensor([0.5, 2.0]))
    _, spikes = net(torch.ones(7, 1, 1), record=True)
    assert spikes[0][:, 0, 0].tolist() == [1.0] * 7
    assert spikes[0][:, 0, 1].tolist() == [0, 0, 0, 1, 0, 0, 1]


def test_thresholds_start_at_one_equal_the_fixed_network_and_get_gradients():
    torch.manual_seed(4)
    fixed = FeedForwardSNN(5, [8, 6], 3, max_delay=4, learn_beta=True, beta=0.8)
    torch.manual_seed(4)
    learned = FeedForwardSNN(5, [8, 6], 3, max_delay=4, learn_beta=True, beta=0.8, learn_threshold=True)
    thresholds = learned_thresholds(learned)
    assert [tuple(t.shape) for t in thresholds] == [(8,), (6,)]
    assert all(isinstance(t, torch.nn.Parameter) and bool((t == 1).all()) for t in thresholds)
    assert learned_thresholds(fixed) == []
    x = (torch.rand(20, 4, 5) < 0.4).float() * 2.0
    out = learned(x)
    assert torch.equal(out, fixed(x))
    out.square().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in thresholds)


@pytest.mark.parametrize("scope", ["all", "matrices"])
def test_thresholds_are_their_own_group_without_weight_decay(scope):
    cfg = make_config("braille", overrides={"hidden": [8, 8], "learn_threshold": True, "weight_decay_scope": scope})
    model = build_model(cfg.model, 24, 27, cfg)
    groups = {g["name"]: g for g in _param_groups(model, cfg)}
    assert groups["thresholds"]["weight_decay"] == 0.0 and groups["thresholds"]["lr"] == cfg.lr
    assert {id(p) for p in groups["thresholds"]["params"]} == {id(p) for p in learned_thresholds(model)}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert groups["weights"]["weight_decay"] == cfg.weight_decay > 0


def test_flag_reaches_the_config_and_other_models_refuse_it():
    args = build_parser().parse_args(["train", "--preset", "braille", "--learn-threshold"])
    assert args.learn_threshold is True
    assert make_config("braille").learn_threshold is False
    with pytest.raises(TypeError, match="learn_threshold: expected True or False"):
        make_config("braille", overrides={"learn_threshold": 1})
    # the module itself refuses a non-bool flag (a truthy string used to switch it on)
    for flag in ("learn_threshold", "learn_beta", "delays", "output_delays"):
        with pytest.raises(TypeError, match=rf"{flag}: expected a bool, got str \('yes'\)"):
            FeedForwardSNN(3, [4], 2, **{flag: "yes"})
    for preset in ("shd-delrec", "sequence-eventprop"):
        cfg = make_config(preset, overrides={"learn_threshold": True, "hidden": [4]})
        with pytest.raises(ValueError, match="learn_threshold: the"):
            build_model(cfg.model, 10, 3, cfg)


def test_training_moves_the_thresholds_and_the_checkpoint_reloads_them(tmp_path):
    cfg = make_config("yinyang", overrides={
        "learn_threshold": True, "epochs": 2, "train_limit": 200, "eval_limit": 100, "progress": False,
        "tensorboard": False, "device": "cpu"})
    res = train(cfg, tmp_path / "run")
    assert 0.0 <= res["test_acc"] <= 1.0
    best = torch.load(tmp_path / "run" / "model_best.pt", map_location="cpu", weights_only=False)
    model = build_model(cfg.model, 5, 3, cfg)
    model.load_state_dict(best["model"])
    (t,) = learned_thresholds(model)
    assert t.shape == (30,) and not torch.allclose(t, torch.ones_like(t))
