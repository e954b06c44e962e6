"""CUDA: every public layer and every training preset on a GPU, the same numbers as on the CPU,
no host-device synchronisation in the hot path, and the training CLI end to end.

Skipped without a GPU (``pytest -m cuda`` runs them where one exists; ``benchmarks/gpu_check.py``
runs them on a CUDA machine).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import snn_delays_ext as sde
from snn_delays_ext import ops
from snn_delays_ext.train.config import PRESETS

from _layer_cases import LAYERS, preset_model, run

pytestmark = pytest.mark.cuda

#: Layers with no value read in the hot path (``test_device_meta`` shows it on the CPU)
_SYNC_FREE = [c for c in LAYERS if c[0].split("-")[0] in ("DelayedLinear", "DelayedRecurrentLeaky", "LeakyReadout",
                                                          "FeedForwardSNN", "RecurrentSNN")
              and "inhibition" not in c[0]]


def _input(name: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    if "EventProp" in name or "Synaptic" in name or "LeakyIntegrator" in name:
        return (x < 0.3).to(torch.float64)  # spikes for the event-based layers
    return x * 1.5


def _needs_eventprop(name: str) -> None:
    if ("EventProp" in name or "eventprop" in name) and "cuda" not in ops.eventprop_devices():
        pytest.skip("no CUDA EventProp kernels in this build")


@pytest.mark.parametrize("name, factory, shape, calls", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_on_cuda_matches_cpu(name, factory, shape, calls):
    _needs_eventprop(name)
    torch.manual_seed(0)
    cpu = factory()
    gpu = copy.deepcopy(cpu)
    x = _input(name, shape)
    outs_c, xc = run(cpu, shape, calls, "cpu", torch.float64, x=x)
    outs_g, xg = run(gpu, shape, calls, "cuda", torch.float64, x=x)
    assert len(outs_c) == len(outs_g)
    for a, b in zip(outs_c, outs_g):
        assert b.device.type == "cuda"
        torch.testing.assert_close(b.cpu(), a, rtol=1e-7, atol=1e-8)
    for (n, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert pg.device.type == "cuda", n
        if pc.grad is not None:
            torch.testing.assert_close(pg.grad.cpu(), pc.grad, rtol=1e-6, atol=1e-7, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_model_on_cuda_matches_cpu(preset):
    model, shape = preset_model(preset)
    _needs_eventprop(type(model).__name__)
    x = _input(type(model).__name__, shape)
    gpu = copy.deepcopy(model)
    (lc,), _ = run(model.eval(), shape, 1, "cpu", torch.float64, x=x)
    (lg,), _ = run(gpu.eval(), shape, 1, "cuda", torch.float64, x=x)
    assert lg.device.type == "cuda"
    torch.testing.assert_close(lg.cpu(), lc, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, factory, shape, calls", _SYNC_FREE, ids=[c[0] for c in _SYNC_FREE])
def test_hot_path_does_not_synchronise(name, factory, shape, calls):
    module = factory()
    run(module, shape, calls, "cuda", torch.float32)  # warm-up (lazy initialisation, cached reads)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        run(module, shape, calls, "cuda", torch.float32)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_value_checks_on_cuda_follow_set_validation():
    layer = sde.DelayedLinear(3, 2, max_delay=4).cuda()
    bad = torch.full((5, 2, 3), float("nan"), device="cuda")
    assert torch.isnan(layer(bad)).all()  # "auto": not checked on CUDA (no synchronisation)
    sde.set_validation(True)
    try:
        with pytest.raises(ValueError, match="input_: expected finite values"):
            layer(bad)
    finally:
        sde.set_validation("auto")


def test_train_cli_on_cuda(tmp_path):
    """The README's main job on a GPU: ``snn-delays train --device cuda`` (the default task)."""
    from snn_delays_ext.train.cli import main

    run_dir = tmp_path / "run"
    assert main(["train", "--device", "cuda", "--epochs", "1", "--out", str(run_dir), "--no-progress"]) == 0
    results = json.loads((run_dir / "results.json").read_text())
    assert 0.0 <= results["test_acc"] <= 1.0 and results["epochs"] == 1
    state = torch.load(run_dir / "model_best.pt", map_location="cpu", weights_only=False)["model"]
    assert all(t.device.type == "cpu" for t in state.values() if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("preset", sorted(p for p in PRESETS if PRESETS[p]["data"]["dataset"] in ("sequence", "yinyang")))
def test_train_presets_one_epoch_on_cuda(preset, tmp_path):
    from snn_delays_ext.train import make_config, train

    cfg = make_config(preset, overrides=dict(epochs=1, train_limit=128, eval_limit=64, device="cuda",
                                             progress=False, tensorboard=False))
    results = train(cfg, run_dir=tmp_path / preset, verbose=False)
    assert 0.0 <= results["test_acc"] <= 1.0 and results["n_train"] == 128


_CUDA_OP_ERROR = """
import torch
import snn_delays_ext  # registers the ops
x = torch.zeros(4, 3, device="cuda")  # rank 2: the op wants (T, B, F)
for _ in range(2):  # twice: the process goes on after the error
    try:
        torch.ops.snn_delays_ext.delay_channels(x, torch.zeros(3, dtype=torch.long, device="cuda"),
                                                torch.ones(3, 2, device="cuda"))
    except RuntimeError as e:
        assert "x: expected" in str(e) and "(T, B, F)" in str(e), e
    else:
        raise SystemExit("no error")
print("error raised")
"""


def test_cuda_delay_op_error_is_an_exception():
    """An argument error raised inside a CUDA delay op (a ``TORCH_CHECK`` in ``delays_cuda.cu``) is
    a RuntimeError in Python, not a crash: run in a subprocess, so a crash fails only this test."""
    import subprocess
    import sys

    if "cuda" not in ops.available_devices():
        pytest.skip("no CUDA delay kernels in this build")
    res = subprocess.run([sys.executable, "-c", _CUDA_OP_ERROR], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "error raised" in res.stdout, (res.returncode, res.stdout, res.stderr[-3000:])
