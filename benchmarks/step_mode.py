"""Step mode: the cost of one time step against ``max_delay``, ring buffer vs history buffer.

A layer called on one ``(B, F)`` step at a time keeps its past inputs (or spikes). The history
buffer (a ``(K, B, F)`` tensor concatenated every step) costs ``O(K B F)`` per step; the ring
buffer (:class:`snn_delays_ext.functional.delay_line.DelayLine`, what the layers use when the
history is long) costs ``O(B F W)``. Both are timed round-robin in this process, on the same
layer and input, for a 200-step loop with a backward pass (training) and without autograd
(inference); the table gives the medians and their ratios.

    python -m benchmarks.step_mode [--threads 1] [--repeats 3] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List

import torch

import snn_delays_ext.functional.delay_line as delay_line
from snn_delays_ext import DelayedLinear, DelayedRecurrentLeaky


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


def _loop(layer: torch.nn.Module, x: torch.Tensor, train: bool) -> float:
    reset = getattr(layer, "reset_state", None) or getattr(layer, "reset_mem")
    reset()
    _sync(x)
    t0 = time.perf_counter()
    with torch.set_grad_enabled(train):
        total = x.new_zeros(())
        for t in range(x.shape[0]):
            out = layer(x[t])
            total = total + (out[0] if isinstance(out, tuple) else out).sum()
        if train:
            total.backward()
    _sync(x)
    return time.perf_counter() - t0


def _timed(layer: torch.nn.Module, x: torch.Tensor, train: bool, ring: bool) -> float:
    delay_line.FORCE = ring  # one implementation, whatever the rule says
    try:
        return _loop(layer, x, train)
    finally:
        delay_line.FORCE = None


CASES: Dict[str, Callable[[int], torch.nn.Module]] = {
    "DelayedLinear axonal 64->64": lambda D: DelayedLinear(64, 64, max_delay=D, delay_type="axonal"),
    "DelayedLinear synaptic 64->64": lambda D: DelayedLinear(64, 64, max_delay=D, delay_type="synaptic"),
    "DelayedRecurrentLeaky axonal 64": lambda D: DelayedRecurrentLeaky(0.9, 64, max_delay=D),
    "DelayedRecurrentLeaky synaptic 64": lambda D: DelayedRecurrentLeaky(0.9, 64, max_delay=D, delay_type="synaptic"),
}


def main(argv: List[str] = None) -> List[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--delays", type=int, nargs="+", default=[10, 200, 2000])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    print(f"{'case':34s} {'D':>5s} {'mode':6s} {'buffer ms':>10s} {'ring ms':>8s} {'buffer/ring':>11s}")
    for name, make in CASES.items():
        for D in args.delays:
            layer = make(D).to(args.device)
            x = (torch.rand(args.steps, args.batch, 64, device=args.device) < 0.2).float()
            for train in (True, False):
                times = {True: [], False: []}
                _timed(layer, x, train, True)  # warm-up
                for _ in range(args.repeats):
                    for ring in (False, True):
                        times[ring].append(_timed(layer, x, train, ring))
                buf, ring_t = statistics.median(times[False]), statistics.median(times[True])
                mode = "train" if train else "infer"
                rows.append({"case": name, "max_delay": D, "mode": mode, "buffer_ms": 1e3 * buf,
                             "ring_ms": 1e3 * ring_t, "ratio": buf / ring_t})
                print(f"{name:34s} {D:5d} {mode:6s} {1e3 * buf:10.1f} {1e3 * ring_t:8.1f} {buf / ring_t:11.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "threads": args.threads, "steps": args.steps, "batch": args.batch,
                       "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
