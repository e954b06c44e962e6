"""The presets that are the published configurations (DelRec: SHD, SSC, PS-MNIST; EventProp with
delays: SHD, SSC, Braille, sequence detection) and the options they needed.

The expected values are written in the published code's own terms (DelRec's
``configs/perf_*.py``, deventprop's ``arguments.py`` and ``sequence_detection.py``, as listed in
docs/published_configs.rst) and converted here, so a preset that drifts from the published
number fails."""

from __future__ import annotations

import csv
import inspect
import math

import pytest
import torch

import snn_delays_ext as sde
from snn_delays_ext.data import random_channel_shift
from snn_delays_ext.train import PRESETS, RecurrentSNN, TrainConfig, build_model, make_config, readout_logits, train
from snn_delays_ext.train.engine import (_lr_schedules, _optimizer, _param_groups, _patience_over, _round_delays_,
                                         make_datasets)
from snn_delays_ext.train.export import _REDUCTIONS
from snn_delays_ext.train.models import _SequenceDropout
from snn_delays_ext.train.schedules import EpochSchedules, cosine_lr, onecycle_lr

from _train_helpers import QUICK

PUBLISHED = ["shd-delrec", "ssc-delrec", "psmnist-delrec", "shd-eventprop", "ssc-eventprop", "braille-eventprop",
             "braille-eventprop-1024", "sequence-eventprop"]
_LAYER_ARGS = inspect.signature(sde.DelayedRecurrentLeaky).parameters
needs_layer_options = pytest.mark.skipif(
    not {"recurrent_dropout", "learn_width"} <= set(_LAYER_ARGS),
    reason="DelayedRecurrentLeaky has no recurrent_dropout / learn_width yet")


def beta(tau: float) -> float:
    """SpikingJelly's LIFNode with ``decay_input=False``: ``v <- v (1 - 1/tau) + x``."""
    return 1.0 - 1.0 / tau


# ---------------------------------------------------------------------------------------------
# the published values, in the published code's names
# ---------------------------------------------------------------------------------------------
#: alexmaxad/DelRec configs/perf_SHD.py (+ src/SHD/snn.py, trainer.py, datasets.py)
DELREC_SHD = dict(hidden_layers=[256, 256], n_bins=5, time_step=10, tau=1.05, v_reset=0.0, detach_reset=True,
                  surrogate_alpha=5.0, use_batch_norm=True, init_recdel_offset=10, max_rec_delay=30,
                  use_sig_p=False, sigma_init=10.0, sigma_decay=0.95, recurrent_dropout=0.2, dropout=0.4,
                  lr_w=5e-3, lr_pos=5e-2, weight_decay=1e-5, optimizer_w="adamw", scheduler_w="onecycle",
                  scheduler_pos="cos", epochs=150, batch_size=256, val_split=0.2, init_ff_weights="kaiming",
                  no_delay_in_first_layer=True)
#: configs/perf_SSC.py (the fork copy) and alexmaxad/DelRec src/SSC
DELREC_SSC = dict(hidden_layers=[256, 256, 256], n_bins=5, time_window=250, max_time=1.4, tau=2.0, v_reset=None,
                  detach_reset=False, use_batch_norm=False, delay_std_init=12.0, use_sig_p=True, sigma_init=10.0,
                  sigma_decay=0.95, recurrent_dropout=0.3, dropout=0.1, lr_w=1e-3, lr_pos=5e-2, weight_decay=1e-5,
                  optimizer_w="adam", scheduler_w="onecycle", scheduler_pos="onecycle", epochs=100, batch_size=128)
#: alexmaxad/DelRec configs/perf_PSMNIST.py and src/datasets.py (train int(0.83 * 60000))
DELREC_PSMNIST = dict(hidden_layers=[64, 212, 212], tau=2.0, v_reset=None, detach_reset=False, use_batch_norm=False,
                      delay_std_init=12.0, use_sig_p=True, sigma_init=10.0, sigma_decay=0.95, recurrent_dropout=0.2,
                      dropout=0.1, lr_w=1e-3, lr_pos=5e-2, weight_decay=1e-2, optimizer_w="adamw",
                      scheduler_w="onecycle", scheduler_pos="onecycle", epochs=200, batch_size=256,
                      n_train=int(0.83 * 60000))
