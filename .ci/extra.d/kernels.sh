# CI step: the compiled CPU ops must have been built by the README's install (otherwise the
# kernel parity tests would have compared the reference path with itself), and the CUDA
# sources must compile (nvcc + the headers of a CUDA torch wheel, when both are on the machine).
set -euo pipefail
python -c "import snn_delays_ext as s; b = s.backend(); print('backend:', b); assert b == 'compiled', b"
WHEEL=$(ls /opt/pypi-more/files/torch-2.14.1-*manylinux*x86_64.whl 2>/dev/null | head -1 || true)
if command -v nvcc >/dev/null && [ -n "$WHEEL" ]; then
  bash snn_delays_ext/csrc/cuda/compile_check.sh "$WHEEL"
else
  echo "CUDA compile check skipped: nvcc or a CUDA torch wheel not found"
fi
