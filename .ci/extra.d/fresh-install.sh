# CI step: install as a user does, `pip install .` (pip's default, isolated build), into a fresh
# environment that already has torch. pip must not download a second torch (pyproject's build
# requirements do not list it); the first import compiles the kernels for the installed torch
# into a cache, later imports load them from there and add at most 0.3 s to importing torch and
# snnTorch; the kernel parity and fuzz tests pass on that build.
set -euo pipefail
TORCH=$(python -c "import torch; print(torch.__version__.split('+')[0])")
. .ci/checkout-copy.sh
python3 -m venv .venv-fresh
. .venv-fresh/bin/activate
pip install -q "torch==$TORCH"

t0=$(date +%s)
pip install -q --report install-report.json .
echo "fresh-install: pip install . took $(( $(date +%s) - t0 )) s"
python - <<'PY'
import json
items = json.load(open("install-report.json"))["install"]
names = sorted(i["metadata"]["name"].lower() for i in items)
print("fresh-install: installed", ", ".join(names))
heavy = [n for n in names if n == "torch" or n.startswith("nvidia-") or n == "triton"]
assert not heavy, f"pip install . pulled a second torch stack: {heavy}"
PY

export SNN_DELAYS_CACHE="$work/kernel-cache"
t0=$(date +%s)
( cd / && python -c "import snn_delays_ext as s, snn_delays_ext.ops as o; \
assert s.backend() == 'compiled', o.LOAD_ERROR; print('fresh-install: kernels', sorted(o.available_devices()))" )
echo "fresh-install: first import (compiling the kernels) took $(( $(date +%s) - t0 )) s"
( cd / && python - <<'PY'
import statistics, subprocess, sys
code = ("import time; t0 = time.perf_counter(); import torch, snntorch; t1 = time.perf_counter(); "
        "import snn_delays_ext; t2 = time.perf_counter(); print(t1 - t0, t2 - t1)")
runs = [tuple(map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout.split())) for _ in range(5)]
base, extra = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
print(f"fresh-install: import torch + snntorch {base:.2f} s; snn_delays_ext adds {extra:.3f} s")
assert extra <= 0.3, f"importing snn_delays_ext adds {extra:.2f} s (budget 0.3 s)"
PY
)
pip install -q pytest hypothesis
rm -rf snn_delays_ext  # test the installed package, not the copy of the sources
python -m pytest -q -p no:cacheprovider tests/test_kernels_parity.py tests/test_op_fuzz.py
