"""Time and memory of one training step (forward + backward) for every delay implementation.

Usage (from the repository root)::

    python -m benchmarks.run --suite cpu --quick          # a few minutes on a small CPU
    python -m benchmarks.run --suite cpu                  # the CPU targets (SSC-like B 32)
    python -m benchmarks.run --suite gpu                  # full shapes on a CUDA device

Each *group* (one shape) runs in its own Python subprocess (``--in-process`` to debug). Inside
a group every implementation is built on the same input and parameters, warmed up, measured
once for memory, then timed round-robin (``repeats`` rounds, so that load changes on a shared
machine hit all implementations alike); the median is reported, and ratios are taken within
the group. The CPU suite runs one torch thread per worker by default (``--threads``): on a
shared, oversubscribed machine more threads spin against each other and the timings become
noise.

Memory, per implementation:

- ``saved_MB``: bytes of the tensors autograd keeps for backward (distinct storages, counted
  with :mod:`benchmarks.saved_bytes`; parameters and the input excluded), exact.
- ``peak_MB``: the peak of the extra memory during one forward + backward, after a warm-up
  call. CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before. CPU: the
  bytes malloc has handed out and not taken back (glibc ``mallinfo2``: heap in use + mmapped
  blocks; this is what the tensors hold, independent of the allocator's caching, unlike the
  resident set size), sampled every ~0.5 ms by a thread during the call, minus the value
  before it. A BPTT graph's saved tensors live from the end of the forward into the backward,
  long against the sampling period, so the sampled peak is close to the true one. Without
  glibc the resident set size is sampled instead (``meta.peak_method`` says which).

Results are printed as a table and written to ``benchmarks/results/<suite>[-quick]-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

# --------------------------------------------------------------------------------------------
# suites: full shapes are the papers' (docs/design.rst, benchmark protocol); the CPU suite scales the batch (``--scale``)
# --------------------------------------------------------------------------------------------

SHD = dict(T=100, B=256, C=140, N=256, D=25)
SSC = dict(T=250, B=128, C=140, N=256, D=50)
DCLS_PAPER = dict(T=1000, B=256, C=140, H=256, D=512)


def _suite(name: str, quick: bool) -> Dict[str, Any]:
    """Shapes and sweeps of a suite (before batch scaling)."""
    if name == "gpu":
        s = dict(scale=1.0, max_gflop=1e6, max_mem_gb=60.0, repeats=10, warmup=2,
                 sweep_D=[25, 50, 100, 250, 500, 1000], sweep_T=[100, 500, 1000, 2500],
                 dcls_D=[64, 128, 256, 512, 1024], dcls_T=1000, dcls_B=None, threads=0,
                 growth_D=[25, 100, 250, 500, 1000], growth_impls=["ours", "no_delay_loop"])
        if quick:
            s.update(repeats=5, warmup=1, sweep_D=[25, 250, 1000], sweep_T=[100, 1000],
                     dcls_D=[64, 512], growth_D=[25, 1000])
        return s
    if name == "cpu":
        s = dict(scale=0.25, max_gflop=600.0, max_mem_gb=6.0, repeats=5, warmup=1, threads=1,
                 sweep_D=[25, 100, 250, 500, 1000], sweep_T=[100, 500, 1000],
                 dcls_D=[64, 128, 256, 512], dcls_T=250, dcls_B=16,
                 growth_D=[25, 100, 250, 500, 1000], growth_impls=["ours", "no_delay_loop"])
        if quick:
            s.update(scale=1 / 32, max_gflop=30.0, max_mem_gb=2.0, repeats=3, warmup=1,
                     sweep_D=[25, 250, 1000], sweep_T=[500], dcls_D=[16, 64], dcls_T=100, dcls_B=2,
                     growth_D=[25, 1000], growth_impls=["ours"])
        return s
    raise ValueError(f"--suite: expected 'cpu' or 'gpu', got {name!r}")


def make_groups(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The list of groups (one shape each) the run measures."""
    s = _suite(args.suite, args.quick)
    scale = args.scale if args.scale is not None else s["scale"]

    def sc(shape: Dict[str, int]) -> Dict[str, int]:
        out = dict(shape)
        out["B"] = max(1, int(round(shape["B"] * scale)))
        return out

    groups = [
        dict(name="SHD-like", scenario="recurrent", shape=sc(SHD)),
        dict(name="SSC-like", scenario="recurrent", shape=sc(SSC)),
    ]
    for D in s["sweep_D"]:
        if D != SSC["D"]:
            groups.append(dict(name=f"sweep-D{D}", scenario="recurrent", shape=sc({**SSC, "D": D}),
                               impls=["ours", "reference", "delrec_style", "no_delay_loop"]))
    for T in s["sweep_T"]:
        if T != SSC["T"]:
            groups.append(dict(name=f"sweep-T{T}", scenario="recurrent", shape=sc({**SSC, "T": T}),
                               impls=["ours", "reference", "delrec_style", "no_delay_loop"]))
    groups.append(dict(name="D-growth", scenario="recurrent", shape=sc(SSC),
                       impls=s["growth_impls"], sweep=dict(key="D", values=s["growth_D"])))
    for D in s["dcls_D"]:
        shape = sc({**DCLS_PAPER, "D": D, "T": s["dcls_T"]})
        if s["dcls_B"] and args.scale is None:
            shape["B"] = s["dcls_B"]  # dense synaptic delays are too costly for a CPU at B 64
        groups.append(dict(name=f"DCLS-paper-D{D}", scenario="feedforward", shape=shape))
    if args.only:
        keys = [k.strip() for k in args.only.split(",")]
        groups = [g for g in groups if any(k in g["name"] for k in keys)]
    common = dict(
        sigma=args.sigma, device=args.device,
        repeats=args.repeats or s["repeats"], warmup=args.warmup or s["warmup"],
        max_gflop=args.max_gflop or s["max_gflop"], max_mem_gb=args.max_mem_gb or s["max_mem_gb"],
        threads=args.threads if args.threads >= 0 else s["threads"], seed=args.seed,
    )
    for g in groups:
        g.update(common)
    return groups


