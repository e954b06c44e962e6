"""DelRec's neuron on the compiled recurrent op against the plain-PyTorch path.

DelRec's recurrent layer (spikingjelly's LIF: the reset in the spike's own step, once per spike;
recurrent dropout with one mask per sequence; SSC and PS-MNIST also learn a triangle width per
neuron) used to run only on the plain-PyTorch path. This times one training step (forward and
backward of a whole sequence) of :class:`snn_delays_ext.DelayedRecurrentLeaky` set up as DelRec's
SHD and SSC neurons, on the compiled op and on the reference, and the same layer with snnTorch's
reset one step later (the kernel's original case), round-robin in one process; the table gives
the medians and the reference / compiled ratio.

    python -m benchmarks.delrec_neuron [--device cuda] [--batch 32] [--steps 100] [--threads 1]
                                       [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Dict, List

import torch

from snn_delays_ext import DelayedRecurrentLeaky
from snn_delays_ext.functional.recurrent_leaky import run_recurrent_leaky_sequence
from snn_delays_ext.surrogate import triangle

#: name -> (layer keyword arguments, max_delay, sigma); DelRec's SHD and SSC neurons
NEURONS: Dict[str, tuple] = {
    "SHD neuron (tau 1.05, zero reset, ATan 5, rec. dropout 0.2)": (
        dict(beta=1 - 1 / 1.05, reset_mechanism="zero", reset_delay=False, reset_convention="spikingjelly",
             detach_reset=True, recurrent_dropout=0.2), 30, 2.0),
    "SSC neuron (tau 2, subtract, triangle, dropout 0.3, learned width)": (
        dict(beta=0.5, reset_mechanism="subtract", reset_delay=False, reset_convention="spikingjelly",
             recurrent_dropout=0.3, learn_width=True, spike_grad=triangle()), 50, 2.0),
    "snnTorch reset one step later (no dropout)": (dict(beta=0.5), 30, 2.0),
}


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def _step(layer: DelayedRecurrentLeaky, x: torch.Tensor, backend: str) -> float:
    """One forward + backward of the whole sequence on ``backend``; seconds."""
    weight, bias = layer.recurrent_weights()
    _sync(x)
    t0 = time.perf_counter()
    params = layer._params(x)
    spk, mem, _ = run_recurrent_leaky_sequence(x, None, weight, bias, layer.delays, params, layer.max_delay,
                                               layer.delay_type, layer._tap_sigma, layer.interpolation, backend)
    (spk.sum() + 0.1 * mem.square().mean()).backward()
    _sync(x)
    return time.perf_counter() - t0


def run(device: str, batch: int, steps: int, n: int, repeats: int) -> List[Dict[str, object]]:
    rows = []
    for name, (kw, max_delay, sigma) in NEURONS.items():
        torch.manual_seed(0)
        kw = dict(kw)
        layer = DelayedRecurrentLeaky(kw.pop("beta"), n, max_delay, sigma=sigma, **kw).to(device)
        x = torch.rand(steps, batch, n, device=device) * 0.6
        times: Dict[str, List[float]] = {"compiled": [], "reference": []}
        for backend in times:  # warm-up
            _step(layer, x, backend)
        for _ in range(repeats):
            for backend in times:
                times[backend].append(_step(layer, x, backend))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append({"neuron": name, "compiled_ms": round(med["compiled"], 2),
                     "reference_ms": round(med["reference"], 2),
                     "reference_over_compiled": round(med["reference"] / med["compiled"], 2)})
    return rows


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--neurons", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    rows = run(a.device, a.batch, a.steps, a.neurons, a.repeats)
    print(f"fwd+bwd of one sequence, B{a.batch} T{a.steps} N{a.neurons}, {a.device}, medians of {a.repeats}")
    for r in rows:
        print(f"  {r['neuron']:<68} compiled {r['compiled_ms']:9.1f} ms  reference {r['reference_ms']:9.1f} ms  "
              f"ratio {r['reference_over_compiled']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": a.device, "batch": a.batch, "steps": a.steps, "neurons": a.neurons,
                       "threads": a.threads, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
