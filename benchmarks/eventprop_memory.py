"""Memory and time of one training step: EventProp vs BPTT (surrogate) on the same network.

Network: a delayed feed-forward synapse (64 -> 256, one delay per connection) into a recurrent
current-based LIF layer with delayed recurrent connections (``DelayedRecurrentSynaptic``), max
delay 50 steps, batch 32, input spikes at about 5 % per step and channel. One training step is
forward + ``loss.backward()``.

Reported per method and ``T``:

* ``saved_MB`` -- bytes of the tensors saved for backward, counted with
  ``torch.autograd.graph.saved_tensors_hooks`` (each storage once);
* ``peak_MB`` -- peak memory of the step above what was allocated before it
  (``torch.cuda.max_memory_allocated`` on CUDA; on CPU the growth of the process's peak
  resident set, each measurement in a fresh subprocess);
* ``time_s`` -- wall time of the step; ``rate`` -- hidden spikes per neuron and step.

Measured on a shared, heavily loaded 2-core CPU (hidden rate 4-5 %; times are not meaningful
there)::

       T  method     saved MB  peak MB
     250  EventProp       1.5     49.3
     250  BPTT           58.1    233.1     (38.7x saved, 4.7x peak)
    1000  EventProp       4.1    139.5
    1000  BPTT          134.3    860.2     (32.6x saved, 6.2x peak)
    2500  EventProp       9.4    330.8
    2500  BPTT          286.6   1988.6     (30.6x saved, 6.0x peak; quiet machine, 10.8 s vs 63.6 s)

The EventProp peak is dominated by the dense ``(T, B, N)`` outputs ``spk``, ``mem`` and their
incoming gradients, which the layer's interface returns.

Methods: ``eventprop`` (the layer; the compiled C++/CUDA EventProp ops where built),
``eventprop-reference`` (the plain-PyTorch EventProp, a Python loop over time steps) and
``surrogate`` (BPTT). One thread (``--threads 1``), same shared 2-core machine (load average
4-5 from other jobs, so absolute times are inflated), float32::

       T  method               saved MB  time s
     250  eventprop (compiled)      1.5    0.18
     250  eventprop-reference       1.5    1.69     (9.7x the compiled time)
     250  surrogate                58.1    7.78
    1000  eventprop (compiled)      4.1    0.72
    1000  eventprop-reference       4.1    9.83     (13.6x)
    1000  surrogate               134.3   33.95

Rows in ``benchmarks/results/eventprop-compiled-B32-1thread.json``. An earlier run under the
same load gave 0.18 / 2.07 / 8.24 s at T = 250 and 1.05 / 10.20 / 31.66 s at T = 1000.

Usage::

    PYTHONPATH=$PWD python benchmarks/eventprop_memory.py                 # T = 250 1000 2500
    PYTHONPATH=$PWD python benchmarks/eventprop_memory.py --T 250 --json out.json
    PYTHONPATH=$PWD python benchmarks/eventprop_memory.py --T 250 1000 --threads 1 \
        --methods eventprop eventprop-reference surrogate       # compiled vs reference time
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


METHODS = ("eventprop", "eventprop-reference", "surrogate")


def measure(method: str, T: int, B: int, n_in: int, n_hid: int, max_delay: int, rate: float,
            device: str, seed: int = 0, threads: int = 0) -> dict:
    from snn_delays_ext.eventprop import DelayedRecurrentSynaptic, eventprop_lif

    torch.manual_seed(seed)
    torch.set_num_threads(threads if threads > 0 else max(1, torch.get_num_threads()))
    layer = DelayedRecurrentSynaptic(n_in, n_hid, max_delay=max_delay,
                                     backward="surrogate" if method == "surrogate" else "eventprop",
                                     record_mem=True, device=device)
    if method == "eventprop-reference":  # the plain-PyTorch EventProp (Python time loop)
        def run(inp):
            return eventprop_lif(inp, layer.weight, layer.delays, layer.rec_weight, layer.rec_delays,
                                 config=layer.config(), backend="reference")
        backend = "reference"
    else:
        run = layer
        backend = layer.backend(torch.zeros(1, 1, layer.in_features, device=device)).backend \
            if method == "eventprop" else "autograd"
    with torch.no_grad():  # calibrated for a hidden rate of a few % per step
        layer.weight.uniform_(0.0, 0.2)
        layer.rec_weight.uniform_(-0.05, 0.05)
    x = (torch.rand(T, B, n_in, device=device) < rate).float()

    storages: dict = {}

    def pack(t: torch.Tensor):
        try:
            key = (t.untyped_storage().data_ptr(), t.device)
            size = t.untyped_storage().nbytes()
        except Exception:  # pragma: no cover
            key, size = id(t), t.numel() * t.element_size()
        storages[key] = size
        return t

    cuda = device.startswith("cuda")
    if cuda:  # one untimed step first: kernel loading and the allocator's first growth
        spk, mem = run(x)
        (mem.mean() + 0.0 * spk.sum()).backward()
        del spk, mem
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_mb()
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spk, mem = run(x)
    loss = mem.mean() + 0.0 * spk.sum()
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = _maxrss_mb() - base
    elapsed = time.perf_counter() - t0
    return {
        "method": method, "backend": backend, "threads": torch.get_num_threads(), "T": T, "B": B, "in": n_in, "hidden": n_hid, "max_delay": max_delay,
        "device": device, "saved_MB": sum(storages.values()) / 2**20, "peak_MB": peak,
        "time_s": elapsed, "rate": float(spk.detach().mean()), "input_rate": float(x.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--T", type=int, nargs="+", default=[250, 1000, 2500])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--max-delay", type=int, default=50)
    ap.add_argument("--rate", type=float, default=0.05)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--methods", nargs="+", default=["eventprop", "surrogate"], choices=METHODS,
                    help="eventprop: compiled ops where built (else the reference); "
                         "eventprop-reference: the plain-PyTorch EventProp; surrogate: BPTT")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--single", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    kw = dict(B=args.batch, n_in=args.inputs, n_hid=args.hidden, max_delay=args.max_delay,
              rate=args.rate, device=args.device, threads=args.threads)
    if args.single:
        print(json.dumps(measure(args.single[0], int(args.single[1]), **kw)))
        return
    rows = []
    for T in args.T:
        for m in args.methods:
            if args.device.startswith("cuda"):
                r = measure(m, T, **kw)
            else:  # a fresh process per measurement: the peak RSS is per process
                cmd = [sys.executable, __file__, "--single", m, str(T), "--batch", str(args.batch),
                       "--inputs", str(args.inputs), "--hidden", str(args.hidden), "--max-delay",
                       str(args.max_delay), "--rate", str(args.rate), "--device", args.device,
                       "--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
            rows.append(r)
            print(f"T={T:5d} {m:19s} saved {r['saved_MB']:9.1f} MB  peak {r['peak_MB']:9.1f} MB  "
                  f"time {r['time_s']:7.2f} s  hidden rate {r['rate']:.3f}", flush=True)
    print("\n   T  saved BPTT/EventProp  peak BPTT/EventProp")
    for T in args.T:
        by = {r["method"]: r for r in rows if r["T"] == T}
        if "eventprop" in by and "surrogate" in by:
            e, s = by["eventprop"], by["surrogate"]
            print(f"{T:5d}  {s['saved_MB'] / max(e['saved_MB'], 1e-9):19.1f}x  "
                  f"{s['peak_MB'] / max(e['peak_MB'], 1e-9):18.1f}x")
    if any(r["method"] == "eventprop-reference" for r in rows):
        print("\n   T  time EventProp reference/compiled")
        for T in args.T:
            by = {r["method"]: r for r in rows if r["T"] == T}
            if "eventprop" in by and "eventprop-reference" in by:
                print(f"{T:5d}  {by['eventprop-reference']['time_s'] / max(by['eventprop']['time_s'], 1e-9):30.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
