"""Training engine and CLI: embedded default end to end, resume, plots, configs, bad values."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snn_delays_ext.train import (PRESETS, TrainConfig, available_models, build_model, make_config,
                                  plot_run, register_model, train)
from snn_delays_ext.train.cli import main

from _train_helpers import QUICK as _QUICK

REPO = Path(__file__).resolve().parents[1]
QUICK = {**_QUICK, "epochs": 4}


def test_cli_default_end_to_end(tmp_path, capsys):
    """`snn-delays train` with no arguments (plus a run folder): accuracy, checkpoint, CSV."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and "rounded" in text
    res = json.loads((out / "results.json").read_text())
    assert res["test_acc"] > 0.9 and res["test_acc_rounded"] > 0.9  # chance is 0.5
    assert (out / "checkpoint.pt").is_file() and (out / "model_best.pt").is_file()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == PRESETS["default"]["optim"]["epochs"]
    assert {"train_loss", "val_acc", "sigma", "epoch_time_s"} <= set(rows[0])
    # the width schedule ran and the best epoch was chosen on validation accuracy
    assert float(rows[0]["sigma"]) == pytest.approx(PRESETS["default"]["optim"]["sigma0"])
    assert float(rows[-1]["sigma"]) < float(rows[0]["sigma"])
    val = [float(r["val_acc"]) for r in rows]
    assert res["best_epoch"] == val.index(max(val)) + 1
    # the delays moved away from their (useless) start at 0
    final = torch.load(out / "delays_final.pt")["out"]
    assert final.max() > 3.0


def test_no_delay_baseline_fails_where_delays_succeed(tmp_path):
    """The default task needs the delays: the same network without them stays well below 100%."""
    res = train(make_config(overrides={**QUICK, "model": "ff-nodelay", "train_limit": None, "eval_limit": None}),
                run_dir=tmp_path, verbose=False)
    assert res["test_acc"] < 0.9


def _flushes() -> bool:
    """Whether denormal floats are flushed to zero right now (PyTorch's documented check)."""
    return torch.tensor([1e-323], dtype=torch.float64).item() == 0.0


@pytest.mark.parametrize("flush", [True, False])
def test_denormals_flushed_during_training_only(tmp_path, flush):
    """Learned decays near 0 fill the backward pass with denormal products (an x86 CPU runs
    them many times slower); training flushes them, and leaves the process as it found it."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    seen = []
    cfg = make_config(overrides={**_QUICK, "epochs": 2, "flush_denormal": flush})
    train(cfg, run_dir=tmp_path, verbose=False, on_epoch_end=lambda e, m: seen.append(_flushes()))
    assert seen == [flush, flush]
    assert not _flushes()


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_resume_after_interruption_gives_same_weights(tmp_path, train_killed_then_resumed):
    train_killed_then_resumed(make_config(overrides=QUICK), tmp_path, kill_after=2)
    a, b = _weights(tmp_path / "full" / "checkpoint.pt"), _weights(tmp_path / "cut" / "checkpoint.pt")
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert ra["test_acc"] == rb["test_acc"] and ra["best_epoch"] == rb["best_epoch"]
    assert len(list(csv.DictReader(open(tmp_path / "cut" / "metrics.csv")))) == 4
    # plots from the resumed run
    pngs = plot_run(tmp_path / "cut")
    names = {p.name for p in pngs}
    assert {"learning_curves.png", "delays_out.png", "raster.png"} <= names
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_blend_sees_each_training_batch_with_its_labels(tmp_path, monkeypatch):
    """The engine blends training batches only, passing each batch's own labels: every blended
    batch's labels are the targets the loss is computed on, and validation is never blended."""
    from snn_delays_ext.data import random_blend
    from snn_delays_ext.train import engine

    calls = []

    def spy(x, labels, p, **kw):
        calls.append((x.shape[1], labels.clone(), p))
        return random_blend(x, labels, p, **kw)

    monkeypatch.setattr(engine, "random_blend", spy)
    cfg = make_config(overrides={**_QUICK, "epochs": 2, "augment.blend": 0.5})
    train(cfg, run_dir=tmp_path, verbose=False)
    n_train = sum(b for b, _, _ in calls)
    assert len(calls) > 0 and all(p == 0.5 for _, _, p in calls)
    assert all(len(lab) == b and not lab.is_floating_point() for b, lab, _ in calls)
    assert n_train == 2 * 200  # two epochs of the 200 training samples; validation is not blended