#: mbalazs98/deventprop arguments.py (shd_rec_arguments; MAX_DELAY_STEPS of the later version)
EP_SHD = dict(NUM_HIDDEN=512, NUM_LAYER=1, RECURRENT=True, INPUT_HIDDEN_MEAN=0.03, INPUT_HIDDEN_SD=0.01,
              RECURRENT_MEAN=0.0, RECURRENT_SD=0.02, HIDDEN_OUT_MEAN=0.0, HIDDEN_OUT_SD=0.03, FF_INIT=150,
              RECURRENT_INIT=0, LR=0.001 * 0.01, DT=1, DELAYS_LR=0.1, NUM_EPOCHS=500, K_REG=5e-11, BATCH_SIZE=256,
              AUGMENT_SHIFT=40, MAX_DELAY_STEPS=62)
#: ssc_ff_arguments
EP_SSC = dict(NUM_HIDDEN=1024, NUM_LAYER=2, RECURRENT=False, INPUT_HIDDEN_MEAN=0.03, INPUT_HIDDEN_SD=0.01,
              HIDDEN_HIDDEN_MEAN=0.02, HIDDEN_HIDDEN_SD=0.03, HIDDEN_OUT_MEAN=0.0, HIDDEN_OUT_SD=0.03, FF_INIT=50,
              LR=0.001 * 0.01, DT=1, DELAYS_LR=0.1, NUM_EPOCHS=500, K_REG=[5e-12, 5e-12], BATCH_SIZE=256,
              AUGMENT_SHIFT=40, MAX_DELAY_STEPS=62)
#: braille_ff_arguments
EP_BRAILLE = dict(NUM_LAYER=2, RECURRENT=False, INPUT_HIDDEN_MEAN=0.03, INPUT_HIDDEN_SD=0.01,
                  HIDDEN_HIDDEN_MEAN=0.02, HIDDEN_HIDDEN_SD=0.03, HIDDEN_OUT_MEAN=0.0, HIDDEN_OUT_SD=0.03, FF_INIT=0,
                  LR=0.0015 * 0.01, DT=1, DELAYS_LR=0.025, NUM_EPOCHS=500, K_REG=[1e-10, 1e-10], BATCH_SIZE=256)
#: sequence_detection.py
EP_SEQUENCE = dict(BATCH_SIZE=2, NUM_EPOCHS=200, DT=1.0, spike_times=(0, 10), tau_mem=10.0, tau_syn=5.0,
                   weight=1.0, delay_lr=1.0, weight_lr=0.0, max_delay_steps=15, n_examples=4)
#: EventProp's shared model.py / train.py: LIF tau_mem 20, Exponential(5) synapses, nu = 14,
#: early-stopping patience 15; the weights' ease-in ends at 100 x LR
EP_COMMON = dict(tau_mem=20.0, tau_syn=5.0, reg_nu_upper=14, patience=15, ease_in_factor=100)


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_presets_load_validate_and_say_so(name):
    assert name in PRESETS
    cfg = make_config(name)
    assert cfg.validate() is cfg
    from snn_delays_ext.train.config import preset_description

    text = preset_description(name)
    assert "published" in text and "Differs" in text  # says it is the published one, and how it differs


def test_delrec_shd_preset_is_the_published_configuration():
    p, cfg = DELREC_SHD, make_config("shd-delrec")
    d, a, m, s, o = cfg.data, cfg.augment, cfg.model, cfg.surrogate, cfg.optim
    assert (d.dataset, d.pool, d.dt, d.val_fraction) == ("shd", 700 // (700 // p["n_bins"]), p["time_step"] / 1000,
                                                          p["val_split"])
    assert m.name == "delrec" and m.hidden == p["hidden_layers"] and m.delay_type == "axonal"
    # DelRec's recurrent delay d is our lag 1 + d
    assert m.delay_init == "uniform" and m.delay_range == [p["init_recdel_offset"] + 1, p["max_rec_delay"] + 1]
    assert s.beta == pytest.approx(beta(p["tau"])) and s.beta_out == pytest.approx(beta(p["tau"]))
    assert (s.surrogate, s.surrogate_param) == ("atan", p["surrogate_alpha"])
    assert (s.reset_mechanism, s.reset_delay, s.detach_reset) == ("zero", False, p["detach_reset"])
    assert p["v_reset"] == 0.0 and s.reset_convention == "spikingjelly"
    assert s.batch_norm is p["use_batch_norm"] and s.learn_width is p["use_sig_p"]
    assert (s.dropout, s.dropout_placement, s.dropout_mask) == (p["dropout"], "spikes", "sequence")
    assert s.recurrent_dropout == p["recurrent_dropout"] and s.recurrent_init == "orthogonal"
    assert s.linear_init == p["init_ff_weights"] and s.first_layer_recurrent is not p["no_delay_in_first_layer"]
    assert m.readout == "li_softmax_sum"
    assert (o.optimizer, o.lr, o.delay_lr, o.weight_decay) == (p["optimizer_w"], p["lr_w"], p["lr_pos"],
                                                               p["weight_decay"])
    assert (o.lr_schedule, o.delay_lr_schedule) == (p["scheduler_w"], "cosine") and p["scheduler_pos"] == "cos"
    assert (o.epochs, o.batch_size, o.sigma0, o.sigma_decay) == (p["epochs"], p["batch_size"], p["sigma_init"],
                                                                 p["sigma_decay"])
    assert o.round_delays is True and a.repeat == 3  # DelRec's round_pos at every validation; tripled set


