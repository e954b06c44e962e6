"""The networks the benchmarks time: one builder per (scenario, implementation).

Two scenarios, each with the same input, parameters and loss for every implementation:

``recurrent`` (SHD-like, SSC-like, the ``D`` and ``T`` sweeps)
    input spikes ``(T, B, C)`` -> ``nn.Linear(C, N)`` -> recurrent LIF layer of ``N`` neurons
    with axonal recurrent delays up to ``D`` (DelRec's setting: beta 0.5, subtract reset,
    ``atan`` surrogate). Implementations:

    - ``ours``: :class:`snn_delays_ext.DelayedRecurrentLeaky` on the whole sequence (the compiled
      op when ``snn_delays_ext.backend() == "compiled"``, else the reference path);
    - ``reference``: :func:`snn_delays_ext.functional.recurrent_leaky_sequence` (plain PyTorch);
    - ``delrec_style``: :func:`benchmarks.delrec_style.delrec_style_recurrent_leaky`;
    - ``no_delay_rleaky``: ``snntorch.RLeaky`` stepped over the sequence (no delays);
    - ``no_delay_loop``: :func:`benchmarks.delrec_style.plain_recurrent_leaky` (no delays).

``feedforward`` (the DCLS-paper network)
    input spikes ``(T, B, C)`` -> delayed linear ``C -> H`` -> LIF -> delayed linear ``H -> H``
    -> LIF, synaptic delays in ``[0, D]`` (one per connection, as DCLS learns them).
    Implementations: ``ours`` (:class:`snn_delays_ext.DelayedLinear`), ``reference``
    (:func:`snn_delays_ext.functional.delayed_linear`), ``dcls`` (``DCLS.construct.modules.Dcls1d``,
    Gaussian version, kernel ``D + 1``, left-padded by ``D``: the DCLS paper's layer) and
    ``no_delay`` (``nn.Linear``). The LIF neurons are the same for all: snnTorch's ``Leaky``
    (subtract reset, one step late) over the sequence on the fused op
    :func:`snn_delays_ext.functional.leaky_sequence` (the time loop in C++/CUDA; before, a Python
    loop over steps that alone cost more than every delay layer on a GPU).

Every builder returns a :class:`Case`: ``step()`` runs forward + loss (no backward) and returns
the loss and the output spikes; parameters are in ``params``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import snntorch as snn
import snntorch.surrogate as sg
import torch
import torch.nn.functional as F
from torch import nn

import snn_delays_ext
from snn_delays_ext.functional import LeakyParameters, delayed_linear, leaky_sequence
from snn_delays_ext.functional.recurrent_leaky import (
    RecurrentLeakyParameters,
    RecurrentLeakyState,
    recurrent_history_length,
    recurrent_leaky_sequence,
)

from .delrec_style import delrec_style_recurrent_leaky, plain_recurrent_leaky

__all__ = ["Case", "IMPLS", "build_case", "estimate", "dcls_status"]

IMPLS: Dict[str, Tuple[str, ...]] = {
    "recurrent": ("ours", "reference", "delrec_style", "no_delay_rleaky", "no_delay_loop"),
    "feedforward": ("ours", "reference", "dcls", "no_delay"),
}

BETA = 0.5
THRESHOLD = 1.0
INPUT_RATE = 0.1  # input spike probability per channel and step
INPUT_GAIN = 4.0  # scales the input weights so that the hidden layer fires a few % of the time


def dcls_status() -> Tuple[bool, str]:
    """Whether ``Dcls1d`` can be imported, and the version or the reason it cannot."""
    try:
        import DCLS  # noqa: F401
        from DCLS.construct.modules import Dcls1d  # noqa: F401
    except Exception as e:  # pragma: no cover - depends on the environment
        return False, f"{type(e).__name__}: {e} (install with `pip install --no-deps dcls`)"
    try:
        from importlib.metadata import version

        return True, version("dcls")
    except Exception:  # pragma: no cover
        return True, "unknown"


@dataclass
class Case:
    """One network ready to run: ``step()`` = forward + loss."""

    step: Callable[[], Tuple[torch.Tensor, torch.Tensor]]
    params: List[torch.Tensor]
    inputs: List[torch.Tensor] = field(default_factory=list)


def _spikes(T: int, B: int, C: int, device, dtype, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(T, B, C, generator=gen) < INPUT_RATE).to(device=device, dtype=dtype)


def _loss(spk: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
    return spk.mean() + 0.1 * mem.square().mean()


def _leaky_sequence(cur: torch.Tensor, fn) -> Tuple[torch.Tensor, torch.Tensor]:
    """Feed-forward LIF over ``(T, B, H)`` currents: snnTorch's ``Leaky`` (subtract reset, one
    step late), the fused op where it is built (the same neurons for every implementation)."""
    beta = torch.tensor(BETA, dtype=cur.dtype, device=cur.device)
    thr = torch.tensor(THRESHOLD, dtype=cur.dtype, device=cur.device)
    return leaky_sequence(cur, LeakyParameters(beta, thr, fn, "subtract", True))


def _recurrent(impl: str, shape: dict, sigma: float, device, dtype, gen) -> Case:
    T, B, C, N, D = shape["T"], shape["B"], shape["C"], shape["N"], shape["D"]
    fn = sg.atan()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    inp = nn.Linear(C, N).to(device=device, dtype=dtype)
    with torch.no_grad():
        inp.weight.mul_(INPUT_GAIN)
    lif = snn_delays_ext.DelayedRecurrentLeaky(
        beta=BETA, linear_features=N, max_delay=D, delay_type="axonal", threshold=THRESHOLD,
        spike_grad=fn, sigma=sigma,
    ).to(device=device, dtype=dtype)
    x = _spikes(T, B, C, device, dtype, gen)
    w, b, d = lif.recurrent.weight, lif.recurrent.bias, lif.delays
    beta = torch.tensor(BETA, device=device, dtype=dtype)
    thr = torch.tensor(THRESHOLD, device=device, dtype=dtype)
    params = list(inp.parameters())

    if impl == "ours":
        params += list(lif.parameters())

        def step():
            spk, mem = lif(inp(x))
            return _loss(spk, mem), spk
    elif impl == "reference":
        params += [w, b, d]
        K = recurrent_history_length(D, sigma)
        p = RecurrentLeakyParameters(beta, thr, fn, "subtract", True)

        def step():
            cur = inp(x)
            state = RecurrentLeakyState(cur.new_zeros(B, N), cur.new_zeros(K, B, N))
            spk, mem, _ = recurrent_leaky_sequence(cur, state, w, b, d, p, D, "axonal", sigma, backend="reference")
            return _loss(spk, mem), spk
    elif impl == "delrec_style":
        params += [w, b, d]

        def step():
            spk, mem = delrec_style_recurrent_leaky(inp(x), w, b, d, beta, thr, fn, D, "axonal", sigma)
            return _loss(spk, mem), spk
    elif impl == "no_delay_rleaky":
        rl = snn.RLeaky(beta=BETA, linear_features=N, threshold=THRESHOLD, spike_grad=fn)
        rl = rl.to(device=device, dtype=dtype)
        with torch.no_grad():
            rl.recurrent.weight.copy_(w)
            rl.recurrent.bias.copy_(b)
        params += list(rl.parameters())

        def step():
            cur = inp(x)
            spk, mem = rl.init_rleaky()
            spikes, mems = [], []
            for t in range(T):
                spk, mem = rl(cur[t], spk, mem)
                spikes.append(spk)
                mems.append(mem)
            s = torch.stack(spikes)
            return _loss(s, torch.stack(mems)), s
    elif impl == "no_delay_loop":
        params += [w, b]

        def step():
            spk, mem = plain_recurrent_leaky(inp(x), w, b, beta, thr, fn)
            return _loss(spk, mem), spk
    else:
        raise ValueError(f"impl: expected one of {IMPLS['recurrent']}, got {impl!r}")
    return Case(step, params, [x])


def _feedforward(impl: str, shape: dict, sigma: float, device, dtype, gen) -> Case:
    T, B, C, H, D = shape["T"], shape["B"], shape["C"], shape["H"], shape["D"]
    fn = sg.atan()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    x = _spikes(T, B, C, device, dtype, gen)
    sizes = [(C, H), (H, H)]
    if impl in ("ours", "reference"):
        layers = [
            snn_delays_ext.DelayedLinear(i, o, max_delay=D, delay_type="synaptic", sigma=sigma)
            .to(device=device, dtype=dtype)
            for i, o in sizes
        ]
        with torch.no_grad():
            for layer in layers:
                layer.weight.mul_(INPUT_GAIN)
        params = [p for layer in layers for p in layer.parameters()]
        if impl == "ours":
            apply = [lambda z, layer=layer: layer(z) for layer in layers]
        else:
            apply = [
                lambda z, layer=layer: delayed_linear(
                    z, layer.weight, layer.bias, layer.delays, D, "synaptic", sigma, backend="reference"
                )[0]
                for layer in layers
            ]
    elif impl == "dcls":
        ok, why = dcls_status()
        if not ok:
            raise RuntimeError(why)
        from DCLS.construct.modules import Dcls1d

        layers = [
            Dcls1d(i, o, kernel_count=1, dilated_kernel_size=D + 1, groups=1, bias=True,
                   version="gauss").to(device=device, dtype=dtype)
            for i, o in sizes
        ]
        with torch.no_grad():
            for layer in layers:
                layer.weight.mul_(INPUT_GAIN)
        params = [p for layer in layers for p in layer.parameters()]

        def _dcls(z, layer):
            # (T, B, F) -> (B, F, T), causal left padding of D steps, back to (T, B, F)
            y = layer(F.pad(z.permute(1, 2, 0), (D, 0)))
            return y.permute(2, 0, 1)

        apply = [lambda z, layer=layer: _dcls(z, layer) for layer in layers]
    elif impl == "no_delay":
        layers = [nn.Linear(i, o).to(device=device, dtype=dtype) for i, o in sizes]
        with torch.no_grad():
            for layer in layers:
                layer.weight.mul_(INPUT_GAIN)
        params = [p for layer in layers for p in layer.parameters()]
        apply = list(layers)
    else:
        raise ValueError(f"impl: expected one of {IMPLS['feedforward']}, got {impl!r}")

    def step():
        z = x
        mem = None
        for f in apply:
            z, mem = _leaky_sequence(f(z), fn)
        return _loss(z, mem), z

    return Case(step, params, [x])


def build_case(scenario: str, impl: str, shape: dict, sigma: float = 0.0,
               device: str = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0) -> Case:
    """Build the network of ``scenario`` with implementation ``impl`` at ``shape``.

    Examples
    --------
    >>> case = build_case("recurrent", "delrec_style", dict(T=5, B=2, C=3, N=4, D=3))
    >>> loss, spk = case.step()
    >>> spk.shape
    torch.Size([5, 2, 4])
    """
    gen = torch.Generator().manual_seed(seed)
    if scenario == "recurrent":
        return _recurrent(impl, shape, sigma, device, dtype, gen)
    if scenario == "feedforward":
        return _feedforward(impl, shape, sigma, device, dtype, gen)
    raise ValueError(f"scenario: expected 'recurrent' or 'feedforward', got {scenario!r}")


def estimate(scenario: str, impl: str, shape: dict, sigma: float = 0.0) -> Tuple[float, float]:
    """Rough cost of one fwd+bwd: (GFLOP, bytes saved for backward), to skip hopeless cases.

    Forward multiply-adds counted as 2 FLOP, backward as twice the forward. Saved bytes only
    for the implementations whose memory explodes (DelRec-style and the reference path:
    ``4 T B N L``; DCLS: the dense kernel construction, ``~6 x 4 (D+1) H C`` per layer);
    others get ``4 T B N x 8``.
    """
    s = 1.0 + sigma
    T, B, D = shape["T"], shape["B"], shape["D"]
    if scenario == "recurrent":
        C, N = shape["C"], shape["N"]
        K = D + math.ceil(s) - 1
        base = 2 * T * B * (C * N + N * N)
        extra = {"ours": 2 * T * B * N * K, "reference": 2 * T * B * N * K,
                 "delrec_style": 2 * T * B * N * N * K}.get(impl, 0)
        # the reference path keeps a view of its (K, B, N) buffer per step (its whole storage)
        heavy = impl in ("delrec_style", "reference") or (
            impl == "ours" and snn_delays_ext.backend() == "reference")
        saved = 4 * T * B * N * K if heavy else 4 * T * B * N * 8
        return 3 * (base + extra) / 1e9, float(saved)
    C, H = shape["C"], shape["H"]
    if impl == "no_delay":
        f = 2 * T * B * (C * H + H * H)
        return 3 * f / 1e9, float(4 * T * B * H * 8)
    f = 2 * T * B * (C * H + H * H) * (D + 1)
    saved = 4 * T * B * H * 8 + (6 * 4 * (D + 1) * H * (C + H) if impl == "dcls" else 0)
    return 3 * f / 1e9, float(saved)
