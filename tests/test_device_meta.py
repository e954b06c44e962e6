"""Device bugs caught without a GPU: every public layer and every training preset runs forward
and backward with its parameters and input on PyTorch's ``meta`` device, and every tensor a
layer makes on the way follows the input's device and dtype.

A tensor created in ``forward`` without the input's device (``torch.zeros(n)``, a module built
inside ``forward``, a CPU constant) lands on the CPU: next to a ``meta`` input that is an error
or a CPU tensor among meta ones, exactly what a CUDA input meets on a GPU machine. The compiled
ops run their fake kernels on ``meta``; value checks (which read data) skip it.
"""

from __future__ import annotations

import os
import traceback
from typing import List, Sequence, Tuple

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import snn_delays_ext as sde
from snn_delays_ext import ops
from snn_delays_ext.train.config import PRESETS

from _layer_cases import B, F, LAYERS, N, T, preset_model, run, tensors

def _needs_kernels(name: str) -> None:
    # EventProp's reference forward lists its events with nonzero(), which meta tensors cannot
    # answer; its compiled op has a fake kernel
    if ("EventProp" in name or "eventprop" in name or "LeakyIntegrator-eventprop" in name
            or "DelayedRecurrentSynaptic-eventprop" in name) and not ops.eventprop_devices():
        pytest.skip("EventProp on meta needs the compiled ops (their fake kernels)")


def _check_on_meta(module: nn.Module, shape: Sequence[int], calls: int) -> None:
    outs, x = run(module, shape, calls, "meta", torch.float32)
    assert outs, "the layer returned no tensor"
    for o in outs:
        assert o.device.type == "meta", f"an output is on {o.device}"
    if x.grad is not None:
        assert x.grad.device.type == "meta" and x.grad.shape == x.shape
    for name, p in module.named_parameters():
        assert p.device.type == "meta", name
        if p.grad is not None:
            assert p.grad.device.type == "meta" and p.grad.shape == p.shape, name
    for name, b in module.named_buffers():
        assert b.device.type == "meta", f"buffer {name} is on {b.device}"


