"""Feed-forward synaptic delays: the compiled op against the plain-PyTorch reference, one run.

One ``DelayedLinear``-sized layer (one delay per connection), forward + backward per batch,
on spike inputs of a given density and on a dense input, at two triangle widths. Prints a table
and writes JSON; ratios are within one run (machines are shared and noisy)::

    PYTHONPATH=$PWD python benchmarks/synaptic_kernel.py                 # B128 T66 256x256 D20
    PYTHONPATH=$PWD python benchmarks/synaptic_kernel.py --batch 32 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, List

import torch

import snn_delays_ext
from snn_delays_ext import functional


def _time(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, repeats: int) -> Dict[str, float]:
    best_f = best_b = float("inf")
    for _ in range(repeats):
        xi = x.detach().requires_grad_()
        t0 = time.perf_counter()
        y = fn(xi)
        t1 = time.perf_counter()
        y.sum().backward()
        t2 = time.perf_counter()
        best_f, best_b = min(best_f, t1 - t0), min(best_b, t2 - t1)
    return {"forward_s": best_f, "backward_s": best_b, "total_s": best_f + best_b}


def main(argv: List[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--T", type=int, default=66)
    ap.add_argument("--inputs", type=int, default=256)
    ap.add_argument("--outputs", type=int, default=256)
    ap.add_argument("--max-delay", type=int, default=20)
    ap.add_argument("--density", type=float, default=0.05, help="fraction of non-zero spike inputs")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 4.0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true", help="time the compiled op only")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if snn_delays_ext.backend() != "compiled":
        raise SystemExit("the compiled ops are not built: `python setup.py build_ext --inplace` first")
    D = a.max_delay
    w = torch.randn(a.outputs, a.inputs) / a.inputs ** 0.5
    b = torch.zeros(a.outputs)
    d = torch.rand(a.outputs, a.inputs) * D
    inputs = {
        f"spikes {100 * a.density:g}%": (torch.rand(a.T, a.batch, a.inputs) < a.density).float(),
        "dense": torch.randn(a.T, a.batch, a.inputs),
    }
    rows = []
    print(f"# B{a.batch} T{a.T} {a.inputs}->{a.outputs} D{D}, {a.threads} thread(s)")
    print(f"{'input':<12} {'sigma':>5} {'impl':<10} {'fwd ms':>9} {'bwd ms':>9} {'total x ours':>13}")
    for sigma in a.sigmas:
        for name, x in inputs.items():
            impls = {"compiled": lambda z: functional.delayed_linear(z, w, b, d, D, "synaptic", sigma,
                                                                     backend="compiled")[0]}
            if not a.no_reference:
                impls["reference"] = lambda z: functional.delayed_linear(z, w, b, d, D, "synaptic", sigma,
                                                                         backend="reference")[0]
                # both compute the same function
                torch.testing.assert_close(impls["compiled"](x), impls["reference"](x), rtol=1e-4, atol=1e-4)
            res = {k: _time(f, x, a.repeats) for k, f in impls.items()}
            for k, r in res.items():
                ratio = r["total_s"] / res["compiled"]["total_s"]
                print(f"{name:<12} {sigma:>5g} {k:<10} {1e3 * r['forward_s']:>9.1f} {1e3 * r['backward_s']:>9.1f} "
                      f"{ratio:>13.2f}")
                rows.append(dict(input=name, sigma=sigma, impl=k, ratio_to_compiled=ratio, **r))
    a.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = a.out / f"synaptic-kernel-B{a.batch}-{stamp}.json"
    path.write_text(json.dumps(dict(args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                                    torch=torch.__version__, rows=rows), indent=1))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
