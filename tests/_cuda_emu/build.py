"""Build the CUDA sources of ``snn_delays_ext/csrc/cuda`` as a CPU library (``torch.ops.sdx_emu``).

The sources are copied with a few textual rewrites (the ``<<<grid, block, shared, stream>>>``
launches become calls of ``emu_launch``, ``extern __shared__`` arrays point at the block's
buffer, the CUDA headers give way to ``emu_cuda.h``, the ops register as ``sdx_emu::*`` on CPU
tensors) and compiled with the host compiler. Used by ``tests/test_cuda_emulation.py``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
CSRC = HERE.parents[1] / "snn_delays_ext" / "csrc"
SOURCES = ("delays_cuda.cu", "leaky_sequence_cuda.cu", "synaptic_sequence_cuda.cu", "eventprop_cuda.cu",
           "eventprop_cuda_ops.cpp", "eventprop_launch.h")


def rewrite(text: str) -> str:
    """One CUDA source file as host C++ against ``emu_cuda.h``."""
    s = re.sub(r"#include <(?:c10|ATen)/cuda/[^>]+>\n", "", text)
    s = s.replace("#include <cuda_runtime_api.h>", '#include "emu_cuda.h"')
    s = s.replace('#include "../', '#include "')
    s = s.replace('#include "common.h"', '#include "emu_cuda.h"\n#include "common.h"')
    s = s.replace('#include "eventprop_launch.h"', '#include "emu_cuda.h"\n#include "eventprop_launch.h"')
    s = re.sub(r"extern __shared__ (?:__align__\(\d+\) )?unsigned char (\w+)\[\];",
               r"unsigned char* \1 = emu_shmem.data();", s)
    s = re.sub(r"([\w:]+(?:<[\w:]+>)?)<<<(.+?)>>>\(", r"emu_launch(emu_cfg(\2), \1, ", s, flags=re.S)
    s = s.replace("TORCH_LIBRARY_IMPL(snn_delays_ext, CUDA, m)", "TORCH_LIBRARY_FRAGMENT(sdx_emu, m)")
    s = s.replace("m.impl(", "m.def(")
    s = s.replace(".is_cuda()", ".is_cpu()")
    return s.replace("PyInit__C_cuda", "PyInit__C_cuda_emu")


def build(work: Path) -> Path:
    """Write the rewritten sources under ``work`` and build them; returns the library's path."""
    from torch.utils.cpp_extension import load

    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    for header in ("common.h", "op_checks.h", "eventprop_common.h"):
        shutil.copy(CSRC / header, src / header)
    shutil.copy(HERE / "emu_cuda.h", src / "emu_cuda.h")
    units = []
    for name in SOURCES:
        text = rewrite((CSRC / "cuda" / name).read_text())
        out = src / (name.replace(".cu", "_cu.cpp") if name.endswith(".cu") else name)
        out.write_text(text)
        if out.suffix == ".cpp":
            units.append(str(out))
    build_dir = work / "build"
    build_dir.mkdir(exist_ok=True)
    load(name="sdx_emu", sources=units, extra_cflags=["-std=c++20", "-O1", f"-I{src}", "-w", "-U_FORTIFY_SOURCE"],
         is_python_module=False, build_directory=str(build_dir), verbose=False)
    return next(build_dir.glob("sdx_emu*.so"))
