# CI step: the lowest torch the package supports (pyproject: torch>=2.4, where the custom-op API
# it registers its kernels with -- torch.library.register_fake / register_autograd -- appeared).
# A second environment on a copy of the checkout installs that torch (PyPI's build; CUDA is
# skipped: SNN_DELAYS_CUDA=0), builds the compiled kernels against it, and runs the core, kernel,
# EventProp-op and device tests there.
set -euo pipefail
LOW_TORCH=2.4.0
. .ci/checkout-copy.sh
python3 -m venv .venv-low
. .venv-low/bin/activate
pip install -q "torch==$LOW_TORCH" setuptools wheel
pip install -q --no-deps norse==1.1.0 nirtorch
SNN_DELAYS_CUDA=0 pip install -q --no-build-isolation -e ".[test]"
python -c "import torch, snn_delays_ext as s; print('torch', torch.__version__, 'backend', s.backend()); \
assert torch.__version__.startswith('$LOW_TORCH'), torch.__version__; assert s.backend() == 'compiled'"
python -m pytest -q -p no:cacheprovider tests/test_core_*.py tests/test_kernels_*.py tests/test_eventprop_compiled.py \
  tests/test_device_meta.py tests/test_op_fuzz.py
