"""A run folder survives kills and corruption: two checkpoint generations, a checkpoint that
cannot be read is named and the run resumes from the previous one, metrics.csv is rewritten from
the checkpoint's history (no duplicate row), and a resumed run refuses changed settings."""

from __future__ import annotations

import csv

import pytest
import torch

from snn_delays_ext.train import make_config, train
from snn_delays_ext.train.cli import main

from _train_helpers import QUICK


class _Kill(Exception):
    pass


def _killed_after(cfg, run_dir, epoch):
    def kill(e, row):
        if e == epoch:
            raise _Kill

    with pytest.raises(_Kill):
        train(cfg, run_dir=run_dir, on_epoch_end=kill, verbose=False)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k


def _epochs(run_dir):
    return [int(r["epoch"]) for r in csv.DictReader(open(run_dir / "metrics.csv"))]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    cfg = make_config(overrides={**QUICK, "epochs": 3})
    train(cfg, run_dir=root, verbose=False)
    return cfg, root


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "missing"])
def test_a_damaged_checkpoint_resumes_from_the_previous_one(full_run, tmp_path, damage):
    cfg, full = full_run
    cut = tmp_path / "cut"
    _killed_after(cfg, cut, 2)
    ckpt = cut / "checkpoint.pt"
    assert (cut / "checkpoint.prev.pt").is_file()
    data = ckpt.read_bytes()
    if damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 3])
    elif damage == "empty":
        ckpt.write_bytes(b"")
    elif damage == "garbage":
        ckpt.write_bytes(b"\xff\xfe not a checkpoint \x00" * 50)
    else:  # killed between keeping the previous generation and writing the new one
        ckpt.unlink()
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint .*checkpoint.prev.pt"):
        train(cfg, run_dir=cut, resume=True, verbose=False)
    _same(_weights(full / "checkpoint.pt"), _weights(ckpt))  # epoch 2 is trained again, identically
    assert _epochs(cut) == [1, 2, 3]


def test_both_generations_unreadable_is_an_error_naming_the_file(full_run, tmp_path, capsys):
    cfg, _ = full_run
    cut = tmp_path / "cut"
    _killed_after(cfg, cut, 2)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (cut / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"resume: cannot read the checkpoint '.*checkpoint.prev.pt'"):
        with pytest.warns(UserWarning, match="cannot read the checkpoint '.*checkpoint.pt'"):
            train(cfg, run_dir=cut, resume=True, verbose=False)
    assert main(["train", "--resume", str(cut)]) == 2
    assert "cannot read the checkpoint" in capsys.readouterr().err


def test_a_row_logged_before_a_kill_is_not_duplicated(full_run, tmp_path):
    cfg, full = full_run
    cut = tmp_path / "cut"
    _killed_after(cfg, cut, 2)
    # killed after writing epoch 3's row, before its checkpoint: the row is there, the checkpoint not
    rows = open(cut / "metrics.csv").read().splitlines()
    (cut / "metrics.csv").write_text("\n".join(rows + [rows[-1].replace("2,", "3,", 1)]) + "\n")
    train(cfg, run_dir=cut, resume=True, verbose=False)
    assert _epochs(cut) == [1, 2, 3]
    a = list(csv.DictReader(open(full / "metrics.csv")))
    b = list(csv.DictReader(open(cut / "metrics.csv")))
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


def test_resume_refuses_changed_settings_and_takes_run_options(full_run, tmp_path, capsys):
    cfg, _ = full_run
    cut = tmp_path / "cut"
    _killed_after(cfg, cut, 1)
    assert main(["train", "--resume", str(cut), "--epochs", "40"]) == 2
    err = capsys.readouterr().err
    assert "resume: optim.epochs is 3" in err and "Start a new run" in err
    assert main(["train", "--resume", str(cut), "--set", "optim.lr=0.5"]) == 2
    assert main(["train", "--resume", str(cut), "--no-progress", "--device", "cpu"]) == 0
    assert _epochs(cut) == [1, 2, 3]


_RUN = """
import sys
sys.path.insert(0, {tests!r})
from _train_helpers import QUICK
from snn_delays_ext.train import make_config, train
train(make_config(overrides={{**QUICK, "epochs": 3}}), run_dir={run!r}, resume={resume!r}, verbose=False)
"""


def _train_process(run, resume=False):
    """Run QUICK in a fresh process (each phase of the scenario in the same conditions)."""
    import subprocess
    import sys
    from pathlib import Path

    code = _RUN.format(tests=str(Path(__file__).resolve().parent), run=str(run), resume=resume)
    return subprocess.Popen([sys.executable, "-c", code])


@pytest.fixture(scope="module")
def full_process_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("full-process")
    assert _train_process(root).wait(timeout=300) == 0
    return root


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.05, 0.2])
def test_a_run_killed_for_real_resumes_to_the_same_weights(full_process_run, tmp_path, delay):
    # SIGKILL at some point after the first epoch's row (before the first checkpoint, in
    # training, in evaluation or in the middle of writing a checkpoint); resuming, in a fresh
    # process as a user would, gives the uninterrupted run's weights
    import os
    import signal
    import time

    run = tmp_path / "killed"
    proc = _train_process(run)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if (run / "metrics.csv").is_file() and len(_epochs(run)) >= 1:
                break
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _train_process(run, resume=True).wait(timeout=300) == 0
    assert _epochs(run) == [1, 2, 3]
    _same(_weights(full_process_run / "checkpoint.pt"), _weights(run / "checkpoint.pt"))


def test_resume_before_the_first_checkpoint_starts_again(full_run, tmp_path):
    # killed in the first epoch: the folder has the run's config but no checkpoint yet
    cfg, full = full_run
    cut = tmp_path / "cut"
    _killed_after(cfg, cut, 1)
    (cut / "checkpoint.pt").unlink()
    (cut / "checkpoint.prev.pt").unlink(missing_ok=True)
    with pytest.warns(UserWarning, match="no checkpoint yet .*starting it again from epoch 1"):
        train(cfg, run_dir=cut, resume=True, verbose=False)
    assert _epochs(cut) == [1, 2, 3]
    _same(_weights(full / "checkpoint.pt"), _weights(cut / "checkpoint.pt"))
    with pytest.raises(FileNotFoundError, match="no 'checkpoint.pt' in"):
        train(cfg, run_dir=tmp_path / "never-started", resume=True, verbose=False)
