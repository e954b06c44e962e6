"""Every public layer and every training preset's model as a test case: a factory, an input
shape and the number of calls (shared by the meta-device and the CUDA tests)."""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

import snn_delays_ext as sde
from snn_delays_ext.eventprop import DelayedRecurrentSynaptic, EventPropSNN, LeakyIntegrator
from snn_delays_ext.surrogate import triangle
from snn_delays_ext.train import FeedForwardSNN, RecurrentSNN, TimeBatchNorm
from snn_delays_ext.train.config import make_config
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
        ("DelayedLeaky-synaptic-round-learn_beta-seq",
         lambda: sde.DelayedLeaky(F, N, 4, beta=torch.full((N,), 0.9), learn_beta=True, learn_threshold=True,
                                  interpolation="round"), (T, B, F), 1),
        ("DelayedLeaky-axonal-zero-reset_delayFalse-seq",
         lambda: sde.DelayedLeaky(F, N, 4, beta=0.8, delay_type="axonal", sigma=1.0, reset_mechanism="zero",
                                  reset_delay=False), (T, B, F), 1),
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
        ("FeedForwardSNN-nodelay-bn",
         lambda: FeedForwardSNN(F, [6], 3, delays=False, batch_norm=True, learn_beta=True, readout="li_max"),
         (T, B, F), 1),
        ("RecurrentSNN", lambda: RecurrentSNN(F, [6, 6], 3, max_delay=4, readout="li_max"), (T, B, F), 1),
        ("TimeBatchNorm", lambda: TimeBatchNorm(F), (T, B, F), 1),
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


def preset_model(name: str) -> Tuple[nn.Module, Tuple[int, ...]]:
    cfg = make_config(name, overrides={"data_dir": "unused"})
    n_in, n_out = _DATA_DIMS[cfg.data.dataset]
    if cfg.data.dataset in ("shd", "ssc"):
        n_in //= cfg.data.pool
    return build_model(cfg.model.name, n_in, n_out, cfg), (T, B, n_in)


def tensors(out) -> List[torch.Tensor]:
    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]


def run(module: nn.Module, shape: Sequence[int], calls: int, device: str, dtype: torch.dtype,
        x: torch.Tensor = None) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Forward ``calls`` times and backward (of the sum of every floating output); returns the
    outputs and the input (zeros, or ``x`` moved to ``device``)."""
    module = module.to(device=device, dtype=dtype).train()
    sde.reset(module)
    if x is not None:
        x = x.detach().to(device=device, dtype=dtype)
    elif device == "meta":
        x = torch.empty(shape, device=device, dtype=dtype)
    else:
        x = torch.zeros(shape, device=device, dtype=dtype)
    x.requires_grad_(True)
    outs: List[torch.Tensor] = []
    state = None
    for _ in range(calls):
        if takes_state(module):  # Norse cells: (z, state) = cell(x, state)
            z, state = module(x, state)
            out = [z] + tensors(state)
        else:
            out = tensors(module(x))
        outs += out
    loss = sum(o.sum() for o in outs if o.is_floating_point() and o.requires_grad)
    if isinstance(loss, torch.Tensor):
        loss.backward()
    return outs, x


def takes_state(module: nn.Module) -> bool:
    return type(module).__module__.startswith("snn_delays_ext.norse")


