"""The package's layers: core (layers, functional, kernels, utilities, the Norse flavour) <-
eventprop <- nir <- data <- train. A module imports only from its own layer or those below;
``import snn_delays_ext`` loads neither the training application, nor the data sets, nor NIR."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

PKG = Path(__file__).resolve().parents[1] / "snn_delays_ext"

#: sub-package -> layer (anything else, the package's own modules, is the core: 0)
LAYERS = {"eventprop": 1, "nir": 2, "data": 3, "train": 4}


def _layer(module: str) -> Optional[int]:
    """The layer of a dotted module name inside the package (``None``: the package root, a
    facade that may re-export from every layer)."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    return LAYERS.get(parts[0], 0)


def _modules() -> Iterator[Tuple[str, str, Path]]:
    """``(module, its package, path)`` of every source file."""
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        module = ".".join(rel.parts)
        if module.endswith(".__init__"):
            module = module[: -len(".__init__")]
            yield module, module, path
        else:
            yield module, module.rsplit(".", 1)[0], path


def _imports(package: str, tree: ast.AST) -> Iterator[Tuple[str, int]]:
    """Every ``snn_delays_ext`` module a file imports (``from X import name`` counts ``X`` and
    ``X.name``, which may be a sub-module), with the line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno


def violations() -> List[str]:
    out = []
    for module, package, path in _modules():
        own = _layer(module)
        if own is None:
            continue
        for target, line in _imports(package, ast.parse(path.read_text())):
            if not target.startswith("snn_delays_ext"):
                continue
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                out.append(f"{module} (layer {own}) imports {target} (layer {theirs}), line {line}")
    return sorted(set(out))


def test_no_module_imports_a_layer_above_its_own():
    assert violations() == []


def test_the_checker_sees_an_upward_import(tmp_path):
    tree = ast.parse("from ..train.models import build_model\nfrom . import layers\n")
    found = list(_imports("snn_delays_ext.eventprop", tree))
    assert ("snn_delays_ext.train.models", 1) in found and ("snn_delays_ext.eventprop.layers", 2) in found
    assert _layer("snn_delays_ext.train.models") > _layer("snn_delays_ext.eventprop.layers")


def test_import_loads_no_training_app_data_or_nir():
    code = ("import sys, snn_delays_ext; print(sorted(m for m in sys.modules if m.startswith("
            "('snn_delays_ext.train', 'snn_delays_ext.data', 'snn_delays_ext.nir'))))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=PKG.parent)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout
