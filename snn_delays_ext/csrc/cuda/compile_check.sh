#!/usr/bin/env bash
# Compile (not link, not run) the CUDA kernels (every .cu file in this folder, and the host-side
# .cpp files next to them) against a CUDA
# build of torch's headers, so a CUDA compile error cannot land on a machine without a GPU or a CUDA torch.
#
#   snn_delays_ext/csrc/cuda/compile_check.sh /path/to/torch-2.14.1-...whl   (or an unpacked dir
#   that contains torch/include)
# Needs nvcc on PATH. Takes about 1-3 minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
arg="${1:?usage: compile_check.sh TORCH_CUDA_WHEEL_OR_DIR}"
if [ -f "$arg" ]; then
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' EXIT
  python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(n, sys.argv[2]) for n in z.namelist() if n.startswith('torch/include/')]" "$arg" "$dir"
else
  dir="$arg"
fi
pyinc="$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
defs=(-D_GLIBCXX_USE_CXX11_ABI=1 -DTORCH_EXTENSION_NAME=_C_cuda -DTORCH_API_INCLUDE_EXTENSION_H)
incs=(-I"$dir/torch/include" -I"$dir/torch/include/torch/csrc/api/include" -I"$pyinc")
cuda_inc="$(dirname "$(dirname "$(command -v nvcc)")")/include"
[ -f "$cuda_inc/cuda_runtime_api.h" ] || cuda_inc=/usr/local/cuda/include
for src in "$here"/*.cu; do
  nvcc -c "$src" -o "${TMPDIR:-/tmp}/snn_delays_cuda_check_$(basename "$src" .cu).o" -std=c++20 -O1 \
    --expt-relaxed-constexpr -Xcompiler -fPIC "${incs[@]}" "${defs[@]}" -gencode arch=compute_90,code=sm_90
  echo "compiled $(basename "$src")"
done
# the host side of the CUDA ops (.cpp in this folder): the host compiler, with CUDA's headers
for src in "$here"/*.cpp; do
  [ -e "$src" ] || continue
  "${CXX:-c++}" -c "$src" -o "${TMPDIR:-/tmp}/snn_delays_cuda_check_$(basename "$src" .cpp).o" -std=c++20 -O1 \
    -fPIC -Wall -Werror=return-type "${incs[@]}" -I"$cuda_inc" "${defs[@]}"
  echo "compiled $(basename "$src")"
done
echo "CUDA sources compile OK"