# --------------------------------------------------------------------------------------------
# measurement (inside the worker process)
# --------------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _mallinfo2():
    """glibc's ``mallinfo2`` (bytes in use: ``uordblks`` heap + ``hblkhd`` mmapped), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class _MI2(ctypes.Structure):
        _fields_ = [(k, ctypes.c_size_t) for k in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split())]

    fn.restype = _MI2
    return fn


_MALLINFO2 = _mallinfo2()
#: How the CPU peak is measured: the C heap's bytes in use, or the resident set size.
PEAK_METHOD_CPU = "malloc-in-use (glibc mallinfo2), sampled" if _MALLINFO2 else "RSS, sampled"


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the high-water mark
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _live_bytes() -> int:
    """Bytes the process has allocated and not freed (malloc in use), else its RSS."""
    if _MALLINFO2 is not None:
        m = _MALLINFO2()
        return int(m.uordblks) + int(m.hblkhd)
    return _rss()


class _PeakSampler:
    """Samples :func:`_live_bytes` in a thread; ``peak`` is the largest value seen."""

    def __init__(self, period: float = 5e-4) -> None:
        self.period = period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _live_bytes())
            time.sleep(self.period)

    def __enter__(self) -> "_PeakSampler":
        self.peak = _live_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _live_bytes())


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fwd_bwd(case) -> float:
    loss, spk = case.step()
    loss.backward()
    for p in case.params:
        p.grad = None
    return float(spk.detach().float().mean())


def run_group(group: Dict[str, Any]) -> Dict[str, Any]:
    """Measure every implementation of one group; returns the group with a ``results`` list."""
    import gc

    import torch

    import snn_delays_ext

    from .cases import IMPLS, build_case, dcls_status, estimate
    from .saved_bytes import SavedTensorCounter

    if group.get("threads"):
        torch.set_num_threads(int(group["threads"]))
    device = group["device"]
    scenario, shape, sigma = group["scenario"], group["shape"], group["sigma"]
    impls = group.get("impls") or list(IMPLS[scenario])
    sweep = group.get("sweep")  # {"key": "D", "values": [...]}: one row per impl and value
    variants = [dict(shape, **{sweep["key"]: v}) for v in sweep["values"]] if sweep else [shape]
    results: List[Dict[str, Any]] = []
    cases: Dict[int, Any] = {}
    todo = [(sh, impl) for sh in variants for impl in impls]
    for sh, impl in todo:
        gflop, saved_est = estimate(scenario, impl, sh, sigma)
        r: Dict[str, Any] = dict(impl=impl, est_gflop=round(gflop, 2), status="ok")
        r["label"] = f"ours[{snn_delays_ext.backend()}]" if impl == "ours" else impl
        if sweep:
            r["shape"] = sh
            r["label"] += f" {sweep['key']}{sh[sweep['key']]}"
        results.append(r)
        if impl == "dcls" and not dcls_status()[0]:
            r.update(status="skipped", reason=dcls_status()[1])
            continue
        if gflop > group["max_gflop"]:
            r.update(status="skipped", reason=f"estimated {gflop:.0f} GFLOP > --max-gflop {group['max_gflop']:g}")
            continue
        if saved_est > group["max_mem_gb"] * 2**30:
            r.update(status="skipped",
                     reason=f"estimated {saved_est / 2**30:.1f} GB saved > --max-mem-gb {group['max_mem_gb']:g}")
            continue
        try:
            case = build_case(scenario, impl, sh, sigma, device, torch.float32, group["seed"])
            for _ in range(group["warmup"]):
                _fwd_bwd(case)
            _sync(device)
            # memory: one measured call
            gc.collect()
            exclude = list(case.params) + list(case.inputs)
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
                with SavedTensorCounter(exclude=exclude) as counter:
                    loss, spk = case.step()
                loss.backward()
                _sync(device)
                peak = torch.cuda.max_memory_allocated() - before
            else:
                before = _live_bytes()
                with _PeakSampler() as sampler:
                    with SavedTensorCounter(exclude=exclude) as counter:
                        loss, spk = case.step()
                    loss.backward()
                peak = sampler.peak - before
            for p in case.params:
                p.grad = None
            r["saved_MB"] = counter.stats.total_bytes / 2**20
            r["saved_by_dtype_MB"] = {k: v / 2**20 for k, v in counter.stats.by_dtype.items()}
            r["peak_MB"] = max(peak, 0) / 2**20
            r["spike_rate"] = float(spk.detach().float().mean())
            del loss, spk
            r["times_ms"] = []
            cases[len(results) - 1] = case
        except Exception as e:  # a failing implementation must not hide the others
            r.update(status="error", reason=f"{type(e).__name__}: {e}")
    # timing, round-robin over the implementations (and sweep values)
    for _ in range(group["repeats"]):
        for idx, case in cases.items():
            r = results[idx]
            _sync(device)
            t0 = time.perf_counter()
            _fwd_bwd(case)
            _sync(device)
            r["times_ms"].append((time.perf_counter() - t0) * 1e3)
    for r in results:
        if r.get("times_ms"):
            r["time_ms"] = statistics.median(r["times_ms"])
    if sweep:
        # growth along the sweep: time / time of the same implementation at the first value
        for r in results:
            first = next((x for x in results if x["impl"] == r["impl"] and "time_ms" in x), None)
            if first is not None and "time_ms" in r:
                r["time_vs_first"] = r["time_ms"] / first["time_ms"]
        out = dict(group)
        out["results"] = results
        return out
    # ratios against ours (impl / ours: > 1 means ours is faster or lighter)
    ours = next((x for x in results if x["impl"] == "ours" and "time_ms" in x), None)
    for r in results:
        if ours is None or "time_ms" not in r:
            continue
        r["time_vs_ours"] = r["time_ms"] / ours["time_ms"]
        if ours.get("peak_MB", 0) > 0:
            r["peak_vs_ours"] = r["peak_MB"] / ours["peak_MB"]
        if ours.get("saved_MB", 0) > 0:
            r["saved_vs_ours"] = r["saved_MB"] / ours["saved_MB"]
    out = dict(group)
    out["results"] = results
    return out


def _worker(spec: str) -> None:
    group = json.loads(spec)
    res = run_group(group)
    print("RESULT_JSON " + json.dumps(res), flush=True)


def _run_subprocess(group: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", json.dumps(group)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(group, error=f"group timed out after {timeout:.0f} s", results=[])
    for line in p.stdout.splitlines():
        if line.startswith("RESULT_JSON "):
            return json.loads(line[len("RESULT_JSON "):])
    return dict(group, error=f"worker failed (rc {p.returncode}): {p.stderr[-2000:]}", results=[])


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _fmt(v: Optional[float], spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        width = spec.split(".")[0]
        return "-".rjust(int(width)) if width.isdigit() else "-"
    return format(v, spec)


def format_table(groups: List[Dict[str, Any]]) -> str:
    """A plain-text table of all groups (``x ours``: implementation / ours)."""
    head = (f"{'group':<18} {'shape':<28} {'impl':<22} {'time ms':>10} {'x ours':>7} "
            f"{'peak MB':>9} {'x ours':>7} {'saved MB':>9} {'x ours':>7} {'spk':>5}  note")
    lines = [head, "-" * len(head)]
    for g in groups:
        sh = g["shape"]
        shape = " ".join(f"{k}{sh[k]}" for k in ("B", "T", "C", "N", "H", "D") if k in sh)
        if g.get("error"):
            lines.append(f"{g['name']:<18} {shape:<28} ERROR {g['error'][:200]}")
        for r in g["results"]:
            note = r.get("reason", "") if r["status"] != "ok" else ""
            if "time_vs_first" in r:
                note = (f"x first {r['time_vs_first']:.2f} (time / this impl's at the first "
                        f"{g['sweep']['key']}) " + note).strip()
            lines.append(
                f"{g['name']:<18} {shape:<28} {r['label']:<22} {_fmt(r.get('time_ms'), '10.1f')} "
                f"{_fmt(r.get('time_vs_ours'), '7.2f')} {_fmt(r.get('peak_MB'), '9.1f')} "
                f"{_fmt(r.get('peak_vs_ours'), '7.2f')} {_fmt(r.get('saved_MB'), '9.1f')} "
                f"{_fmt(r.get('saved_vs_ours'), '7.2f')} {_fmt(r.get('spike_rate'), '5.3f')}  {note}"
            )
    return "\n".join(lines)


def growth(groups: List[Dict[str, Any]], key: str) -> Dict[str, Dict[str, float]]:
    """Time of each implementation along the SSC-like sweep over ``key`` ("D" or "T")."""
    out: Dict[str, Dict[str, float]] = {}
    for g in groups:
        if g.get("sweep") or g["scenario"] != "recurrent" or not (
                g["name"].startswith("sweep-" + key) or g["name"] == "SSC-like"):
            continue
        for r in g["results"]:
            if "time_ms" in r:
                out.setdefault(r["label"], {})[str(g["shape"][key])] = r["time_ms"]
    return {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in out.items()}


def _meta(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    import snn_delays_ext

    from .cases import dcls_status

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = ""
    dev = args.device
    return dict(
        suite=args.suite, quick=args.quick, argv=sys.argv[1:],
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        backend=snn_delays_ext.backend(), version=snn_delays_ext.__version__,
        torch=torch.__version__, python=platform.python_version(), platform=platform.platform(),
        device=dev, device_name=(torch.cuda.get_device_name() if dev.startswith("cuda") else platform.processor()),
        cpu_count=os.cpu_count(),
        loadavg=list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        dcls=dict(zip(("available", "info"), dcls_status())), git_commit=commit,
        peak_method=("torch.cuda.max_memory_allocated" if dev.startswith("cuda") else PEAK_METHOD_CPU),
    )


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", choices=("cpu", "gpu"), default="cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, sweep points and a smaller batch")
    ap.add_argument("--scale", type=float, default=None,
                    help="batch-size factor on the papers' shapes (cpu: 0.25, cpu --quick: 1/16, gpu: 1)")
    ap.add_argument("--only", default="", help="comma-separated substrings of group names to run")
    ap.add_argument("--sigma", type=float, default=0.0, help="extra triangle half-width (default 0)")
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--max-gflop", type=float, default=0.0, help="skip cases estimated above this")
    ap.add_argument("--max-mem-gb", type=float, default=0.0, help="skip cases estimated above this")
    ap.add_argument("--threads", type=int, default=-1,
                    help="torch threads per worker (cpu suite default 1: the machine is shared; "
                         "0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="default: cuda for --suite gpu, else cpu")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per group")
    ap.add_argument("--in-process", action="store_true", help="no subprocesses (debugging)")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/...)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        _worker(args.worker)
        return 0
    if args.device is None:
        args.device = "cuda" if args.suite == "gpu" else "cpu"
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("--suite gpu / --device cuda: no CUDA device available", file=sys.stderr)
            return 2
    meta = _meta(args)
    groups = make_groups(args)
    meta["torch_threads"] = groups[0]["threads"] if groups else None
    print(f"# {len(groups)} groups, suite {args.suite}{' (quick)' if args.quick else ''}, "
          f"backend {meta['backend']}, device {args.device}, dcls {meta['dcls']['info']}", flush=True)
    done = []
    t0 = time.time()
    for g in groups:
        t1 = time.time()
        res = run_group(g) if args.in_process else _run_subprocess(g, args.timeout)
        done.append(res)
        print(format_table([res]).split("\n", 2)[-1], flush=True)
        print(f"#   {g['name']}: {time.time() - t1:.0f} s", flush=True)
    meta["wall_s"] = round(time.time() - t0, 1)
    interleaved = {r["label"]: r["time_vs_first"] for g in done if g.get("sweep")
                   for r in g["results"] if "time_vs_first" in r}
    report = dict(meta=meta, groups=done, growth_D=growth(done, "D"), growth_T=growth(done, "T"),
                  growth_D_interleaved=interleaved)
    print()
    print(format_table(done))
    for key in ("D", "T"):
        g = report[f"growth_{key}"]
        if g:
            print(f"\ntime (ms) vs {key} at the SSC-like shape:")
            for label, series in g.items():
                print(f"  {label:<22} " + "  ".join(f"{k}: {v:.0f}" for k, v in series.items()))
    if interleaved:
        print("\ntime / time at the first D, interleaved in one process (D-growth group):")
        for label, v in interleaved.items():
            print(f"  {label:<28} {v:.2f}")
    out = Path(args.out) if args.out else RESULTS / (
        f"{args.suite}{'-quick' if args.quick else ''}-"
        f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