@pytest.mark.parametrize("name, p", [("ssc-delrec", DELREC_SSC), ("psmnist-delrec", DELREC_PSMNIST)])
def test_delrec_ssc_and_psmnist_presets_are_the_published_configurations(name, p):
    cfg = make_config(name)
    d, m, s, o = cfg.data, cfg.model, cfg.surrogate, cfg.optim
    assert m.name == "delrec" and m.hidden == p["hidden_layers"] and m.delay_type == "axonal"
    assert (m.delay_init, s.delay_std, m.readout) == ("half_normal", p["delay_std_init"], "sum")
    assert s.beta == pytest.approx(beta(p["tau"]))
    assert p["v_reset"] is None and (s.reset_mechanism, s.reset_delay, s.reset_convention) == (
        "subtract", False, "spikingjelly")
    assert s.detach_reset is p["detach_reset"] and s.batch_norm is p["use_batch_norm"]
    assert (s.surrogate, s.surrogate_param) == ("triangle", 1.0)
    assert s.learn_width is p["use_sig_p"] and s.recurrent_dropout == p["recurrent_dropout"]
    assert (s.dropout, s.dropout_placement, s.dropout_mask) == (p["dropout"], "current", "sequence")
    assert s.recurrent_init == "orthogonal" and s.linear_init == "default"
    assert (o.optimizer, o.lr, o.delay_lr, o.weight_decay) == (p["optimizer_w"], p["lr_w"], p["lr_pos"],
                                                               p["weight_decay"])
    assert (o.lr_schedule, o.delay_lr_schedule) == (p["scheduler_w"], p["scheduler_pos"])
    assert (o.epochs, o.batch_size, o.sigma0, o.sigma_decay) == (p["epochs"], p["batch_size"], p["sigma_init"],
                                                                 p["sigma_decay"])
    assert o.round_delays is True
    if name == "ssc-delrec":
        assert (d.pool, d.n_steps, d.duration) == (700 // 140, p["time_window"], p["max_time"])
    else:
        assert round(60000 * d.val_fraction) == 60000 - p["n_train"]


@pytest.mark.parametrize("name, p", [("shd-eventprop", EP_SHD), ("ssc-eventprop", EP_SSC),
                                     ("braille-eventprop", EP_BRAILLE), ("braille-eventprop-1024", EP_BRAILLE)])
def test_eventprop_presets_are_the_published_configurations(name, p):
    cfg = make_config(name)
    d, a, m, e, o = cfg.data, cfg.augment, cfg.model, cfg.eventprop, cfg.optim
    assert m.name == ("eventprop-rec" if p["RECURRENT"] else "eventprop-ff") and len(m.hidden) == p["NUM_LAYER"]
    if "NUM_HIDDEN" in p:
        assert m.hidden == [p["NUM_HIDDEN"]] * p["NUM_LAYER"]
    else:  # the 2 x 256 network is the stored configuration at 256 (its list of sizes), and 1024
        assert m.hidden == ([1024, 1024] if name.endswith("1024") else [256, 256])
    assert d.dt == p["DT"] / 1000 and (d.pool == 1 or d.dataset == "braille")
    assert (e.tau_mem, e.tau_syn, e.tau_out) == (EP_COMMON["tau_mem"], EP_COMMON["tau_syn"], None)
    assert e.init_input == [p["INPUT_HIDDEN_MEAN"], p["INPUT_HIDDEN_SD"]]
    assert e.init_output == [p["HIDDEN_OUT_MEAN"], p["HIDDEN_OUT_SD"]]
    if p["RECURRENT"]:
        assert e.init_recurrent == [p["RECURRENT_MEAN"], p["RECURRENT_SD"]]
        assert e.rec_delay_init == p["RECURRENT_INIT"] + 1  # their recurrent delay 0 is our lag 1
    else:
        assert e.init_hidden == [p["HIDDEN_HIDDEN_MEAN"], p["HIDDEN_HIDDEN_SD"]]
    k_reg = p["K_REG"] if not isinstance(p["K_REG"], list) else p["K_REG"][0]
    assert isinstance(p["K_REG"], float) or len(set(p["K_REG"])) == 1  # one strength for every layer
    assert (e.reg_strength, e.reg_target) == (k_reg, EP_COMMON["reg_nu_upper"])
    if p["FF_INIT"] == 0:
        assert m.delay_init == 0.0 and m.delay_range is None
    else:  # mlGeNN's Uniform(FF_INIT, 1.0): uniform between 1 and FF_INIT steps
        assert m.delay_init == "uniform" and m.delay_range == [1.0, float(p["FF_INIT"])]
    assert m.output_delays is False and m.readout == "li_shaped"
    assert m.max_delay == p.get("MAX_DELAY_STEPS", 62)
    assert o.lr == pytest.approx(p["LR"] * EP_COMMON["ease_in_factor"]) and o.lr_schedule == "none"
    assert (o.optimizer, o.delay_lr, o.weight_decay) == ("adam", p["DELAYS_LR"], 0.0)
    assert (o.epochs, o.batch_size, o.patience) == (p["NUM_EPOCHS"], p["BATCH_SIZE"], EP_COMMON["patience"])
    assert a.channel_shift == p.get("AUGMENT_SHIFT", 0)
    assert (a.blend > 0) == (name == "shd-eventprop")


def test_eventprop_sequence_preset_is_the_published_toy_task():
    p, cfg = EP_SEQUENCE, make_config("sequence-eventprop")
    d, m, e, o = cfg.data, cfg.model, cfg.eventprop, cfg.optim
    assert d.dataset == "sequence" and d.gap == p["spike_times"][1] - p["spike_times"][0]
    assert d.train_limit == p["n_examples"] and m.hidden == [] and m.name == "eventprop-ff"
    assert (m.max_delay, m.delay_init, m.readout) == (p["max_delay_steps"], 0.0, "li_max")
    assert (e.tau_mem, e.tau_syn, e.init_output) == (p["tau_mem"], p["tau_syn"], [p["weight"], 0.0])
    assert (o.lr, o.delay_lr, o.batch_size, o.epochs) == (p["weight_lr"], p["delay_lr"], p["BATCH_SIZE"],
                                                          p["NUM_EPOCHS"])
    net = build_model(m.name, 2, 2, cfg)
    assert torch.equal(net.out.weight, torch.ones(2, 2)) and torch.equal(net.out.delays, torch.zeros(2, 2))
    ds = make_datasets(cfg)[0]
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    assert len(ds) == p["n_examples"] and x.shape[1] == 26
    assert {tuple(torch.nonzero(x[i].sum(1)).flatten().tolist()) for i in range(len(ds))} == {p["spike_times"]}


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def _tiny_shd_delrec(**over):
    return make_config("shd-delrec", overrides={"hidden": [6, 5], "max_delay": 12, "delay_range": [2.0, 8.0], **over})


def test_delrec_shd_model_first_layer_has_no_recurrence():
    cfg = _tiny_shd_delrec(recurrent_dropout=0.0)
    net = build_model(cfg.model.name, 7, 3, cfg)
    first, second = net.recs
    assert not isinstance(first, sde.DelayedRecurrentLeaky) and isinstance(second, sde.DelayedRecurrentLeaky)
    assert not [n for n, _ in first.named_parameters()] and not hasattr(first, "recurrent")
    assert [m for m in sde.delay_layers(net)] == [second]
    rec_weights = [n for n, _ in net.named_parameters() if "recurrent" in n]
    assert rec_weights and all(n.startswith("recs.1.") for n in rec_weights)
    # the recurrent weights start orthogonal, the delays in the range, the same-step zero reset detached
    w = second.recurrent.weight.detach()
    assert torch.allclose(w @ w.T, torch.eye(5), atol=1e-5)
    assert bool(((second.delays >= 2.0) & (second.delays <= 8.0)).all())
    assert (second.reset_mechanism, second.reset_delay, second.detach_reset) == ("zero", False, True)
    with pytest.raises(ValueError, match="reset_convention: the plain first layer"):
        build_model("delrec", 7, 3, _tiny_shd_delrec(reset_mechanism="subtract"))


def test_delrec_shd_smoke_forward_backward_a_few_steps():
    torch.manual_seed(0)
    over = {} if "recurrent_dropout" in _LAYER_ARGS else {"recurrent_dropout": 0.0}
    cfg = _tiny_shd_delrec(**over)
    net = build_model(cfg.model.name, 7, 3, cfg).train()
    opt = _optimizer(net, cfg)
    x = (torch.rand(20, 4, 7) < 0.3).float()
    y = torch.tensor([0, 1, 2, 0])
    d0 = net.recs[1].delays.detach().clone()
    for _ in range(3):
        logits = net(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        assert net.recs[1].delays.grad is not None and bool(torch.isfinite(net.recs[1].delays.grad).all())
        opt.step()
        sde.clamp_delays_(net)
    assert torch.isfinite(loss) and not torch.equal(net.recs[1].delays.detach(), d0)
    # the logits are sum_t softmax(v_t) of the non-spiking readout: they sum to T per sample
    with torch.no_grad():
        assert torch.allclose(net.eval()(x).sum(1), torch.full((4,), 20.0), atol=1e-4)


@needs_layer_options
def test_learnable_width_goes_to_the_delay_group_and_learns():
    torch.manual_seed(0)
    cfg = make_config("ssc-delrec", overrides={"hidden": [8, 6], "max_delay": 10})
    net = build_model(cfg.model.name, 3, 2, cfg)
    widths = [m.width_logit for m in net.recs]
    assert all(w.shape == (n,) and torch.equal(w, torch.zeros(n)) for w, n in zip(widths, (8, 6)))
    groups = {g["name"]: g for g in _param_groups(net, cfg)}
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(widths) <= ids(groups["delays"]["params"]) and not ids(widths) & ids(groups["weights"]["params"])
    assert groups["delays"]["lr"] == cfg.optim.delay_lr and groups["delays"]["weight_decay"] == 0.0
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters() if p.requires_grad)
    sde.set_sigma(net, 3.0)
    with torch.no_grad():
        for lin in net.linears:
            lin.weight.abs_()  # every neuron driven: both layers fire
    logits, spikes = net(torch.rand(15, 2, 3) * 3, record=True)
    assert all(float(s.detach().sum()) > 0 for s in spikes)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(float(w.grad.abs().sum()) > 0 for w in widths)
    assert net.recs[0].recurrent_dropout == cfg.surrogate.recurrent_dropout


def test_sequence_dropout_keeps_one_mask_per_sequence():
    drop = _SequenceDropout(0.5).train()
    y = drop(torch.ones(30, 8, 16))
    kept = y[0] != 0
    assert torch.equal(y != 0, kept.expand_as(y)) and set(y.unique().tolist()) <= {0.0, 2.0}
    assert 0 < int(kept.sum()) < 8 * 16
    assert torch.equal(drop.eval()(torch.ones(3, 2, 2)), torch.ones(3, 2, 2))


def test_dropout_on_the_current_before_the_neurons():
    net = RecurrentSNN(3, [40], 2, max_delay=4, dropout=0.5, dropout_placement="current", dropout_mask="sequence",
                       beta=0.0, reset_delay=False, reset_mechanism="zero")
    seen = []
    net.recs[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    net.train()(torch.ones(5, 2, 3))
    cur = seen[0]
    dropped = cur == 0  # Linear outputs of exactly 0 only where dropped
    assert bool(dropped.any()) and torch.equal(dropped, dropped[:1].expand_as(dropped))
    with pytest.raises(ValueError, match="dropout_placement: expected one of"):
        RecurrentSNN(3, [4], 2, dropout_placement="input")


def test_softmax_sum_readout():
    cur = torch.randn(6, 3, 4)
    beta_out = beta(1.05)
    v = torch.zeros(3, 4)
    expected = torch.zeros(3, 4)
    for t in range(6):
        v = beta_out * v + cur[t]
        expected += torch.softmax(v, dim=-1)
    assert torch.allclose(readout_logits(cur, "li_softmax_sum", beta_out), expected, atol=1e-6)
    assert _REDUCTIONS["li_softmax_sum"] == "softmax_sum"


def test_kaiming_feed_forward_init():
    torch.manual_seed(0)
    net = RecurrentSNN(400, [300], 2, max_delay=4, linear_init="kaiming")
    w = net.linears[0].weight
    bound = math.sqrt(6.0 / 400)  # kaiming_uniform_ for ReLU
    assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.95 * bound


def test_eventprop_connection_inits_and_recurrent_delays():
    cfg = make_config("shd-eventprop", overrides={"hidden": [300]})
    torch.manual_seed(0)
    net = build_model(cfg.model.name, 700, 20, cfg)
    layer = net.layers[0]
    for w, (mean, std) in ((layer.weight, (0.03, 0.01)), (layer.rec_weight, (0.0, 0.02)),
                           (net.out.weight, (0.0, 0.03))):
        assert float(w.mean()) == pytest.approx(mean, abs=3e-3) and float(w.std()) == pytest.approx(std, rel=0.05)
    assert torch.equal(layer.rec_delays, torch.ones_like(layer.rec_delays))
    d = layer.delays
    assert float(d.min()) >= 1.0 and float(d.max()) == 62.0  # U(1, 150) clamped to the 62-step cap
    assert float((d == 62.0).float().mean()) == pytest.approx((150 - 62) / 149, abs=0.02)
    assert not net.out.delays.requires_grad
    cfg = make_config("ssc-eventprop", overrides={"hidden": [200, 100]})
    net = build_model(cfg.model.name, 700, 35, cfg)
    assert float(net.layers[1].weight.mean()) == pytest.approx(0.02, abs=5e-3)
    assert float(net.layers[0].delays.max()) <= 50.0
    with pytest.raises(ValueError, match="eventprop.init_recurrent: eventprop-ff has no recurrent connections"):
        build_model("eventprop-ff", 3, 2, make_config("ssc-eventprop", overrides={"init_recurrent": [0.0, 0.1]}))
    with pytest.raises(ValueError, match="eventprop.init_input: the EventProp options apply"):
        build_model("delrec", 3, 2, make_config("ssc-delrec", overrides={"init_input": [0.0, 0.1]}))


def test_recurrent_options_are_refused_by_the_feed_forward_and_eventprop_models():
    for key, value in (("recurrent_dropout", 0.2), ("learn_width", True), ("recurrent_init", "orthogonal"),
                       ("first_layer_recurrent", False)):
        with pytest.raises(ValueError, match=f"surrogate.{key}: the feed-forward models have no recurrent"):
            build_model("ff-delays", 2, 2, make_config("braille", overrides={key: value}))
        with pytest.raises(ValueError, match=f"surrogate.{key}: the EventProp models"):
            build_model("eventprop-ff", 2, 2, make_config("sequence-eventprop", overrides={key: value}))
    with pytest.raises(ValueError, match="surrogate.learn_width: the no-delay baseline"):
        build_model("rec-nodelay", 2, 2, make_config("ssc-delrec", overrides={"model": "rec-nodelay"}))


# ---------------------------------------------------------------------------------------------
# options: bad values are refused, naming the option
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, exc, match", [
    ("surrogate.recurrent_dropout", 1.0, ValueError, r"surrogate.recurrent_dropout: expected a probability in \[0, 1\)"),
    ("surrogate.recurrent_dropout", "0.2", TypeError, "surrogate.recurrent_dropout: expected a probability"),
    ("surrogate.learn_width", 1, TypeError, "surrogate.learn_width: expected True or False"),
    ("surrogate.first_layer_recurrent", "no", TypeError, "surrogate.first_layer_recurrent: expected True or False"),
    ("surrogate.recurrent_init", "xavier", ValueError, "surrogate.recurrent_init: expected one of"),
    ("surrogate.linear_init", "he", ValueError, "surrogate.linear_init: expected one of"),
    ("surrogate.dropout_placement", "input", ValueError, "surrogate.dropout_placement: expected one of"),
    ("surrogate.dropout_mask", "batch", ValueError, "surrogate.dropout_mask: expected one of"),
    ("surrogate.reset_convention", "norse", ValueError, "surrogate.reset_convention: expected one of"),
    ("model.readout", "softmax", ValueError, "model.readout: expected one of"),
    ("model.delay_range", [5.0, 2.0], ValueError, "model.delay_range: expected a delay range .* low <= high"),
    ("model.delay_range", [-1.0, 2.0], ValueError, "model.delay_range: .* first value >= 0"),
    ("model.delay_range", [1.0], TypeError, "model.delay_range: expected a delay range"),
    ("model.delay_range", ["a", 2], TypeError, "model.delay_range: expected a delay range"),
    ("model.delay_range", [1.0, math.inf], ValueError, "model.delay_range: expected finite numbers"),
    ("optim.lr_schedule", "step", ValueError, "optim.lr_schedule: expected one of"),
    ("optim.delay_lr_schedule", "cos", ValueError, "optim.delay_lr_schedule: expected one of"),
    ("optim.patience", 0, ValueError, "optim.patience: expected an int >= 1"),
    ("optim.patience", 2.5, TypeError, "optim.patience: expected an int"),
    ("optim.round_delays", "yes", TypeError, "optim.round_delays: expected True or False"),
    ("augment.channel_shift", -1, ValueError, "augment.channel_shift: expected an int >= 0"),
    ("augment.repeat", 0, ValueError, "augment.repeat: expected an int >= 1"),
    ("data.duration", 0.0, ValueError, "data.duration: expected a number in"),
    ("data.val_fraction", 1.0, ValueError, r"data.val_fraction: expected a fraction in \(0, 1\)"),
    ("eventprop.init_input", [0.0, -0.1], ValueError, "eventprop.init_input: .* second value >= 0"),
    ("eventprop.init_output", 0.03, TypeError, r"eventprop.init_output: expected \[mean, std\]"),
    ("eventprop.rec_delay_init", "zero", ValueError, "eventprop.rec_delay_init: expected 'uniform'"),
])
def test_new_options_refuse_bad_values(key, value, exc, match):
    with pytest.raises(exc, match=match):
        TrainConfig.from_dict({key: value}).validate()


