"""One script for a CUDA machine: build, test, train every preset, benchmark, one summary.

From a fresh checkout on a machine with torch (CUDA), nvcc and a GPU, no internet needed::

    python -m benchmarks.gpu_check                       # everything, about 5 minutes on an H200
    python -m benchmarks.gpu_check --wheels WHEELS_DIR   # first install carried pure-Python wheels
    python -m benchmarks.gpu_check --data-dir DATA       # real data where DATA/<dataset> exists

Steps (each with its own time limit; a failed step does not stop the others):

1. ``build``: ``python setup.py build_ext --inplace`` for the local GPU's architecture
   (``TORCH_CUDA_ARCH_LIST`` from ``torch.cuda.get_device_capability()``, ``SNN_DELAYS_CUDA=1``),
   then checks that the CPU and CUDA kernels (delay ops and EventProp ops) are loaded.
2. ``pytest -m cuda``: every CUDA test (layers and presets against the CPU, no host-device
   synchronisation in the hot path, the training CLI, NCCL under torchrun, EventProp overflow).
3. ``preset NAME``: ``snn-delays train --preset NAME --device cuda --epochs 1`` for every preset,
   on small data: ``--train-limit`` / ``--eval-limit`` samples of the real dataset where
   ``--data-dir`` has it (``DATA/braille``, ``DATA/shd``, ``DATA/ssc``, ``DATA/mnist``), else of
   small files generated in the datasets' own formats (timing only: their accuracy means nothing).
4. ``torchrun``: the default preset under ``torchrun --nproc_per_node=1`` (DDP over NCCL).
5. ``benchmarks``: ``python -m benchmarks.run --suite gpu --quick``, then
   ``python -m benchmarks.step_mode --device cuda`` (step mode, ring vs history buffer) and
   ``python -m benchmarks.delrec_neuron --device cuda`` (DelRec's neurons, compiled vs reference) and
   ``python -m benchmarks.leaky_sequence --device cuda`` (the fused LIF op vs snnTorch's loop).

It prints one table (pass/fail and time per step, time per epoch per preset, the benchmark ratios)
and writes it as JSON (``--out``, default ``benchmarks/results/gpu-check-<time>.json``). The exit
status is 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

#: dataset -> the sub-folder of ``--data-dir`` holding it (as ``$SNN_DELAYS_DATA``)
_SUBDIR = {"braille": "braille", "shd": "shd", "ssc": "ssc", "psmnist": "mnist"}


# ---------------------------------------------------------------------------------------------
# small data in the datasets' own formats (timing runs where the real files are not at hand)
# ---------------------------------------------------------------------------------------------
def write_heidelberg(path: Path, n: int, n_classes: int, seed: int, duration: float = 1.0,
                     rate: float = 4.0) -> None:
    """An SHD/SSC h5 file (``spikes/times``, ``spikes/units``, ``labels``): ``n`` samples of
    random spikes on 700 channels, about ``rate`` spikes per channel per second."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            k = int(rng.poisson(rate * duration * 700))
            t = np.sort(rng.uniform(0.0, duration, k))
            times[i] = t.astype(np.float16)
            units[i] = rng.integers(0, 700, k).astype(np.uint16)
        f.create_dataset("labels", data=(np.arange(n) % n_classes).astype(np.uint8))


def write_braille(path: Path, per_class: int, seed: int) -> None:
    """A Braille pickle: ``per_class`` records per letter, 12 taxels x (ON, OFF) spike lists."""
    import numpy as np

    from snn_delays_ext.data import BRAILLE_CLASSES

    rng = np.random.default_rng(seed)
    records = []
    for letter in BRAILLE_CLASSES:
        for _ in range(per_class):
            events = [[sorted(rng.uniform(0.0, 1.3, rng.integers(0, 8)).tolist()) for _ in range(2)]
                      for _ in range(12)]
            records.append({"letter": letter, "events": events})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(records, f)


