"""Learnable decays stored as logits (``beta_parametrization="sigmoid"``) and the optimiser groups and choice."""

from __future__ import annotations

import csv

import pytest
import snntorch as snn
import torch
from torch.nn.utils import parametrize

from snn_delays_ext.train import FeedForwardSNN, build_model, make_config, train
from snn_delays_ext.train.cli import main
from snn_delays_ext.train.engine import _param_groups
from snn_delays_ext.train.models import SigmoidBeta, sigmoid_beta_logits


def _leaky_pair(beta: torch.Tensor):
    """A clipped snnTorch neuron and a sigmoid-parametrised one with the same decays."""
    clipped = snn.Leaky(beta=beta.clone(), learn_beta=True)
    logit = snn.Leaky(beta=beta.clone(), learn_beta=True)
    parametrize.register_parametrization(logit, "beta", SigmoidBeta())
    return clipped, logit


def _run(lif, cur):
    mem, out = lif.init_leaky(), []
    for c in cur:
        spk, mem = lif(c, mem)
        out.append(mem)
    return torch.stack(out)


def test_sigmoid_beta_matches_the_clipped_neuron_and_its_gradient_is_the_chain_rule():
    torch.manual_seed(0)
    beta = torch.tensor([0.2, 0.5, 0.9, 0.99], dtype=torch.float64)
    clipped, logit = _leaky_pair(beta)
    clipped.double(), logit.double()
    cur = torch.rand(12, 3, 4, dtype=torch.float64)
    m1, m2 = _run(clipped, cur), _run(logit, cur)
    assert torch.allclose(m1, m2, atol=1e-12)
    m1.sum().backward()
    m2.sum().backward()
    g_beta = clipped.beta.grad
    g_logit = logit.parametrizations.beta.original.grad
    # d/dlogit = d/dbeta * sigmoid'(logit) = d/dbeta * beta (1 - beta)
    assert torch.allclose(g_logit, g_beta * beta * (1 - beta), atol=1e-12)


def test_a_decay_pushed_below_zero_is_stuck_when_clipped_but_not_as_a_logit():
    cur = torch.rand(10, 2, 1, dtype=torch.float64)
    clipped = snn.Leaky(beta=torch.tensor([-0.05], dtype=torch.float64), learn_beta=True)
    _run(clipped, cur).sum().backward()
    assert clipped.beta.grad.abs().item() == 0.0  # the clamp kills the gradient
    logit = snn.Leaky(beta=torch.tensor([0.5], dtype=torch.float64), learn_beta=True)
    parametrize.register_parametrization(logit, "beta", SigmoidBeta())
    with torch.no_grad():
        logit.parametrizations.beta.original.fill_(-12.0)  # beta ~ 6e-6
    _run(logit, cur).sum().backward()
    assert logit.parametrizations.beta.original.grad.abs().item() > 0.0


def test_sigmoid_beta_refuses_decays_outside_the_open_interval():
    lif = snn.Leaky(beta=torch.tensor([0.5, 1.0]), learn_beta=True)
    with pytest.raises(ValueError, match=r"beta: a sigmoid-parametrised decay must lie in \(0, 1\)"):
        parametrize.register_parametrization(lif, "beta", SigmoidBeta())
    with pytest.raises(ValueError, match="beta: expected a number in"):
        FeedForwardSNN(3, [4], 2, learn_beta=True, beta=1.0, beta_parametrization="sigmoid")
    with pytest.raises(ValueError, match="beta_parametrization: expected one of"):
        FeedForwardSNN(3, [4], 2, learn_beta=True, beta_parametrization="softplus")


def test_feed_forward_network_with_logits_equals_the_clipped_one_at_initialisation():
    torch.manual_seed(3)
    a = FeedForwardSNN(5, [8, 6], 3, max_delay=4, learn_beta=True, beta=0.8)
    torch.manual_seed(3)
    b = FeedForwardSNN(5, [8, 6], 3, max_delay=4, learn_beta=True, beta=0.8, beta_parametrization="sigmoid")
    x = (torch.rand(15, 4, 5) < 0.3).float()
    assert torch.allclose(a(x), b(x), atol=1e-6)
    assert len(sigmoid_beta_logits(a)) == 0 and len(sigmoid_beta_logits(b)) == 2


def test_optimiser_groups_leave_decay_logits_and_delays_out_of_weight_decay():
    cfg = make_config("braille", overrides={"beta_parametrization": "sigmoid", "hidden": [8, 8]})
    model = build_model(cfg.model, 24, 27, cfg)
    groups = {g["name"]: g for g in _param_groups(model, cfg)}
    assert set(groups) == {"weights", "decay_logits", "delays"}
    assert groups["weights"]["weight_decay"] == cfg.weight_decay > 0
    assert groups["decay_logits"]["weight_decay"] == 0.0 and groups["delays"]["weight_decay"] == 0.0
    assert groups["decay_logits"]["lr"] == cfg.lr and groups["delays"]["lr"] == cfg.delay_lr
    cfg_lr = make_config("braille", overrides={"beta_parametrization": "sigmoid", "hidden": [8], "beta_lr": 0.1})
    lrs = {g["name"]: g["lr"] for g in _param_groups(build_model(cfg_lr.model, 24, 27, cfg_lr), cfg_lr)}
    assert lrs == {"weights": cfg_lr.lr, "decay_logits": 0.1, "delays": cfg_lr.delay_lr}
    # every trainable parameter in exactly one group
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    # the clipped form keeps decays among the (weight-decayed) weights, as before
    cfg2 = make_config("braille", overrides={"hidden": [8, 8]})
    names2 = [g["name"] for g in _param_groups(build_model(cfg2.model, 24, 27, cfg2), cfg2)]
    assert names2 == ["weights", "delays"]


