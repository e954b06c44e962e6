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
from typing import Any, Dict, List, Optional

from .config import OPTIMIZERS, PRESETS, SELECTIONS, WEIGHT_DECAY_SCOPES, TrainConfig, make_config
from .models import BETA_PARAMETRIZATIONS, NEURONS, READOUTS, SURROGATES, available_models

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


def _float_pair(s: str) -> List[float]:
    try:
        vals = [float(v) for v in s.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected two numbers like '0.5,0.98', got {s!r}") from e
    if len(vals) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers like '0.5,0.98', got {s!r}")
    return vals


def _delay_init(s: str) -> Any:
    try:
        return float(s)
    except ValueError:
        return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="snn-delays", description="Train and inspect spiking networks with learnable delays.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model (no arguments: the embedded default task)",
                       description="Settings: defaults < --preset < --config file < flags.")
    t.add_argument("--preset", choices=sorted(PRESETS), help="a paper configuration (default: 'default')")
    t.add_argument("--config", type=Path, help="config file (.json, .toml; .yaml with PyYAML)")
    t.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    t.add_argument("--out", type=Path, metavar="RUN_DIR", help="run folder (default runs/<dataset>-<model>-<time>)")
    g = t.add_argument_group("data")
    g.add_argument("--dataset", choices=["sequence", "yinyang", "braille", "shd", "ssc", "psmnist"])
    g.add_argument("--data-dir", dest="data_dir")
    g.add_argument("--dt", type=float, help="bin width in seconds (SHD/SSC/Braille)")
    g.add_argument("--n-steps", dest="n_steps", type=int, help="fixed number of time steps")
    g.add_argument("--pool", type=int, help="SHD/SSC channel pooling (5: 700 -> 140)")
    g.add_argument("--time-shift", dest="time_shift", type=int,
                   help="augment training samples by a random time shift of up to this many steps")
    g.add_argument("--time-stretch", dest="time_stretch", type=float,
                   help="training augmentation: stretch each sample in time by a random factor in [1-X, 1+X]")
    g.add_argument("--drop-event", dest="drop_event", type=float, metavar="P",
                   help="training augmentation: drop each input event with probability P (event-count inputs)")
    g.add_argument("--blend", type=float, metavar="P",
                   help="training augmentation: with probability P blend a sample with another of its class "
                        "in the batch (each bin from either, centres of mass aligned in time)")
    g.add_argument("--gap", type=int, help="sequence detection: steps between the two input spikes")
    g.add_argument("--train-limit", dest="train_limit", type=int, help="use only this many training samples")
    g.add_argument("--eval-limit", dest="eval_limit", type=int, help="... and validation/test samples")
    m = t.add_argument_group("model")
    m.add_argument("--model", help=f"model preset: {', '.join(sorted(available_models()))}")
    m.add_argument("--hidden", type=_int_list, help="hidden layer sizes, e.g. 256,256 or 2x256")
    m.add_argument("--max-delay", dest="max_delay", type=int)
    m.add_argument("--delay-type", dest="delay_type", choices=["synaptic", "axonal", "dendritic"])
    m.add_argument("--delay-init", dest="delay_init", type=_delay_init, help="'uniform', 'half_normal' or a number")
    m.add_argument("--output-delays", dest="output_delays", action=argparse.BooleanOptionalAction, default=None,
                   help="learnable delays also on the readout connections (or not)")
    m.add_argument("--delay-std", dest="delay_std", type=float,
                   help="delay_init 'half_normal': standard deviation in steps (default max_delay / 2)")
    m.add_argument("--interpolation", choices=["triangle", "round"])
    m.add_argument("--beta", type=float)
    m.add_argument("--beta-out", dest="beta_out", type=float, help="decay of the leaky-integrator readout")
    m.add_argument("--surrogate", choices=list(SURROGATES),
                   help="surrogate presets: spike surrogate ('triangle': max(0, 1 - |u|), DelRec's; "
                        "'triangular': snnTorch's, +-threshold)")
    m.add_argument("--surrogate-param", dest="surrogate_param", type=float,
                   help="its parameter: atan alpha, fast_sigmoid slope, triangle gamma, triangular threshold")
    m.add_argument("--dropout", type=float, help="hidden-spike dropout probability (training only)")
    m.add_argument("--learn-beta", dest="learn_beta", action=argparse.BooleanOptionalAction, default=None,
                   help="feed-forward presets: learn one membrane decay per hidden neuron (or not)")
    m.add_argument("--learn-threshold", dest="learn_threshold", action=argparse.BooleanOptionalAction, default=None,
                   help="feed-forward presets: learn one firing threshold per hidden neuron (from 1; no weight decay)")
    m.add_argument("--beta-range", dest="beta_range", type=_float_pair, metavar="LOW,HIGH",
                   help="feed-forward presets: each hidden neuron's initial decay drawn uniformly from [LOW, HIGH) "
                        "(heterogeneous time constants; learned with --learn-beta)")
    m.add_argument("--neuron", choices=list(NEURONS),
                   help="feed-forward presets: hidden neurons, snnTorch's Leaky (lif) or adaptive-threshold LIF (alif)")
    m.add_argument("--adapt-decay", dest="adapt_decay", type=float, metavar="RHO",
                   help="--neuron alif: decay of the adaptation trace per step (exp(-dt / tau_a))")
    m.add_argument("--adapt-strength", dest="adapt_strength", type=float, metavar="B",
                   help="--neuron alif: threshold 1 + B * trace (B: the rise at one spike per step)")
    m.add_argument("--reset-mechanism", dest="reset_mechanism", choices=["subtract", "zero", "none"],
                   help="surrogate presets: the LIF neurons' reset (snnTorch's; default subtract)")
    m.add_argument("--reset-delay", dest="reset_delay", action=argparse.BooleanOptionalAction, default=None,
                   help="surrogate presets: reset one step after the spike (snnTorch's default) or in its step "
                        "(--no-reset-delay; with --reset-mechanism zero: NIR's LIF, exported exactly)")
    m.add_argument("--detach-reset", dest="detach_reset", action=argparse.BooleanOptionalAction, default=None,
                   help="surrogate presets with --reset-mechanism zero --no-reset-delay: no gradient through "
                        "the reset (default) or snnTorch's (--no-detach-reset)")
    m.add_argument("--beta-parametrization", dest="beta_parametrization", choices=list(BETA_PARAMETRIZATIONS),
                   help="with --learn-beta: learn beta clipped to [0, 1] (clamp, snnTorch) or its logit (sigmoid)")
    m.add_argument("--batch-norm", dest="batch_norm", action=argparse.BooleanOptionalAction, default=None,
                   help="surrogate presets: batch-normalise each hidden layer's input current (or not)")
    m.add_argument("--readout", choices=list(READOUTS),
                   help="logits from the readout: sum over time, leaky-integrator mean / max / "
                        "loss-shaped mean, or the time-averaged softmax")
    m.add_argument("--tau-syn", dest="tau_syn", type=float, help="EventProp models: synaptic time constant (steps)")
    m.add_argument("--tau-mem", dest="tau_mem", type=float, help="EventProp models: membrane time constant (steps)")
    m.add_argument("--tau-out", dest="tau_out", type=float,
                   help="EventProp models: readout membrane time constant (steps; default: --tau-mem)")
    m.add_argument("--weight-mean", dest="weight_mean", type=float,
                   help="EventProp models: initial weights ~ N(mean, std) / sqrt(fan_in) (with --weight-std)")
    m.add_argument("--weight-std", dest="weight_std", type=float)
    m.add_argument("--reg-strength", dest="reg_strength", type=float,
                   help="EventProp models: spike-count regulariser strength k_reg (0: off)")
    m.add_argument("--reg-target", dest="reg_target", type=float,
                   help="EventProp models: target spikes per hidden neuron and sample (the paper's nu = 14)")
    o = t.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int)
    o.add_argument("--batch-size", dest="batch_size", type=int, help="global batch (split over processes)")
    o.add_argument("--lr", type=float, help="learning rate of the weights")
    o.add_argument("--delay-lr", dest="delay_lr", type=float, help="learning rate of the delays")
    o.add_argument("--beta-lr", dest="beta_lr", type=float,
                   help="learning rate of the decay logits (--beta-parametrization sigmoid; default: --lr)")
    o.add_argument("--weight-decay", dest="weight_decay", type=float)
    o.add_argument("--weight-decay-scope", dest="weight_decay_scope", choices=list(WEIGHT_DECAY_SCOPES),
                   help="parameters that get weight decay: all non-delay ones (default) or only weight "
                        "matrices (biases, decays, thresholds and norm parameters excluded)")
    o.add_argument("--label-smoothing", dest="label_smoothing", type=float,
                   help="label smoothing of the training cross-entropy (0: none)")
    o.add_argument("--optimizer", choices=list(OPTIMIZERS),
                   help="adam: weight decay as an L2 term in the gradient; adamw: decoupled weight decay")
    o.add_argument("--lr-schedule", dest="lr_schedule", choices=["cosine", "none"])
    o.add_argument("--ema", type=float, metavar="DECAY",
                   help="validate and test an exponential moving average of the weights (decay per step, e.g. 0.99; 0: off)")
    o.add_argument("--selection", choices=list(SELECTIONS),
                   help="model tested at the end: best validation accuracy (val, default) or the final epoch (last)")
    o.add_argument("--train-on-val", dest="train_on_val", action=argparse.BooleanOptionalAction, default=None,
                   help="train on the training and validation samples, no validation (needs --selection last)")
    o.add_argument("--sigma0", type=float, help="initial extra width of the delay triangle (0: none)")
    o.add_argument("--sigma-decay", dest="sigma_decay", type=float,
                   help="base of DelRec's width schedule sigma0 * x**(100 * epoch / epochs) (0 < x <= 1)")
    o.add_argument("--seed", type=int)
    o.add_argument("--device", help="'auto' (default), 'cpu', 'cuda', 'cuda:N'")
    o.add_argument("--num-workers", dest="num_workers", type=int, help="DataLoader worker processes")
    o.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="also log to TensorBoard when it is installed (default) or not")
    o.add_argument("--flush-denormal", dest="flush_denormal", action=argparse.BooleanOptionalAction,
                   default=None, help="CPU: flush denormal floats to zero while training (default on; "
                   "learned decays near 0 make the backward pass's products denormal, up to 8x slower)")
    o.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no tqdm bars")
    o.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

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