def write_mnist(folder: Path, n_train: int, n_test: int, seed: int) -> None:
    """The four MNIST IDX files (gzip) with random images."""
    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def idx(name: str, arr: "np.ndarray") -> None:
        header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
        with gzip.open(folder / name, "wb") as f:
            f.write(header + arr.astype(np.uint8).tobytes())

    for stem, n in (("train", n_train), ("t10k", n_test)):
        idx(f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        idx(f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def make_small_data(root: Path, datasets: List[str]) -> Dict[str, Path]:
    """Generate the files of ``datasets`` (those that need files) under ``root``; returns
    dataset -> folder."""
    out: Dict[str, Path] = {}
    for d in datasets:
        folder = root / _SUBDIR[d]
        if d == "shd":
            write_heidelberg(folder / "shd_train.h5", 200, 20, 0)
            write_heidelberg(folder / "shd_test.h5", 80, 20, 1)
        elif d == "ssc":
            for i, (split, n) in enumerate((("train", 210), ("valid", 70), ("test", 70))):
                write_heidelberg(folder / f"ssc_{split}.h5", n, 35, 10 + i)
        elif d == "braille":
            write_braille(folder / "data_braille_letters_th10.pkl", 10, 0)
        elif d == "psmnist":
            write_mnist(folder, 5000 + 300, 100, 0)  # the last 5000 training images validate
        out[d] = folder
    return out


# ---------------------------------------------------------------------------------------------
# steps
# ---------------------------------------------------------------------------------------------
class Step:
    def __init__(self, name: str) -> None:
        self.name, self.status, self.seconds, self.detail = name, "skip", 0.0, ""
        self.data: Dict[str, Any] = {}

    def row(self) -> Dict[str, Any]:
        return dict(step=self.name, status=self.status, seconds=round(self.seconds, 1), detail=self.detail,
                    **({"data": self.data} if self.data else {}))


def _run(cmd: List[str], env: Dict[str, str], timeout: float, log: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` from the repository root; its output goes to ``log`` (and the tail to us)."""
    try:
        res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        log.write_text(out + err)
        return subprocess.CompletedProcess(cmd, 124, out, err + f"\n[timed out after {timeout:.0f} s]")
    log.write_text(res.stdout + res.stderr)
    return res


def _tail(res: subprocess.CompletedProcess, n: int = 1500) -> str:
    return (res.stdout + res.stderr)[-n:]


def step_build(env: Dict[str, str], work: Path, timeout: float) -> Step:
    st = Step("build (setup.py build_ext --inplace)")
    t0 = time.time()
    import torch

    major, minor = torch.cuda.get_device_capability()
    benv = dict(env, TORCH_CUDA_ARCH_LIST=f"{major}.{minor}", SNN_DELAYS_CUDA="1",
                MAX_JOBS=str(max(1, (os.cpu_count() or 2))))
    res = _run([sys.executable, "setup.py", "build_ext", "--inplace"], benv, timeout, work / "build.log")
    if res.returncode != 0:
        st.status, st.detail = "FAIL", _tail(res)
    else:
        check = ("import snn_delays_ext.ops as o; d, e = o.available_devices(), o.eventprop_devices(); "
                 "print(sorted(d), sorted(e)); assert 'cuda' in d and 'cuda' in e, (d, e, o.LOAD_ERROR)")
        res = _run([sys.executable, "-c", check], env, 120, work / "build-check.log")
        st.status = "PASS" if res.returncode == 0 else "FAIL"
        st.detail = f"sm_{major}{minor}; kernels {res.stdout.strip()}" if res.returncode == 0 else _tail(res)
    st.seconds = time.time() - t0
    return st


def step_pytest(env: Dict[str, str], work: Path, timeout: float) -> Step:
    st = Step("pytest -m cuda")
    t0 = time.time()
    xml = work / "pytest-cuda.xml"
    res = _run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "tests",
                f"--junitxml={xml}"], env, timeout, work / "pytest-cuda.log")
    counts = _junit_counts(xml)
    st.data = counts
    ran = counts.get("tests", 0) - counts.get("skipped", 0)
    st.status = "PASS" if res.returncode == 0 and ran > 0 else "FAIL"
    st.detail = (f"{counts.get('tests', 0) - counts.get('skipped', 0) - counts.get('failed', 0)} passed, "
                 f"{counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped")
    if st.status == "FAIL":
        st.detail += "\n" + _tail(res, 3000)
    st.seconds = time.time() - t0
    return st


def _junit_counts(xml: Path) -> Dict[str, int]:
    import xml.etree.ElementTree as ET

    if not xml.is_file():
        return {}
    root = ET.parse(xml).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    c = {"tests": 0, "skipped": 0, "failed": 0}
    for s in suites:
        c["tests"] += int(s.get("tests", 0))
        c["skipped"] += int(s.get("skipped", 0))
        c["failed"] += int(s.get("failures", 0)) + int(s.get("errors", 0))
    return c


def _train_cmd(preset: str, out: Path, data: Optional[Path], train_limit: int, eval_limit: int,
               launcher: Optional[List[str]] = None, device: str = "cuda") -> List[str]:
    cmd = (launcher or [sys.executable, "-m"]) + [
        "snn_delays_ext.train", "train", "--preset", preset, "--device", device, "--epochs", "1",
        "--train-limit", str(train_limit), "--eval-limit", str(eval_limit), "--out", str(out),
        "--no-progress", "--set", "run.tensorboard=false"]
    return cmd + (["--data-dir", str(data)] if data is not None else [])


def step_presets(env: Dict[str, str], work: Path, data_dir: Optional[Path], train_limit: int,
                 eval_limit: int, timeout: float, names: Optional[List[str]] = None,
                 device: str = "cuda") -> List[Step]:
    """One step per preset (``names``: these only; ``device``: ``"cpu"`` for a dry run)."""
    from snn_delays_ext.train.config import PRESETS

    names = sorted(PRESETS) if names is None else list(names)
    need = sorted({PRESETS[n]["data"]["dataset"] for n in names if PRESETS[n]["data"]["dataset"] in _SUBDIR})
    real = {d: data_dir / _SUBDIR[d] for d in need if data_dir is not None and (data_dir / _SUBDIR[d]).is_dir()}
    generated = make_small_data(work / "data", [d for d in need if d not in real])
    folders = {**generated, **real}
    steps = []
    for name in names:
        st = Step(f"preset {name}")
        t0 = time.time()
        ds = PRESETS[name]["data"]["dataset"]
        run_dir = work / "runs" / name
        res = _run(_train_cmd(name, run_dir, folders.get(ds), train_limit, eval_limit, device=device), env,
                   timeout, work / f"preset-{name}.log")
        st.seconds = time.time() - t0
        results = run_dir / "results.json"
        if res.returncode == 0 and results.is_file():
            r = json.loads(results.read_text())
            st.status = "PASS"
            src = "real" if ds in real else ("generated" if ds in generated else "generated by the dataset")
            st.data = dict(epoch_s=r["mean_epoch_time_s"], test_acc=r["test_acc"], n_train=r["n_train"], data=src)
            st.detail = f"epoch {r['mean_epoch_time_s']:.2f} s on {r['n_train']} samples ({src} data)"
        else:
            st.status, st.detail = "FAIL", _tail(res)
        steps.append(st)
    return steps


def step_torchrun(env: Dict[str, str], work: Path, timeout: float, device: str = "cuda") -> Step:
    """The default preset under ``torchrun --nproc_per_node=1``: NCCL on CUDA (gloo on the CPU)."""
    st = Step("torchrun --nproc_per_node=1 (default preset)")
    t0 = time.time()
    run_dir = work / "runs" / "torchrun"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m"]
    res = _run(_train_cmd("default", run_dir, None, 200, 100, launcher, device), env, timeout, work / "torchrun.log")
    st.seconds = time.time() - t0
    results = run_dir / "results.json"
    if res.returncode == 0 and results.is_file():
        r = json.loads(results.read_text())
        backend = r.get("distributed_backend")
        st.status = "PASS" if backend == ("nccl" if device == "cuda" else "gloo") else "FAIL"
        st.detail = f"backend {backend}, world size {r.get('world_size')}"
    else:
        st.status, st.detail = "FAIL", _tail(res)
    return st


def step_benchmarks(env: Dict[str, str], work: Path, out_json: Path, timeout: float, group_timeout: float,
                    only: str = "", label: str = "") -> Step:
    """``benchmarks.run --suite gpu --quick`` (``only``: its ``--only`` groups; ``label`` names
    the step, e.g. for a run under another environment)."""
    st = Step(f"benchmarks.run --suite gpu --quick{' --only ' + only if only else ''}{label}")
    t0 = time.time()
    res = _run([sys.executable, "-m", "benchmarks.run", "--suite", "gpu", "--quick", "--timeout",
                str(group_timeout), "--out", str(out_json)] + (["--only", only] if only else []),
               env, timeout, work / f"benchmarks{('-' + only) if only else ''}.log")
    st.seconds = time.time() - t0
    if res.returncode == 0 and out_json.is_file():
        report = json.loads(out_json.read_text())
        st.data = {"ratios": benchmark_ratios(report)}
        failed = [g["name"] for g in report.get("groups", []) if g.get("error")]
        st.status = "FAIL" if failed else "PASS"
        st.detail = f"{len(report.get('groups', []))} groups" + (f"; errors in {failed}" if failed else "")
    else:
        st.status, st.detail = "FAIL", _tail(res)
    return st


def step_module_bench(module: str, extra: List[str], env: Dict[str, str], work: Path, out_json: Path,
                      timeout: float) -> Step:
    """A benchmark module run on the GPU (``python -m benchmarks.MODULE --device cuda ... --json``),
    its rows kept in the step's data."""
    st = Step(f"benchmarks.{module} --device cuda")
    t0 = time.time()
    res = _run([sys.executable, "-m", f"benchmarks.{module}", "--device", "cuda", *extra, "--json", str(out_json)],
               env, timeout, work / f"{module}.log")
    st.seconds = time.time() - t0
    if res.returncode == 0 and out_json.is_file():
        rows = json.loads(out_json.read_text())["rows"]
        st.status, st.detail = "PASS", f"{len(rows)} rows"
        st.data = {module: rows}
    else:
        st.status, st.detail = "FAIL", _tail(res)
    return st


def benchmark_ratios(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per group: ours' time and peak, and every other implementation's time and peak / ours'
    (``time_vs_ours``, ``peak_vs_ours`` of :mod:`benchmarks.run`)."""
    rows = []
    for g in report.get("groups", []):
        results = g.get("results", [])
        ours = next((r for r in results if r.get("impl") == "ours" and "time_ms" in r), None)
        if ours is None:
            continue
        row: Dict[str, Any] = dict(group=g.get("name"), ours_ms=round(ours["time_ms"], 2),
                                   ours_peak_MB=round(ours.get("peak_MB", 0.0), 1), time_vs_ours={}, peak_vs_ours={})
        for r in results:
            if r.get("impl") != "ours" and "time_vs_ours" in r:
                row["time_vs_ours"][r["label"]] = round(r["time_vs_ours"], 2)
                if "peak_vs_ours" in r:
                    row["peak_vs_ours"][r["label"]] = round(r["peak_vs_ours"], 2)
        rows.append(row)
    return rows


def print_summary(steps: List[Step], total_s: float) -> None:
    print("\n" + "=" * 100)
    print(f"{'step':<48} {'status':<6} {'time':>7}  detail")
    print("-" * 100)
    for s in steps:
        first = s.detail.splitlines()[0] if s.detail else ""
        print(f"{s.name:<48} {s.status:<6} {s.seconds:>6.0f}s  {first}")
    print("-" * 100)
    print(f"{'total':<48} {'PASS' if all(s.status == 'PASS' for s in steps) else 'FAIL':<6} {total_s:>6.0f}s")
    bench = next((s for s in steps if s.data and "ratios" in s.data), None)
    if bench:
        print("\nbenchmark ratios (fwd+bwd time of each implementation / ours; > 1: ours faster):")
        for row in bench.data["ratios"]:
            others = "  ".join(f"{k} {v}x" for k, v in row["time_vs_ours"].items())
            print(f"  {row['group']:<18} ours {row['ours_ms']:8.1f} ms {row['ours_peak_MB']:8.0f} MB  {others}")
    steps_mode = next((s for s in steps if s.data and "step_mode" in s.data), None)
    if steps_mode:
        print("\nstep mode, 100 steps (history buffer / ring; > 1: the ring is faster):")
        for row in steps_mode.data["step_mode"]:
            print(f"  {row['case']:<34} D {row['max_delay']:5d} {row['mode']}  buffer {row['buffer_ms']:8.1f} ms  "
                  f"ring {row['ring_ms']:8.1f} ms  {row['ratio']:.2f}")
    for s in steps:
        if s.status == "FAIL" and "\n" in s.detail:
            print(f"\n--- {s.name} (failed) ---\n{s.detail}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheels", type=Path, help="folder of wheels to install first (pip --no-index --no-deps)")
    ap.add_argument("--data-dir", type=Path, help="real data: DATA/braille, DATA/shd, DATA/ssc, DATA/mnist")
    ap.add_argument("--train-limit", type=int, default=256, help="training samples per preset (default 256)")
    ap.add_argument("--eval-limit", type=int, default=128, help="validation/test samples per preset (default 128)")
    ap.add_argument("--skip", default="", help="comma-separated steps to skip: build, pytest, presets, torchrun, "
                                                 "benchmarks")
    ap.add_argument("--out", type=Path, help="summary JSON (default benchmarks/results/gpu-check-<time>.json)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, runs, generated data)")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(REPO)]
    if args.wheels is not None:
        site = work / "site"
        res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                              "--target", str(site)] + [str(p) for p in sorted(args.wheels.glob("*.whl"))],
                             capture_output=True, text=True)
        if res.returncode != 0:
            print(res.stdout + res.stderr, file=sys.stderr)
            return 2
        paths.append(str(site))
        sys.path.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    sys.path.insert(0, str(REPO))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"gpu-check-{stamp}.json"
    print(f"# gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, work folder {work}", flush=True)

    t0 = time.time()
    steps: List[Step] = []

    def report(st: Step) -> None:
        steps.append(st)
        print(f"# {st.name}: {st.status} ({st.seconds:.0f} s) {st.detail.splitlines()[0] if st.detail else ''}",
              flush=True)

    if "build" not in skip:
        report(step_build(env, work, 240))
    if "pytest" not in skip:
        report(step_pytest(env, work, 240))
    if "presets" not in skip:
        for st in step_presets(env, work, args.data_dir, args.train_limit, args.eval_limit, 120):
            report(st)
    if "torchrun" not in skip:
        report(step_torchrun(env, work, 120))
    if "benchmarks" not in skip:
        report(step_benchmarks(env, work, out.parent / f"gpu-quick-{stamp}.json", 420, 90))
        # step mode: ring buffer vs history buffer at max_delay 10 and 2000
        report(step_module_bench("step_mode", ["--delays", "10", "2000", "--steps", "100", "--repeats", "2"],
                                 env, work, out.parent / f"gpu-step-mode-{stamp}.json", 180))
        # DelRec's neurons on the compiled op vs the reference, at the SHD neuron's shape of issue 29
        report(step_module_bench("delrec_neuron", ["--batch", "256", "--steps", "100", "--repeats", "3"],
                                 env, work, out.parent / f"gpu-delrec-neuron-{stamp}.json", 240))
        # the recurrent op's per-step host loop (gather + GEMM + LIF launches per step), to compare
        # with the whole-sequence kernel the run above used at the SSC shape
        report(step_benchmarks({**env, "SNN_DELAYS_CUDA_RECURRENT": "steps"}, work,
                               out.parent / f"gpu-recurrent-steps-{stamp}.json", 240, 90, only="SSC-like",
                               label=" (SNN_DELAYS_CUDA_RECURRENT=steps)"))
        # the DCLS paper's layer alone (B256 T1000 140->256, D512, 10% events): event-driven vs
        # dense kernels vs Dcls1d vs nn.Linear, times and peaks
        report(step_module_bench("ff_events", ["--shapes", "1000x256x140x256x512", "--density", "0.1",
                                               "--repeats", "3"],
                                 env, work, out.parent / f"gpu-ff-events-{stamp}.json", 240))
        # EventProp vs BPTT, one training step of the layer (B32 64->256 recurrent, D50, T2500):
        # time, saved bytes and peak of each
        report(step_module_bench("eventprop_memory", ["--T", "2500", "--batch", "32"],
                                 env, work, out.parent / f"gpu-eventprop-{stamp}.json", 180))
        # the fused sequence LIF op vs snnTorch's Leaky stepped in Python (Braille shape, a longer one)
        report(step_module_bench("leaky_sequence", ["--shapes", "66x128x256", "500x32x256", "--repeats", "5"],
                                 env, work, out.parent / f"gpu-leaky-sequence-{stamp}.json", 180))
    total = time.time() - t0
    print_summary(steps, total)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, total_s=round(total, 1),
                                   steps=[s.row() for s in steps]), indent=1))
    print(f"\nwrote {out}")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if steps and all(s.status == "PASS" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
