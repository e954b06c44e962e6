"""The fused sequence LIF op against snnTorch's ``Leaky`` stepped in a Python loop.

Times one training step (forward and backward of a whole sequence) of a layer of snnTorch
``Leaky`` neurons with a learnable decay per neuron (the Braille preset's hidden neurons), three
ways, round-robin in one process: snnTorch's module called once per step (what
``FeedForwardSNN`` did), :func:`snn_delays_ext.functional.leaky_sequence` on the compiled op
(``torch.ops.snn_delays_ext.leaky_sequence``: the time loop in C++/CUDA, one autograd node),
and the same function's plain-PyTorch reference loop. The table gives the medians and the
snnTorch / fused ratio; the shapes are ``TxBxN`` (default: the Braille preset's T66 B128 N256 and
a longer T500 B32 N256).

    python -m benchmarks.leaky_sequence [--device cuda] [--shapes 66x128x256 500x32x256]
                                        [--threads 1] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List, Sequence, Tuple

import snntorch as snn
import torch
from snntorch import surrogate

from snn_delays_ext.functional import LeakyParameters, leaky_sequence

#: The ways timed: name -> runner(lif, x) -> spikes
Runner = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]


def _snntorch_loop(lif: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    mem = lif.init_leaky()
    spikes = []
    for xt in x.unbind(0):
        spk, mem = lif(xt, mem)
        spikes.append(spk)
    return torch.stack(spikes)


def _function(backend: str) -> Runner:
    def run(lif: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        p = LeakyParameters(lif.beta, lif.threshold, lif.spike_grad, lif.reset_mechanism, lif.reset_delay)
        return leaky_sequence(x, p, backend=backend)[0]

    return run


WAYS: Dict[str, Runner] = {
    "snntorch_loop": _snntorch_loop,
    "fused": _function("compiled"),
    "reference": _function("reference"),
}


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def _step(run: Runner, lif: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> float:
    """One forward + backward of the whole sequence; seconds."""
    x.grad = None
    lif.beta.grad = None
    _sync(x)
    t0 = time.perf_counter()
    (run(lif, x) * w).sum().backward()
    _sync(x)
    return time.perf_counter() - t0


def parse_shape(text: str) -> Tuple[int, int, int]:
    """``"66x128x256"`` -> ``(66, 128, 256)`` (T, B, N)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected a shape TxBxN such as 66x128x256, got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def run(device: str, shapes: Sequence[Tuple[int, int, int]], repeats: int) -> List[Dict[str, object]]:
    rows = []
    for T, B, N in shapes:
        torch.manual_seed(0)
        lif = snn.Leaky(beta=torch.full((N,), 0.9), learn_beta=True, spike_grad=surrogate.atan()).to(device)
        x = (torch.rand(T, B, N, device=device) * 0.6).requires_grad_()
        w = torch.randn(T, B, N, device=device)
        # the same gradients every way (checked here so that the timings compare like with like)
        grads = {}
        for name, way in WAYS.items():
            _step(way, lif, x, w)  # warm-up
            grads[name] = (x.grad.clone(), lif.beta.grad.clone())
        for name in WAYS:
            for a, e in zip(grads[name], grads["snntorch_loop"]):
                torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * max(1.0, float(e.abs().max())))
        times: Dict[str, List[float]] = {name: [] for name in WAYS}
        for _ in range(repeats):
            for name, way in WAYS.items():
                times[name].append(_step(way, lif, x, w))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append({"shape": f"T{T} B{B} N{N}", "snntorch_loop_ms": round(med["snntorch_loop"], 2),
                     "fused_ms": round(med["fused"], 2), "reference_ms": round(med["reference"], 2),
                     "snntorch_over_fused": round(med["snntorch_loop"] / med["fused"], 2),
                     "reference_over_fused": round(med["reference"] / med["fused"], 2)})
    return rows


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shapes", nargs="+", type=parse_shape, default=[(66, 128, 256), (500, 32, 256)],
                    help="TxBxN shapes (default: 66x128x256 500x32x256)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    rows = run(a.device, a.shapes, a.repeats)
    threads = f", {a.threads} thread(s)" if a.device == "cpu" else ""
    print(f"fwd+bwd of one Leaky layer over a sequence, {a.device}{threads}, medians of {a.repeats}")
    for r in rows:
        print(f"  {r['shape']:<18} snnTorch loop {r['snntorch_loop_ms']:9.1f} ms  fused {r['fused_ms']:8.1f} ms  "
              f"reference {r['reference_ms']:9.1f} ms  snnTorch/fused {r['snntorch_over_fused']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": a.device, "threads": a.threads if a.device == "cpu" else None, "repeats": a.repeats,
                       "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