def test_rules_between_the_new_options():
    with pytest.raises(ValueError, match="model.delay_range: a range is for delay_init 'uniform'"):
        make_config("ssc-delrec", overrides={"delay_range": [1.0, 5.0]})
    with pytest.raises(ValueError, match="data.val_fraction: only SHD and PS-MNIST"):
        make_config("ssc-delrec", overrides={"val_fraction": 0.2})
    with pytest.raises(ValueError, match="data.duration: applies to SHD and SSC"):
        make_config("braille", overrides={"duration": 1.0})
    with pytest.raises(ValueError, match="optim.patience: stopping early needs the validation accuracy"):
        make_config("shd-eventprop", overrides={"selection": "last"})
    with pytest.raises(ValueError, match="surrogate.reset_convention: 'spikingjelly' resets in the spike's own step"):
        make_config("ssc-delrec", overrides={"reset_delay": True})


# ---------------------------------------------------------------------------------------------
# schedules and the engine
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("epochs", [1, 2, 7, 150])
def test_onecycle_and_cosine_follow_torchs_schedulers(epochs):
    p, q = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    ref_w = torch.optim.AdamW([p], lr=5e-3)
    ref_d = torch.optim.AdamW([q], lr=5e-2)
    one = torch.optim.lr_scheduler.OneCycleLR(ref_w, max_lr=5e-3, total_steps=epochs)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(ref_d, T_max=epochs)
    ours = torch.optim.AdamW([{"params": [p], "lr": 5e-3, "name": "weights"},
                              {"params": [q], "lr": 5e-2, "name": "delays"}])
    sched = EpochSchedules(ours, {"weights": "onecycle", "delays": "cosine"}, epochs)
    for e in range(epochs):
        w, d = ours.param_groups
        assert w["lr"] == pytest.approx(ref_w.param_groups[0]["lr"], rel=1e-9, abs=1e-15), e
        assert w["betas"][0] == pytest.approx(ref_w.param_groups[0]["betas"][0], rel=1e-12), e
        assert d["lr"] == pytest.approx(ref_d.param_groups[0]["lr"], rel=1e-9, abs=1e-15), e
        assert d["betas"] == (0.9, 0.999)
        ref_w.step(), ref_d.step()
        one.step(), cos.step()
        sched.step()
    assert onecycle_lr(5e-3, 0, 10)[0] == pytest.approx(5e-3 / 25) and cosine_lr(1.0, 0, 3) == 1.0


