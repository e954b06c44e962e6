"""The readouts and batch norm of hidden currents (surrogate presets)."""

from __future__ import annotations

import math

import pytest
import torch
from _ddp_helpers import torchrun_train

from snn_delays_ext.train import FeedForwardSNN, RecurrentSNN, build_model, make_config, train
from snn_delays_ext.train.cli import main
from snn_delays_ext.train.models import TimeBatchNorm, readout_logits


def _li_by_hand(cur: torch.Tensor, beta: float) -> torch.Tensor:
    v, out = torch.zeros_like(cur[0]), []
    for t in range(cur.shape[0]):
        v = beta * v + cur[t]
        out.append(v.clone())
    return torch.stack(out)


@pytest.mark.parametrize("readout", ["sum", "li_mean", "li_max", "li_shaped"])
def test_readouts_reduce_the_leaky_integrator_as_documented(readout):
    torch.manual_seed(0)
    cur = torch.randn(7, 3, 4, dtype=torch.float64)
    v = _li_by_hand(cur, 0.8)
    T = 7
    want = {"sum": cur.sum(0), "li_mean": v.mean(0), "li_max": v.max(0).values,
            "li_shaped": sum(math.exp(-t / T) * v[t] for t in range(T)) / T}[readout]
    assert torch.allclose(readout_logits(cur, readout, 0.8), want, atol=1e-12)
    with pytest.raises(ValueError, match="readout: expected one of"):
        readout_logits(cur, "li_softmax", 0.8)


def test_time_batch_norm_normalises_each_feature_over_time_and_batch():
    torch.manual_seed(1)
    x = torch.randn(6, 5, 3, dtype=torch.float64) * torch.tensor([1.0, 4.0, 0.1], dtype=torch.float64) + 2.0
    bn = TimeBatchNorm(3).double()
    y = bn(x)
    rows = x.reshape(30, 3)
    mean, var = rows.mean(0), rows.var(0, unbiased=False)
    assert torch.allclose(y, (x - mean) / torch.sqrt(var + bn.bn.eps), atol=1e-10)
    # the running statistics moved by momentum 0.1 towards this batch (unbiased variance)
    assert torch.allclose(bn.bn.running_mean, 0.1 * mean, atol=1e-12)
    assert torch.allclose(bn.bn.running_var, 0.9 + 0.1 * rows.var(0, unbiased=True), atol=1e-12)
    # in evaluation a sample's output does not depend on the rest of its batch
    bn.eval()
    assert torch.allclose(bn(x)[:, :1], bn(x[:, :1]), atol=1e-12)
    with pytest.raises(ValueError, match=r"x: expected a \(T, B, 3\) sequence, got shape \(6, 5, 4\)"):
        bn(torch.zeros(6, 5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="num_features"):
        TimeBatchNorm(0)
    with pytest.raises(TypeError, match="num_features"):
        TimeBatchNorm(2.5)


@pytest.mark.parametrize("cls", [FeedForwardSNN, RecurrentSNN])
def test_batch_norm_feeds_normalised_currents_to_the_hidden_neurons(cls):
    torch.manual_seed(2)
    net = cls(4, [6, 5], 3, max_delay=3, batch_norm=True)
    assert [n.num_features for n in net.norms] == [6, 5]
    seen = []
    hooks = [n.register_forward_hook(lambda m, i, o: seen.append(o.detach())) for n in net.norms]
    x = (torch.rand(12, 16, 4) < 0.4).float() * 2.0
    net(x).sum().backward()
    for o in seen:  # per feature over (T, B): mean 0, variance 1 (scale 1, shift 0 at the start)
        rows = o.reshape(-1, o.shape[-1])
        assert rows.mean(0).abs().max() < 1e-5
        assert torch.allclose(rows.var(0, unbiased=False), torch.ones(rows.shape[1]), atol=1e-3)
    assert all(n.bn.weight.grad is not None for n in net.norms)
    for h in hooks:
        h.remove()
    plain = cls(4, [6, 5], 3, max_delay=3)
    assert all(isinstance(n, torch.nn.Identity) for n in plain.norms)
    with pytest.raises(TypeError, match="batch_norm: expected True or False"):
        cls(4, [6], 3, batch_norm=1)


def test_batch_norm_config_cli_and_eventprop_refusal(capsys):
    assert main(["train", "--preset", "braille", "--set", "surrogate.batch_norm=true", "--set", "model.readout=li_max",
                 "--print-config"]) == 0
    text = capsys.readouterr().out
    assert '"batch_norm": true' in text and '"readout": "li_max"' in text
    with pytest.raises(TypeError, match="surrogate.batch_norm: expected True or False"):
        make_config(overrides={"batch_norm": "yes"})
    with pytest.raises(ValueError, match="surrogate.batch_norm: the EventProp models"):
        build_model("eventprop-ff", 2, 2, make_config("sequence-eventprop", overrides={"batch_norm": True}))


def test_engine_trains_with_batch_norm_and_keeps_its_statistics(tmp_path):
    cfg = make_config(overrides=dict(
        dataset="sequence", model="ff-delays", hidden=[8], max_delay=12, gap=10, delay_init=0.0,
        readout="li_mean", beta_out=0.5, epochs=3, batch_size=50, lr=1e-2, delay_lr=0.5, sigma0=4.0,
        train_limit=200, eval_limit=100, progress=False, tensorboard=False, batch_norm=True))
    res = train(cfg, run_dir=tmp_path / "run", verbose=False)
    assert math.isfinite(res["test_acc"])
    best = torch.load(tmp_path / "run" / "model_best.pt", weights_only=False)
    state = best["model"]
    # the running statistics were learned from the training batches (they start at 0 and 1)
    assert state["norms.0.bn.running_mean"].abs().sum() > 0
    assert int(state["norms.0.bn.num_batches_tracked"]) > 0


@pytest.mark.slow
def test_torchrun_on_cpu_refuses_unsynchronised_batch_norm(tmp_path):
    r = torchrun_train(tmp_path / "ddp", [
        "--dataset", "sequence", "--hidden", "4", "--epochs", "1", "--batch-size", "50", "--train-limit", "100",
        "--eval-limit", "50", "--device", "cpu", "--no-progress", "--set", "surrogate.batch_norm=true"])
    assert r.returncode != 0
    assert "surrogate.batch_norm: under torchrun the batch statistics must be synchronised" in r.stdout + r.stderr