_NOT_CONFIG = {"command", "preset", "config", "resume", "out", "print_config"}


def _train(args: argparse.Namespace) -> int:
    from .engine import train

    overrides: Dict[str, Any] = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG and v is not None}
    if args.resume is not None:
        cfg_file = args.resume / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"resume: '{args.resume}' has no config.json (not a run folder)")
        saved = json.loads(cfg_file.read_text())
        saved.update({k: v for k, v in overrides.items() if k in ("device", "progress", "num_workers",
                                                                   "flush_denormal")})
        cfg = TrainConfig.from_dict(saved).validate()
        run_dir = args.resume
    else:
        preset = args.preset if args.preset is not None or args.config is not None else "default"
        cfg = make_config(preset, args.config, overrides)
        run_dir = args.out if args.out is not None else (Path(cfg.out) if cfg.out else None)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    try:
        train(cfg, run_dir=run_dir, resume=args.resume is not None)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():  # started by the engine under torchrun
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
            print("presets (--preset):")
            for name, values in PRESETS.items():
                print(f"  {name:16s} dataset={values.get('dataset')} model={values.get('model')} hidden={values.get('hidden')}")
            print("model presets (--model):")
            for name, desc in available_models().items():
                print(f"  {name:16s} {desc}")
            return 0
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"snn-delays: error: {e}", file=sys.stderr)
        return 2
    return 1  # pragma: no cover
