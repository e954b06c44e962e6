"""``snn-delays``: command-line training, plotting and NIR export.

``snn-delays train`` (no arguments) trains the embedded default (sequence detection, no
download, well under a minute on a laptop CPU) and prints the final accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .config import PRESETS, TrainConfig, resolve_option, make_config, options, preset_description
from .models import available_models

__all__ = ["main", "build_parser"]


def _int_list(s: str) -> List[int]:
    s = s.strip()
    if s in ("", "none", "[]"):
        return []
    try:
        if "x" in s:
            n, width = s.split("x")
            return [int(width)] * int(n)
        return [int(v) for v in s.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected layer sizes like '256,256' or '2x256', got {s!r}") from e


def _parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value (``3``, ``1e-3``, ``true``, ``[256, 256]``, ``"x"``), ``none``
    for ``None``, else the text itself (``--set run.device=cuda``)."""
    if text.strip().lower() in ("none", "null"):
        return None
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except Exception:  # noqa: BLE001 - not a TOML value: a plain string
        return text


def _setting(text: str) -> Tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected SECTION.NAME=VALUE (e.g. optim.lr=1e-3), got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), _parse_value(value.strip())


def _flag_kwargs(f: Any) -> Dict[str, Any]:
    """argparse keywords of an option's own flag, from its check's kind."""
    kind = f.metadata["check"].kind
    if kind[0] == "bool":
        return dict(action=argparse.BooleanOptionalAction, default=None)
    if kind[0] == "int":
        return dict(type=int)
    if kind[0] == "float":
        return dict(type=float)
    if kind[0] == "choice":
        return dict(choices=list(kind[1]))
    if kind[0] == "sizes":
        return dict(type=_int_list)
    return dict(type=str)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="snn-delays", description="Train and inspect spiking networks with learnable delays.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (no arguments: the embedded default task)",
                       description="Settings: defaults < --preset < --config file < --set < flags. Every option "
                       "is reachable as --set SECTION.NAME=VALUE (--print-config lists them with their "
                       "values); the everyday ones also have a flag.")
    t.add_argument("--preset", choices=sorted(PRESETS), help="a paper configuration (default: 'default')")
    t.add_argument("--config", type=Path, help="config file (.toml with sections, .json; .yaml with PyYAML)")
    t.add_argument("--set", dest="settings", type=_setting, action="append", default=[],
                   metavar="SECTION.NAME=VALUE", help="any option, e.g. --set optim.weight_decay=5e-4 "
                   "--set surrogate.reset_delay=false --set model.hidden=[128,128] (repeatable)")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("--out", type=Path, metavar="RUN_DIR", help="run folder (default runs/<dataset>-<model>-<time>)")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    groups: Dict[str, argparse._ArgumentGroup] = {}
    for section, short, f in options():
        if f.metadata["flag"]:
            g = groups.setdefault(section, t.add_argument_group(section))
            g.add_argument("--" + short.replace("_", "-"), dest=short, help=f.metadata["help"], **_flag_kwargs(f))

    pl = sub.add_parser("plot", help="write PNG plots of a run folder")
    pl.add_argument("run_dir", type=Path)
    ex = sub.add_parser("export", help="write a trained run's model to an NIR file (delays rounded)",
                        description="Rebuild the model a run selected (RUN_DIR/model_best.pt), round its "
                        "delays to whole steps and write it as an NIR graph (delays in seconds).")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--out", type=Path, help="file to write (default RUN_DIR/model.nir)")
    ex.add_argument("--dt", type=float, help="seconds per step (default: the run's bin width, else 1 ms)")
    ex.add_argument("--max-hardware-delay", dest="max_hardware_delay", type=int,
                    help="refuse delays longer than this many steps")
    sub.add_parser("presets", help="list the presets and model presets")
    return p


_NOT_CONFIG = {"command", "preset", "config", "resume", "out", "print_config", "settings"}
#: Options a resumed run may change (how it runs, not what it computes)
_RESUMABLE = {"run.device", "run.progress", "run.num_workers", "run.flush_denormal", "run.tensorboard"}


def _train(args: argparse.Namespace) -> int:
    from .engine import train

    overrides: Dict[str, Any] = dict(args.settings)
    overrides.update({k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None})
    if args.resume is not None:
        cfg_file = args.resume / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"resume: '{args.resume}' has no config.json (not a run folder)")
        cfg = TrainConfig.from_dict(json.loads(cfg_file.read_text()))
        for key, value in overrides.items():
            section, name = resolve_option(key)
            if f"{section}.{name}" not in _RESUMABLE and cfg.get(key) != value:
                raise ValueError(
                    f"resume: {section}.{name} is {cfg.get(key)!r} in '{cfg_file}'; a resumed run computes what "
                    f"it started with, so it takes only {sorted(_RESUMABLE)} (got {value!r}). Start a new run "
                    "(--out) to change it")
            cfg.set(key, value)
        cfg.validate()
        run_dir = args.resume
    else:
        preset = args.preset if args.preset is not None or args.config is not None else "default"
        # a --set NAME=none sets None (flags left out are None and are not in `overrides`)
        cfg = make_config(preset, args.config, overrides, keep_none=True)
        run_dir = args.out if args.out is not None else (Path(cfg.run.out) if cfg.run.out else None)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    finished = False
    try:
        train(cfg, run_dir=run_dir, resume=args.resume is not None)
        finished = True
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # started by the engine under torchrun
            if finished:
                # every process leaves together: a process that tears its gloo connections down
                # while another still finishes its run aborts that one ("terminate called")
                dist.barrier()
            dist.destroy_process_group()
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``snn-delays`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "plot":
            from .plots import plot_run

            for p in plot_run(args.run_dir):
                print(p)
            return 0
        if args.command == "export":
            from .export import export_run

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                path, graph = export_run(args.run_dir, args.out, args.dt, args.max_hardware_delay)
            for w in caught:
                if str(w.message).startswith("export"):
                    print(f"snn-delays: warning: {w.message}", file=sys.stderr)
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            print(f"wrote {path} (dt {graph.metadata['dt']:g} s, readout {graph.metadata['readout']!r}, "
                  f"{len(graph.nodes) - 2} layers)")
            return 0
        if args.command == "presets":
            print("presets (--preset; files in snn_delays_ext/train/presets):")
            for name, values in PRESETS.items():
                m = values.get("model", {})
                print(f"  {name:20s} dataset={values.get('data', {}).get('dataset')} model={m.get('name')} "
                      f"hidden={m.get('hidden')}")
                print(f"  {'':20s} {preset_description(name)}")
            print("model presets (--model):")
            for name, desc in available_models().items():
                print(f"  {name:16s} {desc}")
            return 0
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"snn-delays: error: {e}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover
