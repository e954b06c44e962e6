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
from typing import Callable, List, Sequence, Tuple

import pytest
import snntorch as snn
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import snn_delays_ext as sde
from snn_delays_ext import ops
from snn_delays_ext.eventprop import DelayedRecurrentSynaptic, EventPropSNN, LeakyIntegrator
from snn_delays_ext.surrogate import triangle
from snn_delays_ext.train import AdaptiveLeaky, FeedForwardSNN, RecurrentSNN, TimeBatchNorm
from snn_delays_ext.train.config import PRESETS, make_config
from snn_delays_ext.train.models import build_model

T, B, F, N = 7, 3, 5, 4

# (id, factory, input shape, calls): ``calls`` 1 = one call on the input; 2 = two step calls
# (the second reads the state the first left); a factory returns the module on the CPU
Case = Tuple[str, Callable[[], nn.Module], Tuple[int, ...], int]


def _layers() -> List[Case]:
    cases: List[Case] = []
    for kind in ("synaptic", "axonal", "dendritic"):
        for interp, sigma in (("triangle", 0.0), ("triangle", 1.5), ("round", 0.0)):
            def make(kind=kind, interp=interp, sigma=sigma):
                return sde.DelayedLinear(F, N, max_delay=4, delay_type=kind, interpolation=interp, sigma=sigma)
            cases.append((f"DelayedLinear-{kind}-{interp}-{sigma}-seq", make, (T, B, F), 1))
            cases.append((f"DelayedLinear-{kind}-{interp}-{sigma}-step", make, (B, F), 2))
    for kind in ("axonal", "synaptic"):
        for reset_delay in (True, False):
            for mech in ("subtract", "zero"):
                def make(kind=kind, reset_delay=reset_delay, mech=mech):
                    return sde.DelayedRecurrentLeaky(0.9, N, max_delay=4, delay_type=kind, reset_delay=reset_delay,
                                                     reset_mechanism=mech, sigma=1.0, learn_beta=True,
                                                     learn_threshold=True, detach_reset=not reset_delay)
                name = f"DelayedRecurrentLeaky-{kind}-{mech}-delay{reset_delay}"
                cases.append((name + "-seq", make, (T, B, N), 1))
                cases.append((name + "-step", make, (B, N), 2))
    cases += [
        ("DelayedRecurrentLeaky-triangle-surrogate-seq",
         lambda: sde.DelayedRecurrentLeaky(0.5, N, 4, spike_grad=triangle()), (T, B, N), 1),
        ("DelayedRecurrentLeaky-init_hidden-step",
         lambda: sde.DelayedRecurrentLeaky(0.9, N, 4, init_hidden=True, output=True), (B, N), 2),
        ("DelayedRecurrentLeaky-one_to_one-seq",
         lambda: sde.DelayedRecurrentLeaky(0.9, N, 4, all_to_all=False, learn_recurrent=True), (T, B, N), 1),
        ("DelayedRecurrentLeaky-inhibition-seq",
         lambda: sde.DelayedRecurrentLeaky(0.9, N, 4, inhibition=True), (T, B, N), 1),
        ("LeakyReadout-seq", lambda: sde.LeakyReadout(0.8), (T, B, N), 1),
        ("LeakyReadout-per-neuron-step", lambda: sde.LeakyReadout(torch.full((N,), 0.7)), (B, N), 2),
        ("LeakyReadout-no-hidden-seq", lambda: sde.LeakyReadout(0.8, init_hidden=False), (T, B, N), 1),
    ]
    for backward in ("eventprop", "surrogate"):
        for recurrent in (False, True):
            cases.append((f"DelayedRecurrentSynaptic-{backward}-rec{recurrent}",
                          lambda b=backward, r=recurrent: DelayedRecurrentSynaptic(F, N, 4, recurrent=r, backward=b),
                          (T, B, F), 1))
        cases.append((f"LeakyIntegrator-{backward}", lambda b=backward: LeakyIntegrator(F, N, 4, backward=b),
                      (T, B, F), 1))
    cases += [
        ("EventPropSNN-ff", lambda: EventPropSNN(F, [6], 3, max_delay=4), (T, B, F), 1),
        ("EventPropSNN-rec", lambda: EventPropSNN(F, [6], 3, max_delay=4, recurrent=True), (T, B, F), 1),
        ("FeedForwardSNN", lambda: FeedForwardSNN(F, [6], 3, max_delay=4, readout="li_shaped"), (T, B, F), 1),
        ("FeedForwardSNN-nodelay-bn-alif",
         lambda: FeedForwardSNN(F, [6], 3, delays=False, batch_norm=True, neuron="alif", readout="li_softmax"),
         (T, B, F), 1),
        ("RecurrentSNN", lambda: RecurrentSNN(F, [6, 6], 3, max_delay=4, readout="li_max"), (T, B, F), 1),
        ("TimeBatchNorm", lambda: TimeBatchNorm(F), (T, B, F), 1),
        ("AdaptiveLeaky", lambda: AdaptiveLeaky(N, 0.9, 0.9, 1.0, snn.surrogate.atan(), learn_beta=True),
         (T, B, N), 1),
    ]
    try:
        from snn_delays_ext import norse as sn
    except ImportError:  # pragma: no cover - norse is a test dependency
        return cases
    cases += [
        ("norse-DelayedLIFRecurrent", lambda: sn.DelayedLIFRecurrent(F, N, 4), (T, B, F), 1),
        ("norse-DelayedLIFRecurrentCell", lambda: sn.DelayedLIFRecurrentCell(F, N, 4), (B, F), 2),
        ("norse-DelayedLIF", lambda: sn.DelayedLIF(F, N, 4), (T, B, F), 1),
        ("norse-DelayedLIFCell", lambda: sn.DelayedLIFCell(F, N, 4), (B, F), 2),
    ]
    return cases


