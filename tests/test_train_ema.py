"""Weight averaging (``ema``): the average itself, and its use for validation, selection, test
and resume in the training engine."""

from __future__ import annotations

import json

import pytest
import torch

from snn_delays_ext.train import ParameterEMA, build_model, make_config, train

from _train_helpers import QUICK


def test_average_matches_the_closed_form():
    """a_n = d^n a_0 + (1 - d) sum_k d^(n-k) p_k, written out independently of lerp."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    d = 0.7
    a0 = [p.detach().clone() for p in net.parameters()]
    ema = ParameterEMA(net, d)
    seen = []
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn_like(p))
        seen.append([p.detach().clone() for p in net.parameters()])
        ema.update(net)
    n = len(seen)
    for i, a in enumerate(ema.average):
        expect = d ** n * a0[i] + sum((1 - d) * d ** (n - 1 - k) * seen[k][i] for k in range(n))
        torch.testing.assert_close(a, expect)
    assert ema.n_updates == n


def test_swapped_restores_live_weights_even_after_an_error():
    net = torch.nn.Linear(2, 2)
    ema = ParameterEMA(net, 0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    live = net.weight.detach().clone()
    ema.update(net)
    with pytest.raises(RuntimeError, match="boom"):
        with ema.swapped(net):
            torch.testing.assert_close(net.weight, live - 0.5)  # half way back to the start
            raise RuntimeError("boom")
    assert torch.equal(net.weight, live)


def test_state_dict_round_trip_and_bad_values():
    net = torch.nn.Linear(2, 3)
    ema = ParameterEMA(net, 0.9)
    with torch.no_grad():
        net.weight.mul_(2.0)
    ema.update(net)
    other = ParameterEMA(torch.nn.Linear(2, 3), 0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.n_updates == 1
    for a, b in zip(ema.average, other.average):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match=r"decay: expected an averaging decay in \[0, 1\), got 1.0"):
        ParameterEMA(net, 1.0)
    with pytest.raises(TypeError, match="model"):
        ParameterEMA("net", 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model: expected the model this average was made for"):
        ema.update(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="state"):
        ParameterEMA(torch.nn.Linear(4, 4), 0.5).load_state_dict(ema.state_dict())


def test_engine_selects_and_tests_the_average(tmp_path):
    """With one epoch the best model is the epoch-1 average, not the live weights; the test
    accuracy is that of the average."""
    cfg = make_config(overrides={**QUICK, "epochs": 1, "ema": 0.9})
    res = train(cfg, run_dir=tmp_path, verbose=False)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    best = torch.load(tmp_path / "model_best.pt", weights_only=False)["model"]
    names = [n for n, _ in build_model(cfg.model, 2, 2, cfg).named_parameters()]  # the average's order
    assert len(names) == len(ck["ema"]["average"]) and ck["ema"]["n_updates"] == 4  # 200 / 50 steps
    differs = False
    for name, avg in zip(names, ck["ema"]["average"]):
        assert torch.equal(best[name], avg), name
        differs |= not torch.equal(ck["model"][name], avg)
    assert differs  # the live weights moved on; the average lags behind
    assert res["best_epoch"] == 1 and 0.0 <= res["test_acc"] <= 1.0


def test_resume_with_average_gives_the_same_run(tmp_path, train_killed_then_resumed):
    cfg = make_config(overrides={**QUICK, "ema": 0.8})
    train_killed_then_resumed(cfg, tmp_path, kill_after=1)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)
    for x, y in zip(a["ema"]["average"], b["ema"]["average"]):
        assert torch.equal(x, y)
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert ra["test_acc"] == rb["test_acc"] and ra["best_val_acc"] == rb["best_val_acc"]
    # a checkpoint without an average cannot be resumed by a config that asks for one
    plain = tmp_path / "plain"
    train(make_config(overrides={**QUICK, "epochs": 1}), run_dir=plain, verbose=False)
    with pytest.raises(ValueError, match="resume: .* holds no weight average"):
        train(cfg, run_dir=plain, resume=True, verbose=False)


@pytest.mark.parametrize("value, words", [(1.0, r"ema: expected an averaging decay in \[0, 1\), got 1.0"),
                                           (-0.5, r"ema: expected a finite float >= 0, got -0.5")])
def test_bad_ema_values(value, words):
    with pytest.raises(ValueError, match=words):
        make_config(overrides={"ema": value})
