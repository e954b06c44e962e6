"""The example's task is solved by learning delays and only by learning delays."""

import importlib.util
from pathlib import Path

import pytest
import torch

import snn_delays_ext as sde

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sequence_detection.py"


@pytest.fixture(scope="module")
def task():
    spec = importlib.util.spec_from_file_location("sequence_detection", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_learned_delays_reach_100_percent(task):
    layer, before, after = task.train(epochs=40, seed=0, verbose=False)
    assert before < 0.6
    assert after == 1.0  # measured with delays rounded to whole steps
    d = layer.effective_delays()
    # the solution: each output delays its "first" channel by the gap more than the other
    assert float(d[0, 0] - d[0, 1]) == pytest.approx(task.GAP, abs=1.0)
    assert float(d[1, 1] - d[1, 0]) == pytest.approx(task.GAP, abs=1.0)


def test_frozen_worst_case_delays_stay_at_chance(task):
    layer, before, after = task.train(epochs=40, seed=0, learn_delays=False, verbose=False)
    gen = torch.Generator().manual_seed(123)
    x, y = task.make_batch(400, gen)
    with torch.no_grad():
        pred = task.scores(layer, x).argmax(-1)
    # equal delays make both classes look alike: one class is predicted for every sample
    assert pred.unique().numel() == 1
    assert after <= 0.6


def test_sigma_scheduler_follows_delrec_formula():
    net = torch.nn.Sequential(sde.DelayedLinear(2, 2, 10), sde.DelayedRecurrentLeaky(0.9, 2, 10))
    sched = sde.SigmaScheduler(net, epochs=4, sigma0=8.0)
    seen = [net[0].sigma]
    for _ in range(4):
        sched.step()
        seen.append(net[1].sigma)
    assert seen[:4] == pytest.approx([8.0 * 0.95 ** (100 * e / 4) for e in range(4)])
    assert seen[4] == 0.0  # after the last epoch: linear interpolation
    with pytest.raises(ValueError, match="net"):
        sde.SigmaScheduler(torch.nn.Linear(2, 2), epochs=3)