LAYERS = _layers()

#: (n_inputs, n_classes) of each dataset, as the training engine finds them
_DATA_DIMS = {"sequence": (2, 2), "yinyang": (5, 3), "braille": (24, 27), "shd": (700, 20), "ssc": (700, 35),
              "psmnist": (1, 10)}


def _preset_model(name: str) -> Tuple[nn.Module, Tuple[int, ...]]:
    cfg = make_config(name, overrides={"data_dir": "unused"})
    n_in, n_out = _DATA_DIMS[cfg.dataset]
    if cfg.dataset in ("shd", "ssc"):
        n_in //= cfg.pool
    return build_model(cfg.model, n_in, n_out, cfg), (T, B, n_in)


def _tensors(out) -> List[torch.Tensor]:
    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]


def _run(module: nn.Module, shape: Sequence[int], calls: int, device: str, dtype: torch.dtype
         ) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Forward ``calls`` times and backward; returns the outputs and the input."""
    module = module.to(device=device, dtype=dtype).train()
    sde.reset(module)
    x = torch.zeros(shape, device=device, dtype=dtype) if device != "meta" else torch.empty(
        shape, device=device, dtype=dtype)
    x.requires_grad_(True)
    outs: List[torch.Tensor] = []
    state = None
    for _ in range(calls):
        if _takes_state(module):  # Norse cells: (z, state) = cell(x, state)
            z, state = module(x, state)
            out = [z] + _tensors(state)
        else:
            out = _tensors(module(x))
        outs += out
    loss = sum(o.sum() for o in outs if o.is_floating_point() and o.requires_grad)
    if isinstance(loss, torch.Tensor):
        loss.backward()
    return outs, x


def _takes_state(module: nn.Module) -> bool:
    return type(module).__module__.startswith("snn_delays_ext.norse")


def _needs_kernels(name: str) -> None:
    # EventProp's reference forward lists its events with nonzero(), which meta tensors cannot
    # answer; its compiled op has a fake kernel
    if ("EventProp" in name or "eventprop" in name or "LeakyIntegrator-eventprop" in name
            or "DelayedRecurrentSynaptic-eventprop" in name) and not ops.eventprop_devices():
        pytest.skip("EventProp on meta needs the compiled ops (their fake kernels)")


def _check_on_meta(module: nn.Module, shape: Sequence[int], calls: int) -> None:
    outs, x = _run(module, shape, calls, "meta", torch.float32)
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
    model, shape = _preset_model(preset)
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
        given = {t.dtype for t in _tensors((args, kwargs)) if t.is_floating_point()}
        if not _third_party_caller():
            for t in _tensors(out):
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
        _run(module, shape, calls, "meta", torch.float64)
    assert rec.made
    wrong_device = sorted({op for op, t, _ in rec.made if t.device.type != "meta"})
    assert not wrong_device, f"tensors made off the input's device by {wrong_device}"
    wrong_dtype = sorted({f"{op} -> {t.dtype}" for op, t, given in rec.made
                          if _new_dtype(op, t, given, torch.float64)})
    assert not wrong_dtype, f"floating tensors made in another dtype than the input's: {wrong_dtype}"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_model_makes_tensors_on_the_input_device(preset):
    model, shape = _preset_model(preset)
    _needs_kernels(model.__class__.__name__)
    rec = _Recorder()
    with rec:
        _run(model, shape, 1, "meta", torch.float32)
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
        _run(Sneaky(), (T, B, F), 1, "meta", torch.float32)
    assert any(t.device.type == "cpu" for _, t, _ in rec.made)

    class Float32Constant(nn.Module):  # a default-dtype tensor in a float64 network
        def forward(self, x):
            return x + torch.zeros(x.shape[-1], device=x.device)

    rec = _Recorder()
    with rec:
        _run(Float32Constant(), (T, B, F), 1, "meta", torch.float64)
    assert any(_new_dtype(op, t, given, torch.float64) for op, t, given in rec.made)
