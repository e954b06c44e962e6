"""Sphinx configuration for snn_delays_ext.

Build (from the repository root)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest

The API reference is generated from the ``__all__`` of every module in :data:`API_MODULES`
that exists: a module another branch adds later (``snn_delays_ext.norse``, ...) shows up by
itself; a module that does not exist yet is skipped. To document a new public module, add
one line to :data:`API_MODULES`.

Intersphinx links to PyTorch, snnTorch, Norse, tonic and NIR need their ``objects.inv`` from
the internet; a failed download is a warning, which ``-W`` turns into an error. They are
therefore opt-in: ``SNN_DELAYS_DOCS_ONLINE=1``. Without them, references to those projects
render as plain code (no warning, since ``nitpicky`` is off).

``SNN_DELAYS_DOCS_STRICT_EXAMPLES=1`` makes a public class or function without a ``>>>``
example a warning.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the package is documented from the checkout

import snn_delays_ext  # noqa: E402

# -- project ----------------------------------------------------------------------------------
project = "snn_delays_ext"
author = "snn_delays_ext developers"
copyright = "2026, snn_delays_ext developers"
release = snn_delays_ext.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "_snippets", "Thumbs.db", ".DS_Store", "results.*", "**.ipynb"]
# docs/results.* (written by the training tools) is *included* by reproduction.rst, not a page.

# -- API reference, generated from __all__ -----------------------------------------------------
#: (module, section title, one-line description). Modules that cannot be found are skipped.
API_MODULES = [
    ("snn_delays_ext", "Layers and helpers (snnTorch flavour)",
     "The top-level package: the delay layers, network helpers and the width schedule."),
    ("snn_delays_ext.surrogate", "Surrogate spike functions",
     "The triangle surrogate (DelRec's) and recognition of snnTorch's surrogates by the kernels."),
    ("snn_delays_ext.functional", "Functional API",
     "The delay math as pure functions on tensors (no state)."),
    ("snn_delays_ext.norse", "Norse flavour",
     "Cells and modules in Norse's style (``LIFParameters``, NamedTuple states)."),
    ("snn_delays_ext.eventprop", "EventProp",
     "Exact event-based gradients for current-based delay layers."),
    ("snn_delays_ext.nir", "NIR export and import",
     "Neuromorphic Intermediate Representation (time unit: seconds)."),
    ("snn_delays_ext.data", "Datasets",
     "Benchmark data sets yielding time-first ``(T, B, F)`` batches."),
    ("snn_delays_ext.train", "Training",
     "The training loop, presets and the ``snn-delays`` command line."),
    ("snn_delays_ext.dispatch", "Compiled kernels or reference",
     "The one rule per op that chooses what runs, and why (``layer.backend(x)``)."),
    ("snn_delays_ext.ops", "Custom operators",
     "The ``torch.library`` operators behind the layers: loading, fake kernels, autograd."),
]


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "data"


PUBLIC_CALLABLES: set = set()  # full names of the documented classes and functions


def write_api_pages() -> list:
    """Write ``api/index.rst`` and one ``api/<module>.rst`` per existing module."""
    api = DOCS / "api"
    api.mkdir(exist_ok=True)
    seen: dict = {}  # id(obj) -> documented full name (dedupe re-exports)
    found = []
    for modname, title, blurb in API_MODULES:
        if not _module_exists(modname):
            continue
        try:
            mod = importlib.import_module(modname)
        except ImportError as exc:  # exists but a dependency is missing: say which
            raise RuntimeError(
                f"docs: module {modname} exists but cannot be imported ({exc}); install its "
                f"optional dependencies before building the docs"
            ) from exc
        names = getattr(mod, "__all__", None)
        if names is None:
            raise RuntimeError(f"docs: module {modname} has no __all__; the API pages list it")
        groups: dict = {"class": [], "function": [], "data": []}
        reexports = []
        for name in names:
            if name.startswith("__"):
                continue  # __version__
            obj = getattr(mod, name)
            if inspect.ismodule(obj):
                continue  # sub-packages get their own section when listed in API_MODULES
            full = f"{modname}.{name}"
            if not isinstance(obj, (str, int, float, tuple, frozenset)) and id(obj) in seen:
                reexports.append((name, seen[id(obj)], _kind(obj)))
                continue
            if not isinstance(obj, (str, int, float, tuple, frozenset)):
                seen[id(obj)] = full
            groups[_kind(obj)].append(name)
            if _kind(obj) != "data":
                PUBLIC_CALLABLES.add(full)
        slug = modname.replace(".", "_")
        lines = [f".. _api-{slug}:", "", title, "=" * len(title), "",
                 f".. automodule:: {modname}", "   :no-members:", "",
                 blurb, "", f".. currentmodule:: {modname}", ""]
        # pages use _templates/autosummary/{class,function}.rst (autosummary's default names)
        for kind, heading in (("class", "Classes"), ("function", "Functions"),
                              ("data", "Constants")):
            if not groups[kind]:
                continue
            lines += [heading, "-" * len(heading), "", ".. autosummary::",
                      "   :toctree: generated", "   :nosignatures:", ""]
            lines += [f"   {n}" for n in sorted(groups[kind], key=str.lower)]
            lines.append("")
        if reexports:
            lines += ["Also available here", "-------------------", ""]
            role = {"class": "class", "function": "func", "data": "data"}
            lines += [f"- ``{modname}.{n}``: the same object as :{role[k]}:`{full}`"
                      for n, full, k in reexports]
            lines.append("")
        _write_if_changed(api / f"{slug}.rst", "\n".join(lines))
        found.append(slug)
    index = ["API reference", "=============", "",
             "Every public name, generated from each module's ``__all__``. Each page shows the",
             "signature, the documentation and a runnable example (checked by the doctest build).",
             "", ".. toctree::", "   :maxdepth: 2", ""] + [f"   {s}" for s in found]
    _write_if_changed(api / "index.rst", "\n".join(index) + "\n")
    for stale in api.glob("*.rst"):  # a module that went away: no orphan page (-W warning)
        if stale.stem not in found and stale.stem != "index":
            stale.unlink()
    return found


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


API_FOUND = write_api_pages()

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "mixed"
autodoc_inherit_docstrings = False  # do not pull nn.Module / snnTorch docstrings into ours
autoclass_content = "class"
add_module_names = False

napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # "Attributes" as fields: no duplicate attribute descriptions
napoleon_use_rtype = False
napoleon_preprocess_types = True

# -- generated pages: results and changelog ----------------------------------------------------
GEN = DOCS / "_generated"
GEN.mkdir(exist_ok=True)


def write_results_body() -> None:
    """``_generated/results_body.rst``: docs/results.{rst,md,csv} if present, else the
    published reference results with our rows marked "not yet run"."""
    for ext in ("rst", "md", "csv"):
        src = DOCS / f"results.{ext}"
        if src.exists():
            body = {  # "/x" is relative to docs/ for Sphinx's include; csv-table wants a path
                "rst": ".. include:: /results.rst\n",
                "md": ".. include:: /results.md\n   :parser: myst_parser.sphinx_\n",
                "csv": f".. csv-table::\n   :file: {src}\n   :header-rows: 1\n",
            }[ext]
            _write_if_changed(GEN / "results_body.rst", body)
            return
    _write_if_changed(GEN / "results_body.rst", (DOCS / "_snippets" / "results_default.rst").read_text())


def write_changelog_copy() -> None:
    """``_generated/CHANGELOG.md``: a copy of ../CHANGELOG.md (a placeholder where the
    checkout has none), included by changelog.md."""
    src = ROOT / "CHANGELOG.md"
    text = src.read_text() if src.exists() else "# Changelog\n\nNo `CHANGELOG.md` in this checkout.\n"
    _write_if_changed(GEN / "CHANGELOG.md", text)


write_results_body()
write_changelog_copy()


def write_results_appendix() -> None:
    """``results_appendix.md`` (a page, not in git): every run of ``results/runs.csv`` as
    tables by task, written by ``gen_results_appendix.py`` before the sources are read."""
    spec = importlib.util.spec_from_file_location("gen_results_appendix", DOCS / "gen_results_appendix.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.write_appendix(DOCS / "results" / "runs.csv", DOCS / "results_appendix.md")


write_results_appendix()

# -- doctest ------------------------------------------------------------------------------------
doctest_global_setup = f"""
import torch
import snn_delays_ext
torch.manual_seed(0)
HAS_NORSE_FLAVOUR = {_module_exists('snn_delays_ext.norse')!r}
HAS_NIR = {hasattr(snn_delays_ext, 'export_to_nir')!r}
HAS_TRAIN = {_module_exists('snn_delays_ext.train')!r}
"""
doctest_test_doctest_blocks = "default"  # the ">>>" blocks of every docstring are tested

# -- intersphinx (opt-in: no internet in CI) ----------------------------------------------------
ONLINE = os.environ.get("SNN_DELAYS_DOCS_ONLINE", "") not in ("", "0")
intersphinx_mapping = (
    {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable", None),
        "snntorch": ("https://snntorch.readthedocs.io/en/latest", None),
        "norse": ("https://norse.github.io/norse", None),
        "tonic": ("https://tonic.readthedocs.io/en/latest", None),
        "nir": ("https://neuroir.org/docs", None),
        "numpy": ("https://numpy.org/doc/stable", None),
    }
    if ONLINE
    else {}
)
intersphinx_timeout = 10

# -- sphinx-gallery -----------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples")],
    "gallery_dirs": ["auto_examples"],
    # every script in examples/ is executed (not only plot_*.py); files starting with "_" are
    # helpers, not examples.
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"(__init__\.py|[\\/]_[^\\/]*\.py)$",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "image_scrapers": ("matplotlib",),
    "matplotlib_animations": False,
    "doc_module": ("snn_delays_ext",),
    "backreferences_dir": "gen_modules/backreferences",
    "reference_url": {"snn_delays_ext": None},
    "show_memory": False,
    "min_reported_time": 1,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "remove_config_comments": True,
}

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"snn_delays_ext {release}"
html_static_path: list = []
html_theme_options = {
    "source_repository": "https://github.com/snn-delays-ext/snn_delays_ext",
    "source_branch": "main",
    "source_directory": "docs/",
}
pygments_style = "sphinx"
pygments_dark_style = "monokai"

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3


# -- members shown on class pages --------------------------------------------------------------
def _skip_foreign_members(app, what, name, obj, skip, options):
    """Class pages list inherited members (the delay-layer mixin's ``effective_delays`` etc.),
    but only those defined in this package: not the hundred members of ``nn.Module`` or
    snnTorch's neurons (their docstrings are not ours)."""
    if what != "class" or skip:
        return None
    target = obj.fget if isinstance(obj, property) else obj
    target = getattr(target, "__func__", target)  # classmethod / bound method
    if type(obj).__name__ == "_tuplegetter":  # NamedTuple fields
        return None
    if inspect.isroutine(target) or isinstance(obj, property):
        mod = getattr(target, "__module__", None) or ""
        return None if mod.startswith("snn_delays_ext") else True
    return True  # inherited class-level data (flags, counters): not API


def _drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant without its own doc comment would show the docstring of its type
    (``dict() -> new empty dictionary ...``): show only its value instead."""
    if what in ("data", "attribute") and lines and not inspect.isclass(obj):
        type_doc = inspect.getdoc(type(obj)) or ""
        if type_doc and lines[0].strip() == type_doc.splitlines()[0].strip():
            del lines[:]


def _doctest_module_globals(app, what, name, obj, options, lines):
    """Run a docstring's examples with the globals of the module that defines it, as
    ``pytest --doctest-modules`` does (the doctest builder has no per-module namespace): a
    hidden ``testsetup`` appended to every docstring that has ``>>>`` examples."""
    if not any(line.lstrip().startswith(">>>") for line in lines):
        return
    if what == "module":
        modname = name
    else:
        target = obj.fget if isinstance(obj, property) else getattr(obj, "__func__", obj)
        modname = getattr(target, "__module__", None) if what != "data" else None
        if not modname or not modname.startswith("snn_delays_ext"):
            modname = name.rsplit(".", 1)[0]
            while modname and not _module_exists(modname):
                modname = modname.rpartition(".")[0]
    if not modname:
        return
    lines += ["", ".. testsetup:: *", "",
              f"   import importlib as _il; globals().update(vars(_il.import_module({modname!r})))",
              ""]


#: SNN_DELAYS_DOCS_STRICT_EXAMPLES=1: warn (an error under -W) for every public class or
#: function whose docstring has no ">>>" example (the project's "every public name has a
#: runnable example" rule). Off by default until every docstring has one.
STRICT_EXAMPLES = os.environ.get("SNN_DELAYS_DOCS_STRICT_EXAMPLES", "") not in ("", "0")


_WARNED: set = set()


def _require_examples(app, what, name, obj, options, lines):
    if STRICT_EXAMPLES and name in PUBLIC_CALLABLES and what in ("class", "function"):
        if name not in _WARNED and not any(line.lstrip().startswith(">>>") for line in lines):
            _WARNED.add(name)
            from sphinx.util import logging

            logging.getLogger(__name__).warning(
                "%s: public %s without a runnable '>>>' example in its docstring", name, what,
                type="snn_delays_ext", subtype="examples")


def setup(app):
    app.connect("autodoc-process-docstring", _require_examples)
    app.connect("autodoc-process-docstring", _doctest_module_globals)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _drop_type_docstrings)