def test_engine_schedules_rounding_patience_and_augmentation(tmp_path):
    cfg = make_config(overrides=dict(QUICK, model="delrec", hidden=[6], delay_type="axonal", delay_init="uniform",
                                     delay_range=[2.0, 4.0], max_delay=12, epochs=6, readout="li_softmax_sum",
                                     lr_schedule="onecycle", delay_lr_schedule="cosine", round_delays=True,
                                     patience=2, repeat=2, channel_shift=1, time_shift=1, blend=0.5,
                                     recurrent_init="orthogonal", dropout=0.2, dropout_mask="sequence"))
    seen = []

    def on_epoch_end(epoch, row):
        seen.append(epoch)

    res = train(cfg, tmp_path / "run", on_epoch_end=on_epoch_end, verbose=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert res["epochs_run"] == len(rows) == len(seen) <= 6
    assert res["n_train"] == 2 * 200  # the training samples twice per epoch
    for i, row in enumerate(rows):
        assert float(row["lr"]) == pytest.approx(onecycle_lr(cfg.optim.lr, i, 6)[0])
        assert float(row["delay_lr"]) == pytest.approx(cosine_lr(cfg.optim.delay_lr, i, 6))
    if len(rows) < 6:  # stopped early: the patience ran out after the best epoch
        assert len(rows) - res["best_epoch"] == 2
    # the delays were rounded after each epoch (kept so in the selected model)
    import snn_delays_ext.train as T

    model, _, _ = T.load_run_model(tmp_path / "run")
    d = model.recs[0].delays
    assert torch.equal(d, d.round())


def test_patience_counts_epochs_since_the_best():
    cfg = make_config(overrides={"patience": 3})
    assert not _patience_over(cfg, 4, {"epoch": 2}) and _patience_over(cfg, 5, {"epoch": 2})
    assert not _patience_over(cfg, 3, {"epoch": -1})  # nothing selected yet
    assert not _patience_over(make_config(), 100, {"epoch": 1})  # no patience: never


def test_round_delays_keeps_the_width():
    net = torch.nn.Sequential(sde.DelayedRecurrentLeaky(0.5, 4, 10, delay_init=torch.tensor([1.2, 2.5, 3.7, 9.9])))
    sde.set_sigma(net, 2.5)
    _round_delays_(net)
    assert net[0].delays.tolist() == [1.0, 3.0, 4.0, 10.0] and net[0].sigma == 2.5


def test_lr_schedules_none_and_old_checkpoints():
    cfg = make_config("sequence-eventprop")
    net = build_model(cfg.model.name, 2, 2, cfg)
    assert _lr_schedules(_optimizer(net, cfg), cfg) is None
    cfg = make_config("braille", overrides={"hidden": [4]})
    opt = _optimizer(build_model(cfg.model.name, 24, 27, cfg), cfg)
    s = _lr_schedules(opt, cfg)
    s.load_state_dict({"last_epoch": 3, "T_max": cfg.optim.epochs})  # a CosineAnnealingLR state of an older run
    assert s.epoch == 3 and opt.param_groups[0]["lr"] == pytest.approx(cosine_lr(cfg.optim.lr, 3, cfg.optim.epochs))
    with pytest.raises(ValueError, match="state: expected EpochSchedules.state_dict"):
        s.load_state_dict({"foo": 1})


def test_random_channel_shift():
    x = torch.zeros(3, 50, 9)
    x[:, :, 4] = 1.0
    y = random_channel_shift(x, 2, generator=torch.Generator().manual_seed(0))
    pos = y[0].argmax(1)
    assert bool(((pos >= 2) & (pos <= 6)).all()) and len(set(pos.tolist())) == 5
    assert torch.equal(y[0], y[2])  # one shift per sample, the same at every step
    assert torch.equal(random_channel_shift(x, 0), x)
    z = random_channel_shift(torch.ones(2, 40, 5), 4)
    assert bool((z.sum((0, 2)) <= 10).all()) and bool((z.sum((0, 2)) >= 2).all())  # channels shifted out are lost
    with pytest.raises(ValueError, match="max_shift: expected an int >= 0"):
        random_channel_shift(x, -1)
    with pytest.raises(ValueError, match=r"x: expected a \(T, B, F\) tensor"):
        random_channel_shift(torch.zeros(3, 4), 1)


def test_psmnist_validation_fraction(shared_data):
    if not (shared_data / "mnist").is_dir():
        pytest.skip("no MNIST files in the shared data folder")
    cfg = make_config("psmnist-delrec", overrides={"data_dir": str(shared_data / "mnist")})
    tr, va, te, n_in, n_classes = make_datasets(cfg)
    n_train = DELREC_PSMNIST["n_train"]
    assert (len(tr), len(va), n_in, n_classes) == (n_train, 60000 - n_train, 1, 10)


def test_set_none_on_the_command_line(capsys):
    import json

    from snn_delays_ext.train.cli import main

    assert main(["train", "--preset", "shd-delrec", "--set", "optim.delay_lr_schedule=none", "--set",
                 "optim.lr_schedule=none", "--set", "data.val_fraction=none", "--print-config"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert (c["optim"]["lr_schedule"], c["optim"]["delay_lr_schedule"]) == ("none", "none")
    assert c["data"]["val_fraction"] is None  # back to the default split
    assert main(["train", "--preset", "ssc-delrec", "--set", "optim.delay_lr_schedule=same", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["optim"]["delay_lr_schedule"] == "same"
