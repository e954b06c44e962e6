"""Heterogeneous initial membrane decays (``beta_range``) of the feed-forward presets."""

from __future__ import annotations

import pytest
import torch

from snn_delays_ext.train import FeedForwardSNN, build_model, make_config
from snn_delays_ext.train.cli import build_parser


def test_each_hidden_neuron_leaks_with_its_own_decay_hand_computed():
    # constant input 0.3, threshold 1, subtractive reset:
    # decay 0.5 -> 0.3, 0.45, 0.525, ... tends to 0.6: never fires
    # decay 1.0 -> 0.3, 0.6, 0.9, 1.2 (spike), 0.5, 0.8, 1.1 (spike): steps 3 and 6
    net = FeedForwardSNN(1, [2], 1, max_delay=1, delays=False, beta_range=(0.0, 1.0))
    with torch.no_grad():
        net.linears[0].weight.fill_(0.3)
        net.linears[0].bias.zero_()
        net.lifs[0].beta.copy_(torch.tensor([0.5, 1.0]))
    _, spikes = net(torch.ones(7, 1, 1), record=True)
    assert spikes[0][:, 0, 0].tolist() == [0.0] * 7
    assert spikes[0][:, 0, 1].tolist() == [0, 0, 0, 1, 0, 0, 1]


def test_decays_are_drawn_uniformly_in_the_range_and_fixed_by_the_seed():
    torch.manual_seed(0)
    net = FeedForwardSNN(2, [4000, 3], 2, max_delay=2, beta_range=(0.6, 0.9))
    b = net.lifs[0].beta
    assert b.shape == (4000,) and float(b.min()) >= 0.6 and float(b.max()) < 0.9
    # uniform on [0.6, 0.9): mean 0.75, standard deviation 0.3 / sqrt(12) = 0.0866
    assert abs(float(b.mean()) - 0.75) < 0.01 and abs(float(b.std()) - 0.0866) < 0.005
    assert float((b < 0.675).float().mean()) == pytest.approx(0.25, abs=0.03)
    torch.manual_seed(0)
    again = FeedForwardSNN(2, [4000, 3], 2, max_delay=2, beta_range=(0.6, 0.9))
    assert torch.equal(again.lifs[0].beta, b) and torch.equal(again.lifs[1].beta, net.lifs[1].beta)


def test_fixed_decays_are_buffers_learned_ones_parameters():
    fixed = FeedForwardSNN(3, [5], 2, max_delay=3, beta_range=(0.5, 0.95))
    assert "lifs.0.beta" in dict(fixed.named_buffers())
    assert "lifs.0.beta" not in dict(fixed.named_parameters())
    learned = FeedForwardSNN(3, [5], 2, max_delay=3, beta_range=(0.5, 0.95), learn_beta=True)
    beta = dict(learned.named_parameters())["lifs.0.beta"]
    x = (torch.rand(12, 4, 3) < 0.5).float() * 2
    learned(x).square().sum().backward()
    assert beta.grad is not None and beta.grad.abs().sum() > 0
    # the drawn decays travel with the state dict: a model built with another seed then agrees
    torch.manual_seed(1)
    other = FeedForwardSNN(3, [5], 2, max_delay=3, beta_range=(0.5, 0.95))
    assert not torch.equal(other.lifs[0].beta, fixed.lifs[0].beta)
    other.load_state_dict(fixed.state_dict())
    assert torch.equal(other(x), fixed(x))


def test_sigmoid_parametrisation_starts_at_the_drawn_decays():
    torch.manual_seed(3)
    clamp = FeedForwardSNN(3, [6], 2, max_delay=3, beta_range=(0.5, 0.95), learn_beta=True)
    torch.manual_seed(3)
    logit = FeedForwardSNN(3, [6], 2, max_delay=3, beta_range=(0.5, 0.95), learn_beta=True,
                           beta_parametrization="sigmoid")
    assert torch.allclose(logit.lifs[0].beta, clamp.lifs[0].beta, atol=1e-6)
    with pytest.raises(ValueError, match=r"beta_range: expected \(low, high\) with 0 < low < high < 1"):
        FeedForwardSNN(3, [6], 2, beta_range=(0.0, 0.9), learn_beta=True, beta_parametrization="sigmoid")


@pytest.mark.parametrize("bad, err, msg", [
    ((0.9, 0.5), ValueError, r"0 <= low < high <= 1, got \(0.9, 0.5\)"),
    ((0.5, 1.5), ValueError, r"0 <= low < high <= 1"),
    ((-0.1, 0.5), ValueError, r"0 <= low < high <= 1"),
    ((0.5, float("nan")), ValueError, r"0 <= low < high <= 1"),
    ((0.5,), TypeError, r"expected a pair \(low, high\)"),
    ("0.5,0.9", TypeError, r"expected a pair \(low, high\)"),
    ((0.5, "x"), TypeError, r"expected two numbers"),
    ((True, 0.5), TypeError, r"expected two numbers"),
])
def test_bad_ranges_are_refused_by_the_module_and_the_config(bad, err, msg):
    with pytest.raises(err, match="^beta_range: .*" + msg):
        FeedForwardSNN(3, [4], 2, beta_range=bad)
    with pytest.raises(err, match="^beta_range: .*" + msg):
        make_config("braille", overrides={"beta_range": bad})


def test_flag_reaches_the_config_and_other_models_refuse_it():
    args = build_parser().parse_args(["train", "--preset", "braille", "--beta-range", "0.5,0.98"])
    assert args.beta_range == [0.5, 0.98]
    for bad in ("0.5", "0.5,x", "0.1,0.2,0.3"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--beta-range", bad])
    cfg = make_config("braille", overrides={"beta_range": (0.5, 0.98), "hidden": [7, 5]})
    assert cfg.beta_range == [0.5, 0.98] and make_config("braille").beta_range is None
    model = build_model(cfg.model, 24, 27, cfg)
    for lif in model.lifs:
        b = lif.beta.detach()
        assert float(b.min()) >= 0.5 and float(b.max()) < 0.98
    for preset in ("shd-delrec", "sequence-eventprop"):
        cfg = make_config(preset, overrides={"beta_range": [0.5, 0.9], "hidden": [4]})
        with pytest.raises(ValueError, match="beta_range: the"):
            build_model(cfg.model, 10, 3, cfg)
