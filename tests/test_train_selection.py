"""Which model the engine tests (``selection``) and training on the validation samples too
(``train_on_val``)."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from snn_delays_ext.train import make_config, make_datasets, plot_run, train
from snn_delays_ext.train.cli import main

from _train_helpers import QUICK


def _rows(run):
    return list(csv.DictReader(open(run / "metrics.csv", newline="")))


def _same_state(a, b):
    """Same parameters and buffers (the delay layers' extra state holds the triangle width, which
    the checkpoint saves after the width schedule's step for the next epoch)."""
    assert a.keys() == b.keys()
    tensors = [k for k in a if isinstance(a[k], torch.Tensor)]
    assert tensors
    for k in tensors:
        assert torch.equal(a[k], b[k]), k


def test_validation_selection_keeps_the_first_best_epoch(tmp_path):
    res = train(make_config(overrides={**QUICK, "epochs": 4}), run_dir=tmp_path, verbose=False)
    val = [float(r["val_acc"]) for r in _rows(tmp_path)]
    assert res["selection"] == "val"
    assert res["best_epoch"] == val.index(max(val)) + 1
    assert res["best_val_acc"] == pytest.approx(max(val))


def test_last_selection_tests_the_final_epoch_model(tmp_path):
    res = train(make_config(overrides={**QUICK, "selection": "last"}), run_dir=tmp_path, verbose=False)
    rows = _rows(tmp_path)
    assert res["best_epoch"] == 3 and res["best_val_acc"] == pytest.approx(float(rows[-1]["val_acc"]))
    final = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["model"]
    _same_state(torch.load(tmp_path / "model_best.pt", weights_only=False)["model"], final)


def test_training_on_validation_samples_uses_them_and_validates_nothing(tmp_path):
    cfg = make_config(overrides={**QUICK, "epochs": 1, "train_on_val": True, "selection": "last"})
    tr, va, _, _, _ = make_datasets(cfg)
    res = train(cfg, run_dir=tmp_path, verbose=False)
    assert (len(tr), len(va)) == (200, 100)
    assert res["n_train"] == 300 and res["n_val"] == 0 and res["train_on_val"] is True
    # one optimiser step per batch of 50: 300 samples make 6 steps (the training samples alone make 4)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert {float(s["step"]) for s in ck["optimizer"]["state"].values()} == {6.0}
    assert res["best_val_acc"] is None and res["val_acc_rounded"] is None and res["best_epoch"] == 1
    (row,) = _rows(tmp_path)
    assert math.isnan(float(row["val_acc"])) and math.isnan(float(row["val_loss"]))
    assert 0.0 <= res["test_acc"] <= 1.0
    saved = json.loads((tmp_path / "results.json").read_text())  # strict JSON: null, not NaN
    assert saved["best_val_acc"] is None
    assert (tmp_path / "learning_curves.png") in plot_run(tmp_path)


def test_resume_with_train_on_val_gives_the_same_run(tmp_path, train_killed_then_resumed):
    cfg = make_config(overrides={**QUICK, "train_on_val": True, "selection": "last"})
    full, cut = train_killed_then_resumed(cfg, tmp_path, kill_after=1)
    _same_state(torch.load(full / "model_best.pt", weights_only=False)["model"],
                torch.load(cut / "model_best.pt", weights_only=False)["model"])
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (full, cut))
    assert ra["test_acc"] == rb["test_acc"] and ra["n_train"] == rb["n_train"] == 300


def test_bad_selection_values_are_named():
    with pytest.raises(ValueError, match="optim.train_on_val: .* expected optim.selection='last', got 'val'"):
        make_config(overrides={"train_on_val": True})
    with pytest.raises(ValueError, match=r"optim.selection: expected one of \['val', 'last'\], got 'best'"):
        make_config(overrides={"selection": "best"})
    with pytest.raises(TypeError, match="optim.train_on_val: expected True or False, got 'yes'"):
        make_config(overrides={"train_on_val": "yes", "selection": "last"})
    assert main(["train", "--set", "optim.selection=first", "--print-config"]) == 2


def test_cli_flags_reach_the_config(capsys):
    assert main(["train", "--set", "optim.train_on_val=true", "--set", "optim.selection=last", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["optim"]["train_on_val"] is True and cfg["optim"]["selection"] == "last"
