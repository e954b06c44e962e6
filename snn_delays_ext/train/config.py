"""Training configuration: a dataclass, paper presets, loading from JSON/TOML/YAML, validation."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .._checks import check_fraction

__all__ = ["TrainConfig", "PRESETS", "load_config_file", "make_config", "DATASETS", "OPTIMIZERS", "SELECTIONS",
           "WEIGHT_DECAY_SCOPES"]

#: ``optimizer`` choices: ``torch.optim.Adam`` (weight decay added to the gradient, an L2 term)
#: or ``torch.optim.AdamW`` (decoupled weight decay, Loshchilov & Hutter 2019).
OPTIMIZERS = ("adam", "adamw")
#: ``selection`` choices: the model tested at the end is the one of the best validation accuracy
#: (earliest on ties) or the one after the final epoch.
SELECTIONS = ("val", "last")
#: ``weight_decay_scope`` choices: every non-delay parameter (weights, biases, clipped decays,
#: thresholds, batch-norm scales) or only the weight matrices and kernels (parameters with two or
#: more dimensions; biases, decays, thresholds and norm parameters then have none, as timm and
#: most transformer recipes do).
WEIGHT_DECAY_SCOPES = ("all", "matrices")
DATASETS = ("sequence", "yinyang", "braille", "shd", "ssc", "psmnist")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in the run folder.

    Examples
    --------
    >>> cfg = TrainConfig(epochs=3)
    >>> cfg.validate().epochs
    3
    >>> try:
    ...     TrainConfig(epochs=0).validate()
    ... except ValueError as e:
    ...     print(e)
    epochs: expected an int >= 1, got 0
    """

    # data
    dataset: str = "sequence"
    data_dir: Optional[str] = None
    dt: Optional[float] = None          # bin width in seconds (SHD/SSC/Braille)
    n_steps: Optional[int] = None       # fixed number of steps (SHD/SSC; Yin-Yang/sequence length)
    pool: int = 1                       # SHD/SSC channel pooling (5: 700 -> 140)
    train_limit: Optional[int] = None   # keep only this many training samples (quick runs)
    eval_limit: Optional[int] = None    # ... and validation/test samples
    time_shift: int = 0                 # training augmentation: random shift of each sample, in steps
    time_stretch: float = 0.0           # training augmentation: random stretch factor in [1 - x, 1 + x]
    drop_event: float = 0.0             # training augmentation: each input event dropped with this probability
    blend: float = 0.0                  # training augmentation: probability of blending a sample with one of its class
    gap: int = 10                       # sequence detection: steps between the two spikes
    # model
    model: str = "ff-delays"
    hidden: List[int] = field(default_factory=lambda: [32])
    max_delay: int = 12
    delay_type: str = "synaptic"
    output_delays: bool = True
    delay_init: Union[str, float] = "uniform"
    delay_std: Optional[float] = None
    interpolation: str = "triangle"
    beta: float = 0.9
    beta_out: float = 0.9
    readout: str = "li_mean"
    surrogate: str = "atan"             # surrogate models: "atan", "fast_sigmoid", "triangle" or "triangular"
    surrogate_param: Optional[float] = None  # its alpha / slope / gamma / threshold (None: default)
    dropout: float = 0.0                # hidden-spike dropout (training only)
    learn_beta: bool = False            # ff-delays/ff-nodelay: one learnable decay per hidden neuron
    learn_threshold: bool = False       # ff-delays/ff-nodelay: one learnable firing threshold per hidden neuron
    beta_range: Optional[List[float]] = None  # ff-delays/ff-nodelay: initial decays uniform in [low, high)
    neuron: str = "lif"                 # ff-delays/ff-nodelay hidden neurons: "lif" (snnTorch Leaky) or "alif"
    adapt_decay: float = 0.97           # neuron "alif": decay of the adaptation trace per step
    adapt_strength: float = 1.8         # neuron "alif": threshold 1 + adapt_strength * trace
    reset_mechanism: str = "subtract"   # surrogate models' LIF reset: "subtract", "zero" or "none" (snnTorch's)
    reset_delay: bool = True            # reset one step after the spike (snnTorch's default) or in its step
    detach_reset: bool = True           # surrogate models, reset "zero" without delay: no gradient through the reset
    beta_parametrization: str = "clamp"  # learn_beta: "clamp" (snnTorch: beta clipped to [0, 1]) or "sigmoid" (a logit)
    beta_lr: Optional[float] = None      # learning rate of the decay logits (beta_parametrization "sigmoid"); None: lr
    batch_norm: bool = False            # surrogate models: batch norm of each hidden layer's input current
    tau_syn: float = 5.0                # EventProp models: synaptic time constant (steps)
    tau_mem: float = 20.0               # EventProp models: membrane time constant (steps)
    tau_out: Optional[float] = None     # EventProp models: readout membrane time constant (steps; None: tau_mem)
    weight_mean: Optional[float] = None  # EventProp models: weights ~ N(mean, std) / sqrt(fan_in)
    weight_std: Optional[float] = None
    reg_strength: float = 0.0           # EventProp models: spike-count regulariser k_reg (0: off)
    reg_target: float = 0.0             # EventProp models: its target spikes per neuron and sample (nu)
    # optimisation
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    delay_lr: float = 1e-1
    weight_decay: float = 0.0
    weight_decay_scope: str = "all"     # "all" non-delay parameters or only "matrices" (ndim >= 2)
    label_smoothing: float = 0.0        # training loss only; validation/test losses are plain
    lr_schedule: str = "cosine"
    optimizer: str = "adam"             # "adam" (weight decay as an L2 term) or "adamw" (decoupled weight decay)
    ema: float = 0.0                    # decay of a parameter moving average used for validation/test (0: off)
    selection: str = "val"              # model tested: "val" (best validation accuracy) or "last" (final epoch)
    train_on_val: bool = False          # train on training + validation samples (needs selection "last")
    sigma0: float = 0.0
    sigma_decay: float = 0.95
    # run
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    out: Optional[str] = None
    progress: bool = True
    tensorboard: bool = True
    flush_denormal: bool = True         # CPU: flush denormal floats to zero while training (speed)

    def validate(self) -> "TrainConfig":
        """Check every value; raise ``ValueError``/``TypeError`` naming the field."""
        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def need_int(name: str, minimum: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if not is_int(v):
                raise TypeError(f"{name}: expected an int, got {type(v).__name__} ({v!r})")
            if v < minimum:
                raise ValueError(f"{name}: expected an int >= {minimum}, got {v}")

        def need_float(name: str, lo: float, hi: float = math.inf, optional: bool = False,
                       lo_open: bool = False) -> None:
            v = getattr(self, name)
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name}: expected a number, got {type(v).__name__} ({v!r})")
            bad = (not math.isfinite(float(v))) or v > hi or (v <= lo if lo_open else v < lo)
            if bad:
                rng = f"{'(' if lo_open else '['}{lo}, {hi}]"
                raise ValueError(f"{name}: expected a number in {rng}, got {v}")
            setattr(self, name, float(v))

        def need_choice(name: str, choices) -> None:
            v = getattr(self, name)
            if v not in choices:
                raise ValueError(f"{name}: expected one of {list(choices)}, got {v!r}")

        need_choice("dataset", DATASETS)
        for n in ("epochs", "batch_size", "max_delay"):
            need_int(n, 1)
        need_int("pool", 1)
        need_int("time_shift", 0)
        need_int("gap", 1)
        need_int("seed", 0)
        need_int("num_workers", 0)
        for n in ("n_steps", "train_limit", "eval_limit"):
            need_int(n, 1, optional=True)
        need_float("dt", 0.0, optional=True, lo_open=True)
        for n in ("lr", "delay_lr"):
            need_float(n, 0.0)
        need_float("weight_decay", 0.0)
        need_float("label_smoothing", 0.0, 1.0)
        need_float("blend", 0.0, 1.0)
        need_float("sigma0", 0.0)
        need_float("sigma_decay", 0.0, 1.0, lo_open=True)
        need_float("beta", 0.0, 1.0)
        need_float("beta_out", 0.0, 1.0)
        self.dropout = check_fraction("dropout", self.dropout, "a probability")
        self.time_stretch = check_fraction("time_stretch", self.time_stretch)
        self.drop_event = check_fraction("drop_event", self.drop_event, "a probability")
        self.ema = check_fraction("ema", self.ema, "an averaging decay")
        for n in ("learn_beta", "learn_threshold", "output_delays", "batch_norm", "train_on_val", "flush_denormal",
                  "reset_delay", "detach_reset"):
            if not isinstance(getattr(self, n), bool):
                raise TypeError(f"{n}: expected True or False, got {getattr(self, n)!r}")
        need_float("delay_std", 0.0, optional=True, lo_open=True)
        need_float("tau_syn", 0.0, lo_open=True)
        need_float("reg_strength", 0.0)
        need_float("reg_target", 0.0)
        need_float("tau_mem", 0.0, lo_open=True)
        need_float("tau_out", 0.0, optional=True, lo_open=True)
        need_float("weight_mean", -math.inf, optional=True)
        need_float("weight_std", 0.0, optional=True)
        if (self.weight_mean is None) != (self.weight_std is None):
            raise ValueError(f"weight_mean, weight_std: give both or neither, got {self.weight_mean!r} and "
                             f"{self.weight_std!r}")
        if not isinstance(self.hidden, (list, tuple)) or not all(is_int(h) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden: expected a list of layer sizes (ints >= 1), got {self.hidden!r}")
        self.hidden = list(self.hidden)
        need_choice("delay_type", ("synaptic", "axonal", "dendritic"))
        need_choice("interpolation", ("triangle", "round"))
        need_float("surrogate_param", 0.0, optional=True, lo_open=True)
        need_choice("lr_schedule", ("cosine", "none"))
        need_choice("optimizer", OPTIMIZERS)
        need_choice("weight_decay_scope", WEIGHT_DECAY_SCOPES)
        need_choice("selection", SELECTIONS)
        if self.train_on_val and self.selection != "last":
            raise ValueError("train_on_val: the validation samples are then training samples and cannot select "
                             f"the model; expected selection='last', got {self.selection!r}")
        if isinstance(self.delay_init, bool) or not (
            isinstance(self.delay_init, (int, float)) or self.delay_init in ("uniform", "half_normal")
        ):
            raise ValueError(f"delay_init: expected 'uniform', 'half_normal' or a number, got {self.delay_init!r}")
        if not isinstance(self.device, str):
            raise TypeError(f"device: expected a string such as 'cpu', 'cuda' or 'auto', got {self.device!r}")
        from .models import BETA_PARAMETRIZATIONS, READOUTS, SURROGATES, available_models, check_neuron

        need_choice("readout", READOUTS)
        check_neuron(self.neuron, self.learn_threshold, self.reset_mechanism, self.reset_delay)
        need_choice("surrogate", tuple(SURROGATES))
        need_choice("beta_parametrization", BETA_PARAMETRIZATIONS)
        if self.beta_parametrization == "sigmoid":
            if not self.learn_beta:
                raise ValueError("beta_parametrization: 'sigmoid' parametrises a learnable decay; "
                                 "expected learn_beta=True, got False")
            if not 0.0 < self.beta < 1.0:
                raise ValueError(f"beta: expected a number in (0, 1) with beta_parametrization='sigmoid', "
                                 f"got {self.beta}")
        from .models import check_beta_range

        br = check_beta_range(self.beta_range,
                              open_interval=self.learn_beta and self.beta_parametrization == "sigmoid")
        self.beta_range = None if br is None else list(br)
        need_float("adapt_decay", 0.0, 1.0)
        need_float("adapt_strength", 0.0)
        need_float("beta_lr", 0.0, optional=True)
        if self.beta_lr is not None and self.beta_parametrization != "sigmoid":
            raise ValueError(f"beta_lr: applies to decay logits; expected beta_parametrization='sigmoid', "
                             f"got {self.beta_parametrization!r}")
        if self.model not in available_models():
            raise ValueError(f"model: expected one of {sorted(available_models())}, got {self.model!r}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown key(s) {unknown}; valid keys are {sorted(names)}")
        return cls(**d)


#: Paper configurations (docs/reproduction.rst) and the embedded default. Values not given come
#: from :class:`TrainConfig`'s defaults. ``snn-delays train --preset NAME``.
PRESETS: Dict[str, Dict[str, Any]] = {
    # embedded default: no download, about a minute on a laptop CPU
    "default": dict(dataset="sequence", model="ff-delays", hidden=[], max_delay=12, gap=10,
                    delay_init=0.0, output_delays=True, readout="li_max", beta_out=0.5,
                    epochs=15, batch_size=50, lr=1e-2, delay_lr=0.5, sigma0=10.0, lr_schedule="none"),
    "sequence": dict(dataset="sequence", model="ff-delays", hidden=[], max_delay=12, gap=10,
                    delay_init=0.0, output_delays=True, readout="li_max", beta_out=0.5,
                    epochs=15, batch_size=50, lr=1e-2, delay_lr=0.5, sigma0=10.0, lr_schedule="none"),
    # Yin-Yang 5(4 + bias)-30-3, time-to-first-spike input over 20 steps; "round" delays (integer
    # forward, straight-through gradient, as mlGeNN) so rounding costs nothing at the end
    "yinyang": dict(dataset="yinyang", model="ff-delays", hidden=[30], max_delay=10, n_steps=30,
                    delay_type="synaptic", interpolation="round", readout="li_mean", beta=0.9,
                    beta_out=0.9, epochs=100, batch_size=100, lr=1e-2, delay_lr=5e-2, sigma0=2.0),
    # Braille 24-256-256-27 feed-forward, synaptic delays (one per connection, as the EventProp
    # paper) on the hidden layers, 20 ms bins (66 steps), delays up to 20 steps (400 ms);
    # per-neuron learnable decays, dropout 0.3; integer delays in the forward pass ("round",
    # straight-through triangle gradient, as mlGeNN), so the exported (rounded) network is the
    # trained one; each training sample shifted by a random 0-2 steps either way: 80.5% mean
    # test over seeds 0-8 (80.0-81.3%; without the shift 80.2% over seeds 0-7), see docs/results.md
    "braille": dict(dataset="braille", model="ff-delays", hidden=[256, 256], max_delay=20, dt=0.02,
                    delay_type="synaptic", interpolation="round", output_delays=False, readout="li_mean", beta=0.9,
                    beta_out=0.95, epochs=120, batch_size=128, lr=1e-2, delay_lr=0.1, sigma0=2.0,
                    weight_decay=5e-4, dropout=0.3, learn_beta=True, time_shift=2),
    # EventProp presets (exact gradients; time constants in steps, see EventPropSNN). Sequence
    # task: 2 inputs -> 2 LI outputs, max-over-time voltage, delays learn the order
    "sequence-eventprop": dict(dataset="sequence", model="eventprop-ff", hidden=[], max_delay=12, gap=10,
                               delay_init=0.0, output_delays=True, readout="li_max", weight_mean=1.4,
                               weight_std=0.1, epochs=5, batch_size=50, lr=1e-2, delay_lr=0.5, sigma0=0.0,
                               lr_schedule="none"),
    # Braille 24-256-256-27 feed-forward (the EventProp paper's 2x256 with delays): 10 ms bins, so
    # tau_syn 5 / tau_mem 20 steps are 50 / 200 ms; delays up to 200 ms; loss-shaping readout
    "braille-eventprop": dict(dataset="braille", model="eventprop-ff", hidden=[256, 256], max_delay=20,
                              dt=0.01, delay_type="synaptic", output_delays=True, readout="li_shaped",
                              tau_syn=5.0, tau_mem=20.0, weight_mean=2.0, weight_std=1.0, delay_init="uniform",
                              epochs=40, batch_size=64, lr=2e-2, delay_lr=0.05, sigma0=0.0),
    # SHD 700-512rec-20 (the EventProp paper): 2 ms bins, tau_syn 5 ms / tau_mem 20 ms, recurrent
    # delayed current-based LIF; not run on this machine (needs the SHD files and a GPU day)
    "shd-eventprop": dict(dataset="shd", model="eventprop-rec", hidden=[512], max_delay=50, dt=0.002,
                          pool=1, readout="li_shaped", tau_syn=2.5, tau_mem=10.0, weight_mean=0.8,
                          weight_std=0.26, delay_init="uniform", epochs=50, batch_size=32, lr=1e-3,
                          delay_lr=0.05, sigma0=0.0),
    "shd-delrec": dict(dataset="shd", model="delrec", hidden=[256, 256], max_delay=25, dt=0.01,
                       pool=5, delay_type="axonal", beta=0.5, surrogate="triangle", readout="sum", delay_std=12.0,
                       epochs=100, batch_size=128, lr=1e-3, delay_lr=5e-2, sigma0=10.0),
    "ssc-delrec": dict(dataset="ssc", model="delrec", hidden=[256, 256, 256], max_delay=50, n_steps=250,
                       pool=5, delay_type="axonal", beta=0.5, surrogate="triangle", readout="sum", delay_std=12.0,
                       epochs=100, batch_size=128, lr=1e-3, delay_lr=5e-2, sigma0=10.0),
    "psmnist-delrec": dict(dataset="psmnist", model="delrec", hidden=[64, 212, 212], max_delay=50,
                           delay_type="axonal", beta=0.5, surrogate="triangle", readout="sum", delay_std=12.0,
                           epochs=100, batch_size=128, lr=1e-3, delay_lr=5e-2, sigma0=10.0),
}


def load_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a config file: ``.json``, ``.toml`` (``tomllib``, Python >= 3.11, or ``tomli``) or
    ``.yaml``/``.yml`` (needs PyYAML). A ``[train]`` table/section, if present, is used."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config: file '{p}' not found")
    suffix = p.suffix.lower()
    if suffix == ".json":
        data = json.loads(p.read_text())
    elif suffix == ".toml":
        try:
            import tomllib  # type: ignore[import-not-found]
        except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError as e:
                raise ValueError("config: reading TOML needs Python >= 3.11 or `pip install tomli`; "
                                 "or use a .json file") from e
        data = tomllib.loads(p.read_text())
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ModuleNotFoundError as e:
            raise ValueError("config: reading YAML needs `pip install pyyaml`; or use .json/.toml") from e
        data = yaml.safe_load(p.read_text())
    else:
        raise ValueError(f"config: expected a .json, .toml or .yaml file, got '{p.name}'")
    if not isinstance(data, dict):
        raise ValueError(f"config: expected a mapping of settings in '{p}', got {type(data).__name__}")
    if "train" in data and isinstance(data["train"], dict):
        data = data["train"]
    return data


def make_config(preset: Optional[str] = None, config_file: Optional[Union[str, Path]] = None,
                overrides: Optional[Dict[str, Any]] = None) -> TrainConfig:
    """Build a validated config: defaults < ``preset`` < ``config_file`` < ``overrides``.

    A config file may name its own ``preset``.

    Examples
    --------
    >>> make_config("yinyang", overrides={"epochs": 2}).hidden
    [30]
    """
    values: Dict[str, Any] = {}
    file_values = load_config_file(config_file) if config_file is not None else {}
    file_preset = file_values.pop("preset", None)
    preset = preset if preset is not None else file_preset
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        values.update(PRESETS[preset])
    values.update(file_values)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(values).validate()
