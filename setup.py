"""Build script: the package plus its compiled delay kernels.

* The CPU extension ``snn_delays_ext._C`` (``CppExtension``) is built whenever a C++ compiler
  works. ``SNN_DELAYS_CPU=0`` skips it.
* The CUDA extension ``snn_delays_ext._C_cuda`` (``CUDAExtension``) is built when torch has CUDA
  and ``nvcc`` is found. ``SNN_DELAYS_CUDA=1`` forces it (fails loudly if impossible),
  ``SNN_DELAYS_CUDA=0`` skips it.
* If no extension can be compiled the package still installs (pure Python) and the layers run
  the plain-PyTorch reference path (with one warning).

Build in place for development with ``python setup.py build_ext --inplace`` or install with
``pip install --no-build-isolation -e .`` (torch must already be installed).
"""

import os
import shutil
import sys

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("snn_delays_ext", "csrc")


def _flag(name):
    v = os.environ.get(name)
    if v is None or v == "":
        return None
    return v.strip().lower() not in ("0", "false", "no", "off")


def _extensions():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except Exception as exc:  # torch missing at build time: pure-Python install
        print(f"snn_delays_ext: torch not importable ({exc}); installing without compiled ops", file=sys.stderr)
        return [], {}
    exts = []
    cxx = ["-O3"]
    if sys.platform != "win32":
        cxx += ["-fopenmp"] if sys.platform.startswith("linux") else []
        # no fused multiply-add contraction (default on e.g. aarch64): the EventProp forward
        # reproduces the reference's separately rounded multiplies and adds, so its spikes match
        cxx += ["-ffp-contract=off"]
    libs = ["gomp"] if sys.platform.startswith("linux") else []
    want_cpu = _flag("SNN_DELAYS_CPU")
    if want_cpu is not False and (shutil.which(os.environ.get("CXX", "c++")) or sys.platform == "win32"):
        exts.append(
            CppExtension(
                "snn_delays_ext._C",
                [os.path.join(CSRC, "delays.cpp"), os.path.join(CSRC, "eventprop.cpp")],
                extra_compile_args={"cxx": cxx},
                extra_link_args=["-fopenmp"] if sys.platform.startswith("linux") else [],
            )
        )
    want_cuda = _flag("SNN_DELAYS_CUDA")
    nvcc = shutil.which("nvcc") or (CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")))
    has_cuda_torch = torch.version.cuda is not None
    if want_cuda or (want_cuda is None and has_cuda_torch and nvcc):
        if want_cuda and not (has_cuda_torch and nvcc):
            raise RuntimeError("SNN_DELAYS_CUDA=1 but torch has no CUDA or nvcc was not found")
        exts.append(
            CUDAExtension(
                "snn_delays_ext._C_cuda",
                [os.path.join(CSRC, "cuda", "delays_cuda.cu"), os.path.join(CSRC, "cuda", "eventprop_cuda.cu")],
                extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3"]},
            )
        )
    del libs
    if not exts:
        return [], {}

    class _LenientBuild(BuildExtension):
        """Fall back to a pure-Python install when compilation fails (unless forced)."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as exc:
                forced = _flag("SNN_DELAYS_CUDA") if ext.name.endswith("_cuda") else _flag("SNN_DELAYS_CPU")
                if forced:
                    raise
                print(f"snn_delays_ext: could not build {ext.name} ({exc}); the reference path "
                      "will be used", file=sys.stderr)

    return exts, {"build_ext": _LenientBuild.with_options(no_python_abi_suffix=False)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
