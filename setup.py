"""Build script: the package plus its compiled delay kernels.

* The CPU extension ``snn_delays_ext._C`` (``CppExtension``) is built whenever a C++ compiler
  works. ``SNN_DELAYS_CPU=0`` skips it.
* The CUDA extension ``snn_delays_ext._C_cuda`` (``CUDAExtension``) is built when torch has CUDA
  and ``nvcc`` is found. ``SNN_DELAYS_CUDA=1`` forces it (fails loudly if impossible),
  ``SNN_DELAYS_CUDA=0`` skips it.
* Without torch (pip's default isolated build: ``pyproject.toml`` does not list torch, so that
  pip never downloads a second one) or without a working compiler, the package installs as pure
  Python with the kernel sources, and the first import compiles them for the torch that runs
  (``snn_delays_ext/_jit.py``); where that fails too, the layers run the plain-PyTorch
  reference path (with one warning).

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


def _cuda_major_mismatch(torch_cuda, cuda_home):
    """A message if nvcc's CUDA major version differs from the one torch was built with (torch's
    extension build refuses that), else ``None``."""
    import re
    import subprocess

    nvcc = shutil.which("nvcc") or (os.path.join(cuda_home, "bin", "nvcc") if cuda_home else None)
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except Exception:  # noqa: BLE001 - cannot tell: let torch's own check decide
        return None
    found = re.search(r"release (\d+)\.(\d+)", out)
    if not found or not torch_cuda:
        return None
    if found.group(1) != str(torch_cuda).split(".")[0]:
        return f"nvcc is CUDA {found.group(1)}.{found.group(2)}, torch was built with CUDA {torch_cuda}"
    return None


def _cuda_include_dirs(cuda_home):
    """Where cuda_runtime.h is, for the host-compiled (.cpp) sources of the CUDA extension (nvcc
    finds it by itself): torch's CUDA_HOME, else what nvcc says it includes (a wrapper script on
    PATH can make torch guess the wrong CUDA_HOME)."""
    import re
    import subprocess

    dirs = [os.path.join(cuda_home, "include")] if cuda_home else []
    try:
        out = subprocess.run([shutil.which("nvcc") or "nvcc", "--dryrun", "-c", "-x", "cu", os.devnull, "-o",
                              os.devnull], capture_output=True, text=True, timeout=60).stderr
        dirs += re.findall(r'INCLUDES="-I([^"]+)"', out)
    except Exception:  # noqa: BLE001 - no nvcc to ask
        pass
    found = [d for d in dirs if os.path.isfile(os.path.join(d, "cuda_runtime.h"))]
    return found[:1]


def _extensions():
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except Exception as exc:  # torch missing at build time (isolated build): compile on first import
        print(f"snn_delays_ext: torch not importable here ({exc}); the kernels will compile on first import "
              "for the installed torch (pip install --no-build-isolation . compiles them now)", file=sys.stderr)
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
                [os.path.join(CSRC, name) for name in ("delays.cpp", "eventprop.cpp", "leaky_sequence.cpp",
                                                      "synaptic_sequence.cpp")],
                extra_compile_args={"cxx": cxx},
                extra_link_args=["-fopenmp"] if sys.platform.startswith("linux") else [],
            )
        )
    want_cuda = _flag("SNN_DELAYS_CUDA")
    nvcc = shutil.which("nvcc") or (CUDA_HOME and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")))
    has_cuda_torch = torch.version.cuda is not None
    mismatch = _cuda_major_mismatch(torch.version.cuda, CUDA_HOME) if (has_cuda_torch and nvcc) else None
    if mismatch and want_cuda is None:
        # torch's build would stop the whole install (the CPU extension too): skip CUDA instead
        print(f"snn_delays_ext: {mismatch}; building without the CUDA kernels (SNN_DELAYS_CUDA=1 "
              "forces them)", file=sys.stderr)
        nvcc = None
    if want_cuda or (want_cuda is None and has_cuda_torch and nvcc):
        if want_cuda and not (has_cuda_torch and nvcc):
            raise RuntimeError("SNN_DELAYS_CUDA=1 but torch has no CUDA or nvcc was not found")
        exts.append(
            CUDAExtension(
                "snn_delays_ext._C_cuda",
                [os.path.join(CSRC, "cuda", name) for name in
                 ("delays_cuda.cu", "eventprop_cuda.cu", "eventprop_cuda_ops.cpp", "leaky_sequence_cuda.cu",
                  "synaptic_sequence_cuda.cu")],
                include_dirs=_cuda_include_dirs(CUDA_HOME),
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
