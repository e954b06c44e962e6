"""Memory and time of one training step, EventProp vs surrogate BPTT (issue 4's benchmark).

The network of issue 4: a delayed feed-forward synapse ``64 -> 256`` into a recurrent
current-based LIF layer with delays (max delay 50), input spikes at ~5 % rate, ``B 32``,
``T = 250, 1000, 2500``. For each ``T`` and each method the script reports the bytes autograd
saves for backward (:mod:`benchmarks.saved_bytes`, exact) and the peak extra memory of one
forward + backward (see ``benchmarks/run.py`` for the method), plus the time of a step.

Methods (rows):

- ``synaptic-eventprop`` / ``synaptic-surrogate``:
  ``snn_delays_ext.eventprop.DelayedRecurrentSynaptic(64, 256, max_delay=50,
  backward="eventprop" | "surrogate")`` when that layer is importable (skipped, with the reason,
  where it is not);
- ``leaky-surrogate``: the surrogate BPTT path that exists in the core package, a
  ``DelayedLinear(64, 256, 50)`` into a ``DelayedRecurrentLeaky(256, 50)`` (voltage-based
  neurons: the same cost structure as BPTT through the current-based layer, one more state).

Usage::

    python -m benchmarks.eventprop_memory                       # B 8, T 250 1000 (CPU-sized)
    python -m benchmarks.eventprop_memory --batch 32 --T 250 1000 2500 --device cuda

Target (issue 4): at ``T = 2500`` EventProp saves at least 5x fewer bytes than BPTT and needs at
most half its peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .run import PEAK_METHOD_CPU, RESULTS, _live_bytes, _PeakSampler, _sync, format_table
from .saved_bytes import SavedTensorCounter

IN, HIDDEN, MAX_DELAY, RATE = 64, 256, 50, 0.05


def _build(method: str, device: str, weight_scale: float = 2.0,
           ) -> Tuple[Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]], List[torch.Tensor]]:
    """``(loss_fn(x), params)`` of one method; raises ImportError/TypeError if unavailable."""
    if method.startswith("synaptic-"):
        from snn_delays_ext.eventprop import DelayedRecurrentSynaptic  # may not exist yet

        layer = DelayedRecurrentSynaptic(IN, HIDDEN, max_delay=MAX_DELAY, weight_scale=weight_scale,
                                         backward=method.split("-", 1)[1]).to(device)

        def loss(x):
            spk, mem = layer(x)
            return mem.square().mean() + spk.mean(), spk

        return loss, list(layer.parameters())
    if method == "leaky-surrogate":
        import snn_delays_ext

        ff = snn_delays_ext.DelayedLinear(IN, HIDDEN, max_delay=MAX_DELAY).to(device)
        with torch.no_grad():
            ff.weight.mul_(4.0)
        rec = snn_delays_ext.DelayedRecurrentLeaky(beta=0.9, linear_features=HIDDEN,
                                                   max_delay=MAX_DELAY).to(device)

        def loss(x):
            spk, mem = rec(ff(x))
            return mem.square().mean() + spk.mean(), spk

        return loss, list(ff.parameters()) + list(rec.parameters())
    raise ValueError(f"method: unknown {method!r}")


METHODS = ("synaptic-eventprop", "synaptic-surrogate", "leaky-surrogate")


def measure(method: str, T: int, batch: int, device: str, repeats: int, seed: int = 0,
            weight_scale: float = 2.0) -> Dict[str, Any]:
    """Saved bytes, peak memory and median step time of one method at one ``T``."""
    r: Dict[str, Any] = dict(impl=method, label=method, status="ok")
    torch.manual_seed(seed)
    try:
        loss_fn, params = _build(method, device, weight_scale)
    except Exception as e:
        r.update(status="skipped", reason=f"{type(e).__name__}: {e}")
        return r
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, batch, IN, generator=gen) < RATE).float().to(device)
    try:
        loss, _ = loss_fn(x)  # warm-up
        loss.backward()
        del loss
        for p in params:
            p.grad = None
        gc.collect()
        _sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            with SavedTensorCounter(exclude=params + [x]) as c:
                loss, spk = loss_fn(x)
            loss.backward()
            _sync(device)
            peak = torch.cuda.max_memory_allocated() - before
        else:
            before = _live_bytes()
            with _PeakSampler() as s:
                with SavedTensorCounter(exclude=params + [x]) as c:
                    loss, spk = loss_fn(x)
                loss.backward()
            peak = s.peak - before
        r.update(saved_MB=c.stats.total_bytes / 2**20, peak_MB=max(peak, 0) / 2**20,
                 saved_by_dtype_MB={k: v / 2**20 for k, v in c.stats.by_dtype.items()},
                 spike_rate=float(spk.detach().float().mean()))
        del loss, spk
        times = []
        for _ in range(repeats):
            for p in params:
                p.grad = None
            _sync(device)
            t0 = time.perf_counter()
            loss, _ = loss_fn(x)
            loss.backward()
            _sync(device)
            times.append((time.perf_counter() - t0) * 1e3)
            del loss
        r.update(times_ms=times, time_ms=statistics.median(times))
    except Exception as e:
        r.update(status="error", reason=f"{type(e).__name__}: {e}")
    return r


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.eventprop_memory", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--T", type=int, nargs="+", default=[250, 1000])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads on CPU (0: torch's)")
    ap.add_argument("--weight-scale", type=float, default=2.0,
                    help="input weight scale of the current-based layer (2: a few %% spikes)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads and not args.device.startswith("cuda"):
        torch.set_num_threads(args.threads)
    import snn_delays_ext

    groups = []
    for T in args.T:
        res = [measure(m, T, args.batch, args.device, args.repeats, weight_scale=args.weight_scale)
               for m in args.methods]
        ref = next((r for r in res if r["impl"] == "synaptic-surrogate" and "saved_MB" in r), None)
        for r in res:  # ratios against BPTT through the same layer (> 1: lighter than BPTT)
            if ref is not None and r.get("saved_MB"):
                r["saved_vs_ours"] = r["saved_MB"] / ref["saved_MB"]
                r["peak_vs_ours"] = r["peak_MB"] / ref["peak_MB"] if ref["peak_MB"] else None
                r["time_vs_ours"] = r["time_ms"] / ref["time_ms"] if ref.get("time_ms") else None
        g = dict(name=f"T{T}", scenario="eventprop", shape=dict(B=args.batch, T=T, C=IN,
                 N=HIDDEN, D=MAX_DELAY), results=res)
        groups.append(g)
        print(format_table([g]).split("\n", 2)[-1], flush=True)
    meta = dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), argv=sys.argv[1:],
                backend=snn_delays_ext.backend(), torch=torch.__version__, device=args.device,
                peak_method=("torch.cuda.max_memory_allocated" if args.device.startswith("cuda")
                             else PEAK_METHOD_CPU),
                ratio_note="x ours columns: method / synaptic-surrogate (BPTT through the same layer)")
    print()
    print(format_table(groups).replace("x ours", "x bptt"))
    out = Path(args.out) if args.out else RESULTS / (
        f"eventprop-memory-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(meta=meta, groups=groups), indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
