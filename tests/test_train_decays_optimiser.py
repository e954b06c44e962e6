"""The optimiser: its two groups (weights with weight decay, delays without), Adam's L2 term
against AdamW's decoupled decay, and the models that refuse a learnable decay."""

from __future__ import annotations

import csv

import pytest
import torch

from snn_delays_ext.train import build_model, make_config, train
from snn_delays_ext.train.engine import _optimizer, _param_groups


def test_optimiser_groups_leave_delays_out_of_weight_decay():
    cfg = make_config("braille", overrides={"hidden": [8, 8]})
    model = build_model(cfg.model.name, 24, 27, cfg)
    groups = {g["name"]: g for g in _param_groups(model, cfg)}
    assert set(groups) == {"weights", "delays"}
    assert groups["weights"]["weight_decay"] == cfg.optim.weight_decay > 0
    assert groups["delays"]["weight_decay"] == 0.0
    assert groups["weights"]["lr"] == cfg.optim.lr and groups["delays"]["lr"] == cfg.optim.delay_lr
    # every trainable parameter in exactly one group; the learnable decays are among the weights
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert any(p is model.lifs[0].beta for p in groups["weights"]["params"])


def test_recurrent_presets_refuse_learn_beta_instead_of_ignoring_it():
    cfg = make_config("shd-delrec", overrides={"learn_beta": True, "hidden": [4]})
    with pytest.raises(ValueError, match="surrogate.learn_beta: the recurrent models keep one fixed decay"):
        build_model(cfg.model.name, 10, 3, cfg)


def test_training_with_learnable_decays_logs_both_learning_rates(tmp_path):
    cfg = make_config("yinyang", overrides={
        "learn_beta": True, "epochs": 2, "train_limit": 200, "eval_limit": 100, "weight_decay": 1e-3,
        "lr_schedule": "none", "progress": False, "tensorboard": False, "device": "cpu"})
    res = train(cfg, tmp_path / "run")
    assert 0.0 <= res["test_acc"] <= 1.0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[0]["lr"]) == pytest.approx(cfg.optim.lr)
    assert float(rows[0]["delay_lr"]) == pytest.approx(cfg.optim.delay_lr)
    best = torch.load(tmp_path / "run" / "model_best.pt", map_location="cpu", weights_only=False)
    model = build_model(cfg.model.name, 5, 3, cfg)
    model.load_state_dict(best["model"])
    beta = model.lifs[0].beta
    assert not torch.allclose(beta, torch.full_like(beta, cfg.surrogate.beta))  # the decays were trained


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_weight_decay_of_adam_is_an_l2_gradient_and_of_adamw_a_decoupled_shrink(name):
    cfg = make_config("braille", overrides={"hidden": [4], "optimizer": name, "weight_decay": 0.5, "lr": 0.1})
    model = build_model(cfg.model.name, 24, 27, cfg)
    opt = _optimizer(model, cfg)
    assert type(opt) is {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    w0, w1 = before["out.weight"], after["out.weight"].detach()
    if name == "adamw":
        # zero gradient: Adam's own step is 0, the decoupled decay multiplies by 1 - lr * wd
        assert torch.allclose(w1, w0 * (1 - 0.1 * 0.5), atol=1e-7)
    else:
        # the L2 term wd * w is the whole gradient: Adam's first step is lr * sign(w)
        assert torch.allclose(w1, w0 - 0.1 * torch.sign(w0), atol=1e-5)
    assert torch.equal(after["linears.0.delays"].detach(), before["linears.0.delays"])  # never decayed


def test_optimizer_choice_is_checked():
    with pytest.raises(ValueError, match="optim.optimizer: expected one of"):
        make_config("braille", overrides={"optimizer": "sgd"})
