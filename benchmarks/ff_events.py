"""Feed-forward synaptic delays on sparse (spike) inputs: the layer alone, one run.

Forward + backward of one ``DelayedLinear`` (one delay per connection) on inputs with a given
fraction of non-zeros, against the same layer without delays (``nn.Linear``), the plain-PyTorch
reference and, where the ``DCLS`` package is installed, ``Dcls1d`` (the DCLS paper's layer, the
same causal padding as ``benchmarks/cases.py``; the reference on the CPU only). ``--lif`` puts the same fused LIF neurons
(:func:`snn_delays_ext.functional.leaky_sequence`) after every layer. On CUDA the peak memory
of each step is reported too, and ``ours_dense`` is the compiled op with
``torch.use_deterministic_algorithms(True)``, which turns the event-driven CUDA kernels off.

The input is data (no gradient) unless ``--input-grad`` (a hidden layer: the dense ``grad_x`` is
then computed as well). Times are medians; ratios are within one run::

    python -m benchmarks.ff_events --threads 1                         # CPU shapes
    python -m benchmarks.ff_events --device cuda --shapes 1000x256x140x256x512 --density 0.1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import snntorch.surrogate as sg
import torch
import torch.nn.functional as F

import snn_delays_ext
from snn_delays_ext.functional import LeakyParameters, delayed_linear, leaky_sequence

Shape = Tuple[int, int, int, int, int]  # T, B, in, out, D


def parse_shape(text: str) -> Shape:
    """``"66x128x256x256x20"`` -> ``(66, 128, 256, 256, 20)`` (T, B, in, out, max_delay)."""
    parts = text.lower().split("x")
    if len(parts) != 5 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected TxBxINxOUTxD such as 66x128x256x256x20, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def _dcls_layer(n_in: int, n_out: int, D: int, device: str) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    try:
        from DCLS.construct.modules import Dcls1d
    except ImportError:
        return None
    layer = Dcls1d(n_in, n_out, kernel_count=1, dilated_kernel_size=D + 1, groups=1, bias=True,
                   version="gauss").to(device)
    return lambda x: layer(F.pad(x.permute(1, 2, 0), (D, 0))).permute(2, 0, 1)


def _ways(n_in: int, n_out: int, D: int, device: str) -> Dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    layer = snn_delays_ext.DelayedLinear(n_in, n_out, max_delay=D).to(device)
    linear = torch.nn.Linear(n_in, n_out).to(device)
    ways: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"no_delay": linear, "ours": layer}
    if device == "cpu":  # (on a GPU the reference's dense convolution over D + 1 lags is not the question)
        ways["reference"] = lambda x: delayed_linear(x, layer.weight, layer.bias, layer.delays, D, "synaptic",
                                                     layer.sigma, backend="reference")[0]
    if device == "cuda":
        def dense(x: torch.Tensor) -> torch.Tensor:
            prev = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True)
            try:
                return layer(x)
            finally:
                torch.use_deterministic_algorithms(prev)

        ways["ours_dense"] = dense
    dcls = _dcls_layer(n_in, n_out, D, device)
    if dcls is not None:
        ways["dcls"] = dcls
    return ways


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _step(way: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, lif: Optional[LeakyParameters],
          device: str) -> Tuple[float, float]:
    """Seconds and peak bytes (CUDA; 0 on the CPU) of one forward + backward."""
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    _sync(device)
    t0 = time.perf_counter()
    y = way(x)
    if lif is not None:
        y = leaky_sequence(y, lif)[0]
    y.square().mean().backward() if lif is None else y.mean().backward()
    _sync(device)
    dt = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else 0
    return dt, float(peak)


def run(device: str, shapes: Sequence[Shape], density: float, repeats: int, input_grad: bool,
        lif: bool) -> List[Dict[str, object]]:
    rows = []
    for T, B, n_in, n_out, D in shapes:
        ways = _ways(n_in, n_out, D, device)
        g = torch.Generator().manual_seed(1)
        x = (torch.rand(T, B, n_in, generator=g) < density).float().to(device).requires_grad_(input_grad)
        neurons = None
        if lif:
            neurons = LeakyParameters(torch.tensor(0.9, device=device), torch.tensor(1.0, device=device),
                                      sg.atan(), "subtract", True)
        times: Dict[str, List[float]] = {k: [] for k in ways}
        peaks: Dict[str, float] = {}
        for name, way in ways.items():
            _step(way, x, neurons, device)  # warm-up
        for _ in range(repeats):
            for name, way in ways.items():
                dt, peak = _step(way, x, neurons, device)
                times[name].append(dt)
                peaks[name] = max(peaks.get(name, 0.0), peak)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        row: Dict[str, object] = {"shape": f"T{T} B{B} {n_in}->{n_out} D{D}", "density": density,
                                  "input_grad": input_grad, "lif": lif}
        for k, v in med.items():
            row[f"{k}_ms"] = round(v, 3)
            if device == "cuda":
                row[f"{k}_peak_mb"] = round(peaks[k] / 2**20, 1)
        row["ours_over_no_delay"] = round(med["ours"] / med["no_delay"], 2)
        if "reference" in med:
            row["reference_over_ours"] = round(med["reference"] / med["ours"], 2)
        if "dcls" in med:
            row["dcls_over_ours"] = round(med["dcls"] / med["ours"], 2)
            if device == "cuda" and peaks["ours"] > 0:
                row["dcls_peak_over_ours"] = round(peaks["dcls"] / peaks["ours"], 2)
        if "ours_dense" in med:
            row["dense_over_events"] = round(med["ours_dense"] / med["ours"], 2)
        rows.append(row)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shapes", nargs="+", type=parse_shape, default=None,
                    help="TxBxINxOUTxD (default CPU: 66x128x256x256x20 250x64x140x256x64; "
                         "CUDA: 1000x256x140x256x512, the DCLS paper's layer)")
    ap.add_argument("--density", type=float, default=0.05, help="fraction of non-zero inputs (default 0.05)")
    ap.add_argument("--input-grad", action="store_true", help="the input needs a gradient (a hidden layer)")
    ap.add_argument("--lif", action="store_true", help="the same fused LIF neurons after every layer")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if not 0.0 <= a.density <= 1.0:
        ap.error(f"--density: expected a fraction in [0, 1], got {a.density}")
    if a.device == "cpu":
        torch.set_num_threads(a.threads)
    shapes = a.shapes or ([(1000, 256, 140, 256, 512)] if a.device == "cuda"
                          else [(66, 128, 256, 256, 20), (250, 64, 140, 256, 64)])
    rows = run(a.device, shapes, a.density, a.repeats, a.input_grad, a.lif)
    where = f"{a.device}, {a.threads} thread(s)" if a.device == "cpu" else a.device
    print(f"fwd+bwd of one synaptic-delay layer{' + LIF' if a.lif else ''}, {a.density:.0%} input events, "
          f"{'hidden layer (grad_x)' if a.input_grad else 'input layer (no grad_x)'}, {where}, "
          f"medians of {a.repeats}")
    for r in rows:
        ms = "  ".join(f"{k[:-3]} {v:.2f} ms" for k, v in r.items() if k.endswith("_ms"))
        extra = "".join(f"  {k} {r[k]}" for k in ("dcls_over_ours", "dcls_peak_over_ours", "dense_over_events")
                        if k in r)
        ref = f"  reference/ours {r['reference_over_ours']}x" if "reference_over_ours" in r else ""
        print(f"  {r['shape']:<28} {ms}  ours/no_delay {r['ours_over_no_delay']}x{ref}{extra}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": a.device, "threads": a.threads if a.device == "cpu" else None,
                       "repeats": a.repeats, "torch": torch.__version__, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