def test_plot_cli_and_bad_run_dir(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_separate_delay_learning_rate_and_clamp(tmp_path):
    """Delay lr 0 keeps the delays; weight lr 0 keeps the weights; delays stay in range."""
    cfg = make_config(overrides={**QUICK, "epochs": 1, "delay_lr": 0.0})
    train(cfg, run_dir=tmp_path / "a", verbose=False)
    init = torch.load(tmp_path / "a" / "delays_init.pt")["out"]
    w = _weights(tmp_path / "a" / "checkpoint.pt")
    assert torch.equal(w["out.delays"], init)
    cfg = make_config(overrides={**QUICK, "epochs": 1, "lr": 0.0})
    train(cfg, run_dir=tmp_path / "b", verbose=False)
    torch.manual_seed(cfg.run.seed)  # same seed -> same initial weights
    w0 = build_model("ff-delays", 2, 2, cfg).state_dict()
    w = _weights(tmp_path / "b" / "checkpoint.pt")
    assert torch.equal(w["out.weight"], w0["out.weight"])
    assert not torch.equal(w["out.delays"], w0["out.delays"])
    assert float(w["out.delays"].min()) >= 0.0 and float(w["out.delays"].max()) <= cfg.model.max_delay


def test_config_files_and_precedence(tmp_path):
    (tmp_path / "c.toml").write_text('preset = "yinyang"\n[optim]\nepochs = 3\n')
    cfg = make_config(config_file=tmp_path / "c.toml", overrides={"lr": 0.5})
    assert cfg.data.dataset == "yinyang" and cfg.model.hidden == [30] and cfg.optim.epochs == 3
    assert cfg.optim.lr == 0.5
    # JSON, the former one-table layout and short names; later layers win
    (tmp_path / "c.json").write_text(json.dumps({"train": {"dataset": "sequence", "hidden": [4], "epochs": 2}}))
    cfg = make_config(config_file=tmp_path / "c.json", overrides={"optim.epochs": 5})
    assert cfg.model.hidden == [4] and cfg.optim.epochs == 5
    (tmp_path / "bad.json").write_text(json.dumps({"epoch": 2}))
    with pytest.raises(ValueError, match="unknown option 'epoch'"):
        make_config(config_file=tmp_path / "bad.json")
    (tmp_path / "bad.toml").write_text("[optim]\nepoch = 2\n")
    with pytest.raises(ValueError, match="unknown option 'optim.epoch'"):
        make_config(config_file=tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("[optim\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        make_config(config_file=tmp_path / "broken.toml")
    with pytest.raises(ValueError, match="expected a .json"):
        (tmp_path / "c.ini").write_text("x")
        make_config(config_file=tmp_path / "c.ini")


def test_a_config_round_trips_through_its_dict_and_old_run_folders_load():
    cfg = make_config("braille", overrides={"data_dir": "x", "seed": 3})
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).validate()
    assert again == cfg
    # a run folder written before the sections: flat keys, removed options at their defaults
    old = {"dataset": "sequence", "model": "ff-delays", "hidden": [], "epochs": 2, "lr": 0.01, "ema": 0.0,
           "label_smoothing": 0.0, "neuron": "lif", "learn_threshold": False, "beta_range": None}
    cfg = TrainConfig.from_dict(old).validate()
    assert cfg.model.name == "ff-delays" and cfg.optim.epochs == 2
    with pytest.raises(ValueError, match="'ema' was removed"):
        TrainConfig.from_dict(dict(old, ema=0.99))


@pytest.mark.parametrize("key, value, exc, words", [
    ("epochs", 0, ValueError, "optim.epochs: expected an int >= 1, got 0"),
    ("epochs", 2.5, TypeError, "optim.epochs: expected an int"),
    ("lr", -1.0, ValueError, "optim.lr: expected a number in [0, inf]"),
    ("delay_lr", float("nan"), ValueError, "optim.delay_lr"),
    ("dataset", "mnist", ValueError, "data.dataset: expected one of"),
    ("model", "transformer", ValueError, "model.name: expected one of"),
    ("hidden", [0], ValueError, "model.hidden: expected a list"),
    ("beta", 1.5, ValueError, "surrogate.beta: expected a number in [0, 1]"),
    ("optim.sigma_decay", 0.0, ValueError, "optim.sigma_decay"),
    ("delay_init", "random", ValueError, "model.delay_init"),
    ("readout", "spikes", ValueError, "model.readout: expected one of"),
    ("readout", "li_softmax", ValueError, "model.readout: expected one of"),
    ("dropout", 1.0, ValueError, "surrogate.dropout: expected a probability in [0, 1)"),
    ("dropout", -0.1, ValueError, "surrogate.dropout"),
    ("surrogate", "sigmoid", ValueError, "surrogate.surrogate: expected one of"),
    ("surrogate_param", 0.0, ValueError, "surrogate.surrogate_param: expected a number in (0, inf]"),
    ("surrogate_param", "2", TypeError, "surrogate.surrogate_param: expected a number"),
    ("flush_denormal", 1, TypeError, "run.flush_denormal: expected True or False"),
    ("optim.nothing", 1, ValueError, "config: unknown option 'optim.nothing'"),
    ("learning_rate", 1, ValueError, "config: unknown option 'learning_rate'"),
    ("blend", 1.5, ValueError, "augment.blend: expected a probability in [0, 1]"),
    ("time_stretch", 0.1, ValueError, "config: 'time_stretch' was removed"),
    ("label_smoothing", 0.1, ValueError, "config: 'label_smoothing' was removed"),
])
def test_bad_config_values(key, value, exc, words):
    with pytest.raises(exc) as e:
        make_config(overrides={key: value})
    assert words in str(e.value)


def test_bad_values_through_cli(tmp_path, capsys):
    assert main(["train", "--epochs", "-3", "--out", str(tmp_path)]) == 2
    assert "optim.epochs: expected an int >= 1, got -3" in capsys.readouterr().err
    assert main(["train", "--dataset", "braille", "--out", str(tmp_path)]) == 2
    assert "data_dir" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert main(["train", "--device", "cuda:0", "--out", str(tmp_path), "--epochs", "1"]) == (
        2 if not torch.cuda.is_available() else 0)


def test_model_registry_and_presets():
    cfg = make_config(overrides={"hidden": [8, 8], "max_delay": 5})
    for name in ("ff-delays", "ff-nodelay", "delrec", "rec-nodelay"):
        net = build_model(name, 3, 4, cfg)
        assert net(torch.rand(12, 2, 3)).shape == (2, 4)
        logits, spikes = net(torch.rand(12, 2, 3), record=True)
        assert [s.shape for s in spikes] == [(12, 2, 8), (12, 2, 8)]
    register_model("test-readout-only", lambda n_in, n_out, c: torch.nn.Sequential(), "x", overwrite=True)
    assert "test-readout-only" in available_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model("ff-delays", lambda *a: None)
    for name, values in PRESETS.items():  # every paper preset is a valid config
        TrainConfig.from_dict(dict(values)).validate()
        assert make_config(name).model.name == values["model"]["name"]


@pytest.mark.parametrize("name", ["ff-delays", "delrec"])
def test_dropout_acts_in_training_only(name):
    cfg = make_config(overrides={"hidden": [16, 16], "max_delay": 3, "dropout": 0.5})
    torch.manual_seed(0)
    net = build_model(name, 4, 3, cfg)
    x = (torch.rand(20, 8, 4) < 0.5).float() * 3.0
    net.eval()
    a, b = net(x), net(x)
    assert torch.equal(a, b)  # evaluation: deterministic
    net.train()
    c, d = net(x), net(x)
    assert not torch.equal(c, d)  # training: a new mask each call
    # the mask sits between layers, not on the recorded spikes: the first layer's spikes are
    # those of the evaluation pass
    _, s_train = net(x, record=True)
    net.eval()
    _, s_eval = net(x, record=True)
    assert torch.equal(s_train[0], s_eval[0])
    assert not torch.equal(s_train[1], s_eval[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_dropout_is_bernoulli_dropout(dtype):
    # the CPU mask of the models' per-element dropout (rand >= p, faster than nn.Dropout's
    # bernoulli_): the same law as torch.nn.Dropout, checked against its definition
    from snn_delays_ext.train.models import _dropout

    p = 0.3
    drop = _dropout(p)
    assert isinstance(drop, torch.nn.Dropout)  # NIR export skips it like nn.Dropout
    x = torch.full((200_000,), 2.0, dtype=dtype, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.double().mean().item() - (1 - p)) < 0.005  # binomial sd ~0.001
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.to(dtype) / (1 - p))  # the gradient is the mask
    drop.eval()
    assert torch.equal(drop(x), x)
    assert drop(torch.ones(3, device="meta")).device.type == "meta"


@pytest.mark.parametrize("p, exc", [(1.0, ValueError), (-0.1, ValueError), ("0.2", TypeError)])
def test_model_dropout_bad_values(p, exc):
    from snn_delays_ext.train import FeedForwardSNN, RecurrentSNN

    for cls in (FeedForwardSNN, RecurrentSNN):
        with pytest.raises(exc, match="dropout: expected"):
            cls(2, [3], 2, dropout=p)


def test_learn_beta_gives_one_trained_decay_per_hidden_neuron():
    cfg = make_config(overrides={"hidden": [6, 5], "max_delay": 3, "learn_beta": True, "beta": 0.8})
    torch.manual_seed(0)
    net = build_model("ff-delays", 4, 3, cfg)
    betas = [lif.beta for lif in net.lifs]
    assert [tuple(b.shape) for b in betas] == [(6,), (5,)]
    assert all(isinstance(b, torch.nn.Parameter) and torch.all(b == 0.8) for b in betas)
    x = (torch.rand(20, 8, 4) < 0.5).float() * 3.0
    net(x).square().sum().backward()
    assert all(b.grad is not None and b.grad.abs().sum() > 0 for b in betas)
    # with the default, beta is a fixed scalar, as before
    net = build_model("ff-delays", 4, 3, make_config(overrides={"hidden": [6]}))
    assert not any(n.endswith("beta") for n, _ in net.named_parameters())
    with pytest.raises(TypeError, match="surrogate.learn_beta: expected True or False"):
        make_config(overrides={"learn_beta": "yes"})
    with pytest.raises(TypeError, match="model.output_delays: expected True or False"):
        make_config(overrides={"output_delays": 1})


def test_rec_nodelay_matches_snntorch_rleaky():
    """The recurrent baseline (all lags 1, fixed) is exactly snnTorch's RLeaky."""
    import snntorch as snn

    cfg = make_config(overrides={"hidden": [6], "max_delay": 4, "surrogate": "atan", "beta": 0.8})
    torch.manual_seed(1)
    net = build_model("rec-nodelay", 3, 2, cfg)
    rl = snn.RLeaky(beta=0.8, linear_features=6, reset_mechanism="subtract")
    rl.recurrent.load_state_dict(net.recs[0].recurrent.state_dict())
    x = torch.rand(20, 2, 3) * 2
    cur = net.linears[0](x)
    _, spikes = net(x, record=True)
    spk, mem = rl.init_rleaky()
    ref = []
    for t in range(20):
        spk, mem = rl(cur[t], spk, mem)
        ref.append(spk)
    assert torch.allclose(spikes[0], torch.stack(ref))


def test_module_entry_point_runs():
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def printed(*args):
        r = subprocess.run([sys.executable, "-m", "snn_delays_ext.train", "train", "--preset", "braille", *args,
                            "--print-config"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    c = printed()
    assert c["model"]["hidden"] == [256, 256] and c["surrogate"]["learn_beta"] is True
    assert c["model"]["output_delays"] is False  # the braille preset's value
    c = printed("--set", "surrogate.learn_beta=false", "--set", "output_delays=true", "--hidden", "2x64")
    assert c["surrogate"]["learn_beta"] is False and c["model"]["output_delays"] is True
    assert c["model"]["hidden"] == [64, 64]


def test_set_parses_values_and_flags_win(tmp_path, capsys):
    assert main(["train", "--set", "optim.lr=1e-3", "--set", "model.hidden=[4, 5]", "--set", "run.device=cpu",
                 "--set", "data.n_steps=none", "--set", "surrogate.interpolation=round", "--lr", "0.5",
                 "--print-config"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["optim"]["lr"] == 0.5 and c["model"]["hidden"] == [4, 5] and c["run"]["device"] == "cpu"
    assert c["data"]["n_steps"] is None and c["surrogate"]["interpolation"] == "round"
    assert main(["train", "--set", "optim.lr=fast", "--out", str(tmp_path)]) == 2
    assert "optim.lr: expected a number" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # no '=': argparse refuses it with a usage message
        main(["train", "--set", "optim", "--out", str(tmp_path)])
    assert "expected SECTION.NAME=VALUE" in capsys.readouterr().err


def test_delrec_presets_build_the_papers_network():
    """DelRec on SSC (Queant et al. 2025): 3x256 recurrent LIF with axonal recurrent delays, 0.37M
    parameters (140 pooled inputs, 35 classes); SHD and PS-MNIST presets also axonal."""
    import snn_delays_ext as sde

    cfg = make_config("ssc-delrec")
    net = build_model(cfg.model.name, 140, 35, cfg)
    n_params = sum(p.numel() for p in net.parameters())
    assert abs(n_params - 370_000) < 0.02 * 370_000, n_params
    for preset in ("shd-delrec", "ssc-delrec", "psmnist-delrec"):
        cfg = make_config(preset)
        layers = [m for m in sde.delay_layers(build_model(cfg.model.name, 4, 3, cfg))
                  if isinstance(m, sde.DelayedRecurrentLeaky)]
        assert layers and all(m.delay_type == "axonal" and m.delays.dim() == 1 for m in layers)


def test_rec_nodelay_control_keeps_sigma_zero(tmp_path):
    """The no-delay control is RLeaky throughout training: the width schedule, which spreads
    learnable delays, must not widen its fixed lag-1 recurrence (it did: a sigma0 of 10 smeared
    each recurrent spike over 11 steps during training, then tests ran at sigma 0)."""
    over = {**QUICK, "dataset": "sequence", "model": "rec-nodelay", "hidden": [4], "epochs": 2, "sigma0": 10.0,
            "readout": "sum"}
    train(make_config(overrides=over), run_dir=tmp_path / "nodelay", verbose=False)
    rows = list(csv.DictReader(open(tmp_path / "nodelay" / "metrics.csv")))
    assert [float(r["sigma"]) for r in rows] == [0.0, 0.0]
    train(make_config(overrides={**over, "model": "delrec"}), run_dir=tmp_path / "delays", verbose=False)
    rows = list(csv.DictReader(open(tmp_path / "delays" / "metrics.csv")))
    assert float(rows[0]["sigma"]) == pytest.approx(10.0)