def test_config_and_cli_check_the_parametrization():
    with pytest.raises(ValueError, match="beta_parametrization: 'sigmoid' parametrises a learnable decay"):
        make_config("yinyang", overrides={"beta_parametrization": "sigmoid"})
    with pytest.raises(ValueError, match="beta_parametrization: expected one of"):
        make_config("braille", overrides={"beta_parametrization": "tanh"})
    with pytest.raises(ValueError, match=r"beta: expected a number in \(0, 1\)"):
        make_config("braille", overrides={"beta_parametrization": "sigmoid", "beta": 0.0})
    with pytest.raises(ValueError, match="beta_lr: applies to decay logits"):
        make_config("braille", overrides={"beta_lr": 0.1})
    with pytest.raises(ValueError, match="beta_lr: expected a number"):
        make_config("braille", overrides={"beta_parametrization": "sigmoid", "beta_lr": -1.0})
    with pytest.raises(SystemExit):
        main(["train", "--preset", "braille", "--beta-parametrization", "exp", "--print-config"])


def test_recurrent_presets_refuse_learn_beta_instead_of_ignoring_it():
    cfg = make_config("shd-delrec", overrides={"learn_beta": True, "hidden": [4]})
    with pytest.raises(ValueError, match="learn_beta: the recurrent presets keep one fixed decay"):
        build_model(cfg.model, 10, 3, cfg)


def test_training_with_decay_logits_runs_logs_both_learning_rates_and_reloads(tmp_path):
    cfg = make_config("yinyang", overrides={
        "learn_beta": True, "beta_parametrization": "sigmoid", "epochs": 2, "train_limit": 200,
        "eval_limit": 100, "weight_decay": 1e-3, "lr_schedule": "none", "progress": False,
        "tensorboard": False, "device": "cpu"})
    res = train(cfg, tmp_path / "run")
    assert 0.0 <= res["test_acc"] <= 1.0
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[0]["lr"]) == pytest.approx(cfg.lr)
    assert float(rows[0]["delay_lr"]) == pytest.approx(cfg.delay_lr)  # not the logits' group
    best = torch.load(tmp_path / "run" / "model_best.pt", map_location="cpu", weights_only=False)
    assert any(k.endswith("parametrizations.beta.original") for k in best["model"])
    model = build_model(cfg.model, 5, 3, cfg)
    model.load_state_dict(best["model"])
    beta = model.lifs[0].beta
    assert bool(((beta > 0) & (beta < 1)).all())
    assert not torch.allclose(beta, torch.full_like(beta, cfg.beta))  # the decays were trained


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_weight_decay_of_adam_is_an_l2_gradient_and_of_adamw_a_decoupled_shrink(name):
    from snn_delays_ext.train.engine import _optimizer

    cfg = make_config("braille", overrides={"hidden": [4], "optimizer": name, "weight_decay": 0.5, "lr": 0.1,
                                            "beta_parametrization": "sigmoid"})
    model = build_model(cfg.model, 24, 27, cfg)
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
    # never decayed: delays and decay logits
    for n in ("linears.0.delays", "lifs.0.parametrizations.beta.original"):
        assert torch.equal(after[n].detach(), before[n])


def test_optimizer_choice_is_checked():
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        make_config("braille", overrides={"optimizer": "sgd"})


@pytest.mark.parametrize("scope", ["all", "matrices"])
def test_weight_decay_scope_matrices_spares_biases_decays_and_norm_parameters(scope):
    """``weight_decay_scope="matrices"``: with zero loss gradients, Adam's L2 term moves every
    weight matrix by ``lr * sign(w)`` on its first step and leaves biases, the clipped decays
    and batch-norm scales where they were; ``"all"`` (the default) moves them too."""
    from snn_delays_ext.train.engine import _optimizer

    cfg = make_config("braille", overrides={"hidden": [4], "weight_decay": 0.5, "lr": 0.1, "batch_norm": True,
                                            "weight_decay_scope": scope})
    model = build_model(cfg.model, 24, 27, cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() < 2:
                p.add_(0.3)  # biases and batch-norm shifts start at 0, where L2 is 0 anyway
    opt = _optimizer(model, cfg)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = {g["name"]: [names[id(p)] for p in g["params"]] for g in opt.param_groups}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = {n: p.detach() for n, p in model.named_parameters()}
    vectors = [n for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad and "delays" not in n]
    assert any("beta" in n for n in vectors) and any("bias" in n for n in vectors)
    assert len(vectors) >= 4  # biases, decays, batch-norm weight and bias
    for n in ("linears.0.weight", "out.weight"):
        assert torch.allclose(after[n], before[n] - 0.1 * torch.sign(before[n]), atol=1e-5)
    if scope == "matrices":
        assert sorted(groups["weights_no_decay"]) == sorted(vectors)
        for n in vectors:
            assert torch.equal(after[n], before[n]), n
    else:
        assert "weights_no_decay" not in groups
        assert all(not torch.equal(after[n], before[n]) for n in vectors)


def test_weight_decay_scope_is_checked_and_reaches_the_cli(tmp_path):
    with pytest.raises(ValueError, match="weight_decay_scope: expected one of"):
        make_config("braille", overrides={"weight_decay_scope": "biases"})
    with pytest.raises(SystemExit):
        main(["train", "--weight-decay-scope", "none", "--out", str(tmp_path / "r")])