@pytest.mark.parametrize("name, factory, shape, calls", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_forward_backward_on_meta(name, factory, shape, calls):
    _needs_kernels(name)
    _check_on_meta(factory(), shape, calls)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_model_forward_backward_on_meta(preset):
    model, shape = preset_model(preset)
    _needs_kernels(model.__class__.__name__)
    _check_on_meta(model, shape, 1)


class _Recorder(TorchDispatchMode):
    """Every tensor an operator returns, with the operator's name, the dtypes of the floating
    tensors it was given, and whether the code that called it is a third-party package's."""

    def __init__(self) -> None:
        super().__init__()
        self.made: List[Tuple[str, torch.Tensor, set]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {t.dtype for t in tensors((args, kwargs)) if t.is_floating_point()}
        if not _third_party_caller():
            for t in tensors(out):
                self.made.append((str(func), t, given))
        return out


def _third_party_caller() -> bool:
    """Whether the innermost Python frame outside torch is snnTorch's or Norse's
    code: their internals (Norse's ``torch.tensor(0.0)`` in its Heaviside, snnTorch's float32
    spikes) are theirs to fix; every tensor this library's code makes must follow the input."""
    for frame in reversed(traceback.extract_stack()[:-2]):  # not this function, not the mode's
        path = os.path.abspath(frame.filename)
        if path.startswith(_TORCH_DIR):
            continue
        return any(path.startswith(d) for d in _THIRD_PARTY_DIRS)
    return False


_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_THIRD_PARTY_DIRS = [os.path.dirname(os.path.abspath(snn.__file__)) + os.sep]
try:
    import norse

    _THIRD_PARTY_DIRS.append(os.path.dirname(os.path.abspath(norse.__file__)) + os.sep)
except ImportError:  # pragma: no cover
    pass


def _new_dtype(op: str, t: torch.Tensor, given: set, dtype: torch.dtype) -> bool:
    """A floating tensor in a dtype other than the input's that no argument of its operator
    had, and not an explicit cast: a tensor created in the default dtype (``torch.zeros(n)``).
    (snnTorch's spike functions cast ``(mem > 0).float()``, and what follows from that spike,
    its clone in their backward, stays float32: casts and their descendants are allowed.)"""
    return (t.is_floating_point() and t.dtype != dtype and t.dtype not in given
            and not op.startswith("aten._to_copy"))


@pytest.mark.parametrize("name, factory, shape, calls", LAYERS, ids=[c[0] for c in LAYERS])
def test_layer_makes_tensors_on_the_input_device_and_dtype(name, factory, shape, calls):
    _needs_kernels(name)
    module = factory()
    rec = _Recorder()
    with rec:
        run(module, shape, calls, "meta", torch.float64)
    assert rec.made
    wrong_device = sorted({op for op, t, _ in rec.made if t.device.type != "meta"})
    assert not wrong_device, f"tensors made off the input's device by {wrong_device}"
    wrong_dtype = sorted({f"{op} -> {t.dtype}" for op, t, given in rec.made
                          if _new_dtype(op, t, given, torch.float64)})
    assert not wrong_dtype, f"floating tensors made in another dtype than the input's: {wrong_dtype}"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_model_makes_tensors_on_the_input_device(preset):
    model, shape = preset_model(preset)
    _needs_kernels(model.__class__.__name__)
    rec = _Recorder()
    with rec:
        run(model, shape, 1, "meta", torch.float32)
    wrong = sorted({op for op, t, _ in rec.made if t.device.type != "meta"})
    assert not wrong, f"tensors made off the input's device by {wrong}"


def test_a_readout_built_inside_forward_is_caught():
    """The bug this file exists for: a module (here a readout with a CPU buffer) built inside
    ``forward`` fails on meta as it fails on CUDA."""

    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(F, N)

        def forward(self, x):
            return sde.LeakyReadout(0.9, init_hidden=False)(self.lin(x))

    with pytest.raises(ValueError, match="expected a tensor on device cpu"):
        _check_on_meta(Bad(), (T, B, F), 1)

    class Sneaky(nn.Module):  # a CPU constant that broadcasts: an error only under the recorder
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(F, N)

        def forward(self, x):
            return self.lin(x) * torch.tensor(0.5)

    rec = _Recorder()
    with rec:
        run(Sneaky(), (T, B, F), 1, "meta", torch.float32)
    assert any(t.device.type == "cpu" for _, t, _ in rec.made)

    class Float32Constant(nn.Module):  # a default-dtype tensor in a float64 network
        def forward(self, x):
            return x + torch.zeros(x.shape[-1], device=x.device)

    rec = _Recorder()
    with rec:
        run(Float32Constant(), (T, B, F), 1, "meta", torch.float64)
    assert any(_new_dtype(op, t, given, torch.float64) for op, t, given in rec.made)


#: Layers whose forward and backward read no tensor value back to the host when value checks
#: are off (or skipped: ``set_validation("auto")`` on CUDA): nothing synchronises a GPU. The
#: EventProp layers are not among them: their event lists (``nonzero``) and spike-count planes
#: need the input's values on the host.
_SYNC_FREE = [c for c in LAYERS if c[0].split("-")[0] in ("DelayedLinear", "DelayedRecurrentLeaky", "LeakyReadout",
                                                          "FeedForwardSNN", "RecurrentSNN", "TimeBatchNorm")
              and "inhibition" not in c[0]]


class _ValueReads(TorchDispatchMode):
    """Counts the operators that bring a tensor value to the host (``.item()``, ``bool(t)``,
    ``nonzero``): on CUDA each of them waits for the device."""

    _READS = ("aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero", "aten.equal")

    def __init__(self) -> None:
        super().__init__()
        self.reads: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).startswith(self._READS) and not _third_party_caller():
            self.reads.append(f"{func} at {_our_caller()}")
        return func(*args, **(kwargs or {}))


def _our_caller() -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if not os.path.abspath(frame.filename).startswith(_TORCH_DIR):
            return f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return "?"


@pytest.mark.parametrize("name, factory, shape, calls", _SYNC_FREE, ids=[c[0] for c in _SYNC_FREE])
def test_hot_path_reads_no_value_when_checks_are_off(name, factory, shape, calls):
    module = factory()
    run(module, shape, calls, "cpu", torch.float32)  # warm-up: what is read once is cached
    sde.set_validation(False)
    try:
        mode = _ValueReads()
        with mode:
            run(module, shape, calls, "cpu", torch.float32)
    finally:
        sde.set_validation("auto")
    assert not mode.reads, f"values read back to the host: {mode.reads}"


def test_value_reads_are_seen_where_checksrun():
    """The counter above sees a read: with checks on, the finiteness check reads one flag."""
    layer = sde.DelayedLinear(F, N, max_delay=4)
    mode = _ValueReads()
    with mode:
        run(layer, (T, B, F), 1, "cpu", torch.float32)
    assert any("_checks.py" in r for r in mode.reads), mode.reads
