"""Adaptive-threshold LIF neurons (``neuron="alif"``) of the feed-forward presets."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from snntorch import surrogate

from snn_delays_ext.train import AdaptiveLeaky, FeedForwardSNN, build_model, make_config
from snn_delays_ext.train.cli import build_parser


def test_threshold_rises_with_each_spike_and_decays_back_hand_computed():
    # beta 0.5, rho 0.8, b 5, constant input 0.7:
    # t0: mem 0.7                      a 0      thr 1      no spike
    # t1: mem 0.35 + 0.7 = 1.05        a 0      thr 1      spike
    # t2: mem 0.525 + 0.7 - 1 = 0.225  a 0.2    thr 2      no spike
    # t3: mem 0.1125 + 0.7 = 0.8125    a 0.16   thr 1.8    no spike
    # t4: mem 0.40625 + 0.7 = 1.10625  a 0.128  thr 1.64   no spike
    # after the reset the membrane is 1.4 - 1.175 * 0.5^(t-2) and the threshold 1 + 0.2 * 5 * 0.8^(t-2):
    # t = 6: 1.3266 < 1.4096, t = 7: 1.3633 > 1.3277, so the next spike is at t = 7
    alif = AdaptiveLeaky(1, beta=0.5, adapt_decay=0.8, adapt_strength=5.0, spike_grad=surrogate.atan())
    spk, thr = alif(torch.full((9, 1, 1), 0.7), return_threshold=True)
    assert spk.flatten().tolist() == [0, 1, 0, 0, 0, 0, 0, 1, 0]
    assert thr.flatten()[:5].tolist() == pytest.approx([1.0, 1.0, 2.0, 1.8, 1.64])
    assert thr.flatten()[5:8].tolist() == pytest.approx([1 + 0.2 * 0.8 ** k * 5 for k in (3, 4, 5)])


def test_without_adaptation_it_is_snntorch_leaky_values_and_gradients():
    torch.manual_seed(0)
    beta = torch.rand(12) * 0.5 + 0.45
    x = torch.randn(25, 3, 12) * 0.8 + 0.3
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    alif = AdaptiveLeaky(12, beta=beta, adapt_decay=0.9, adapt_strength=0.0, spike_grad=surrogate.atan(),
                         learn_beta=True)
    lif = snn.Leaky(beta=beta.clone(), learn_beta=True, spike_grad=surrogate.atan())
    ours = alif(x1)
    mem, ref = lif.init_leaky(), []
    for c in x2.unbind(0):
        s, mem = lif(c, mem)
        ref.append(s)
    ref = torch.stack(ref)
    assert torch.equal(ours, ref) and 0 < float(ref.detach().mean()) < 1
    w = torch.randn_like(ref)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    assert torch.allclose(x1.grad, x2.grad, atol=1e-6)
    assert torch.allclose(alif.beta.grad, lif.beta.grad, atol=1e-5)


def test_adaptation_lowers_the_rate_of_a_driven_neuron_and_gets_gradients():
    x = torch.full((200, 1, 1), 0.4)
    rates = []
    for b in (0.0, 1.0, 4.0):
        a = AdaptiveLeaky(1, beta=0.9, adapt_decay=0.95, adapt_strength=b, spike_grad=surrogate.atan())
        rates.append(float(a(x).mean()))
    assert rates[0] > rates[1] > rates[2] > 0
    net = FeedForwardSNN(4, [6], 2, max_delay=3, neuron="alif", adapt_strength=1.0, learn_beta=True)
    out = net((torch.rand(15, 2, 4) < 0.5).float() * 3)
    out.square().sum().backward()
    assert net.lifs[0].beta.grad is not None and net.linears[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, err, msg", [
    (dict(adapt_decay=1.5), ValueError, r"adapt_decay: expected a number in \[0, 1\], got 1.5"),
    (dict(adapt_decay="x"), TypeError, r"adapt_decay: expected a number, got str"),
    (dict(adapt_strength=-1.0), ValueError, r"adapt_strength: expected a finite float >= 0, got -1.0"),
    (dict(adapt_strength=float("inf")), ValueError, r"adapt_strength: expected a finite float >= 0"),
    (dict(beta=torch.ones(3)), ValueError, r"beta: expected a number or a tensor of shape \(4,\), got shape \(3,\)"),
])
def test_bad_arguments_are_named(kwargs, err, msg):
    args = dict(beta=0.9, adapt_decay=0.9, adapt_strength=1.0, spike_grad=surrogate.atan())
    args.update(kwargs)
    with pytest.raises(err, match=msg):
        AdaptiveLeaky(4, **args)
    with pytest.raises(ValueError, match=r"cur: expected a \(T, B, 4\) current, got shape \(5, 3\)"):
        AdaptiveLeaky(4, 0.9, 0.9, 1.0, surrogate.atan())(torch.zeros(5, 3))


def test_options_reach_the_model_and_other_models_refuse_them():
    args = build_parser().parse_args(["train", "--preset", "braille", "--neuron", "alif", "--adapt-decay", "0.95",
                                      "--adapt-strength", "2"])
    assert (args.neuron, args.adapt_decay, args.adapt_strength) == ("alif", 0.95, 2.0)
    cfg = make_config("braille", overrides={"neuron": "alif", "adapt_decay": 0.95, "adapt_strength": 2.0,
                                            "hidden": [7, 5]})
    model = build_model(cfg.model, 24, 27, cfg)
    assert all(isinstance(m, AdaptiveLeaky) and m.adapt_decay == 0.95 and m.adapt_strength == 2.0
               for m in model.lifs)
    assert all(isinstance(m.beta, torch.nn.Parameter) for m in model.lifs)  # the preset learns decays
    assert make_config("braille").neuron == "lif"
    with pytest.raises(ValueError, match=r"neuron: expected one of \['lif', 'alif'\], got 'adex'"):
        make_config("braille", overrides={"neuron": "adex"})
    with pytest.raises(ValueError, match=r"neuron: expected one of"):
        FeedForwardSNN(3, [4], 2, neuron="adex")
    with pytest.raises(ValueError, match="adapt_decay: expected a number in"):
        make_config("braille", overrides={"adapt_decay": 2.0})
    for where in (lambda: make_config("braille", overrides={"neuron": "alif", "learn_threshold": True}),
                  lambda: FeedForwardSNN(3, [4], 2, neuron="alif", learn_threshold=True)):
        with pytest.raises(ValueError, match="learn_threshold: the adaptive neurons"):
            where()
    for preset in ("shd-delrec", "sequence-eventprop"):
        cfg = make_config(preset, overrides={"neuron": "alif", "hidden": [4]})
        with pytest.raises(ValueError, match="neuron: the"):
            build_model(cfg.model, 10, 3, cfg)
