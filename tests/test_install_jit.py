"""The first-import compilation (``snn_delays_ext/_jit.py``): its cache key and its memory of a
failed build. The compilation itself runs in CI's fresh-install step (``.ci/extra.d``), from a
plain ``pip install .``."""

from __future__ import annotations

import pytest
import torch

from snn_delays_ext import _jit


def test_cache_key_follows_torch_and_the_sources(monkeypatch, tmp_path):
    key = _jit._key("cpu")
    assert key == _jit._key("cpu") and key != _jit._key("cuda")
    monkeypatch.setattr(torch, "__version__", torch.__version__ + ".other")
    assert _jit._key("cpu") != key  # another torch: another library
    monkeypatch.undo()
    src = tmp_path / "csrc"
    (src / "cuda").mkdir(parents=True)
    for name in ("delays.cpp", "eventprop.cpp", "common.h"):
        (src / name).write_text("// " + name)
    monkeypatch.setattr(_jit, "_CSRC", src)
    before = _jit._key("cpu")
    (src / "common.h").write_text("// changed")
    assert _jit._key("cpu") != before  # edited sources: compiled again


def test_a_failed_build_is_not_retried(monkeypatch, tmp_path):
    monkeypatch.setenv("SNN_DELAYS_CACHE", str(tmp_path))
    assert _jit.cache_dir() == tmp_path
    build = tmp_path / f"snn_delays_ext_C-{_jit._key('cpu')}"
    build.mkdir()
    (build / "FAILED").write_text("compiling the cpu kernels failed: no compiler")

    def never(*args, **kwargs):
        raise AssertionError("compiled again")

    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "load", never)
    with pytest.raises(RuntimeError, match="no compiler .*delete .* to try again"):
        _jit.load("cpu")


def test_missing_sources_are_an_import_error(monkeypatch, tmp_path):
    monkeypatch.setattr(_jit, "_CSRC", tmp_path)
    with pytest.raises(ImportError, match="kernel sources are not in"):
        _jit.load("cpu")
