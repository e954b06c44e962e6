"""Training configuration: sections of options, each defined once, presets as TOML files.

A :class:`TrainConfig` holds seven sections: :class:`DataConfig`, :class:`AugmentConfig`,
:class:`ModelConfig` (what every model has), :class:`SurrogateModelConfig` (the surrogate-gradient
models' neurons and delays), :class:`EventPropModelConfig` (the EventProp models' neurons),
:class:`OptimConfig` and :class:`RunConfig`. Every option is one dataclass field whose metadata
carries its help text and its check; validation and the command line's ``--set`` are generated
from them, and the everyday options (``flag=True``) also get a flag of their own.

An option is addressed as ``section.name`` (``optim.lr``) or by its name alone (``lr``): names
are unique across sections (the model's name is ``model.name``, ``model`` for short). Settings
come from the defaults < a preset (``presets/<name>.toml`` in this package) < a config file <
the command line.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

__all__ = ["TrainConfig", "DataConfig", "AugmentConfig", "ModelConfig", "SurrogateModelConfig", "EventPropModelConfig",
           "OptimConfig", "RunConfig", "PRESETS", "SECTIONS", "load_config_file", "make_config", "options",
           "DATASETS", "OPTIMIZERS", "SELECTIONS", "READOUTS", "LR_SCHEDULES", "SURROGATE_NAMES", "REMOVED",
           "resolve_option", "preset_description"]

#: Data sets the engine knows.
DATASETS = ("sequence", "yinyang", "braille", "shd", "ssc", "psmnist")
#: ``optim.optimizer``: ``torch.optim.Adam`` (weight decay as an L2 term in the gradient) or
#: ``torch.optim.AdamW`` (decoupled weight decay, DelRec's).
OPTIMIZERS = ("adam", "adamw")
#: ``optim.selection``: the model tested at the end is the best on validation (earliest on
#: ties) or the final epoch's.
SELECTIONS = ("val", "last")
#: ``model.readout``: the sum of the readout current over time (DelRec's SSC and PS-MNIST), or
#: the mean, max or loss-shaped mean ``(1/T) sum_t exp(-t/T) v_t`` of a leaky integrator's
#: voltage, or the sum over time of its per-step softmax ``sum_t softmax(v_t)`` (DelRec's SHD:
#: the cross-entropy is then taken of that sum).
READOUTS = ("sum", "li_mean", "li_max", "li_shaped", "li_softmax_sum")
#: ``optim.lr_schedule`` / ``optim.delay_lr_schedule``, stepped once per epoch: cosine to 0
#: (``torch.optim.lr_scheduler.CosineAnnealingLR``), constant, or one cycle
#: (``torch.optim.lr_scheduler.OneCycleLR`` with ``total_steps = epochs`` and torch's defaults,
#: the configured rate being the peak; DelRec's).
LR_SCHEDULES = ("cosine", "none", "onecycle")
#: ``surrogate.surrogate``: snnTorch's atan and fast_sigmoid, this package's triangle (DelRec's)
#: and snnTorch's ``triangular`` (not a triangle: +-threshold).
SURROGATE_NAMES = ("atan", "fast_sigmoid", "triangle", "triangular")

#: Options that measured no gain and that no published configuration needs, with their former
#: defaults: an old run folder's ``config.json`` that keeps the default loads (the option is
#: dropped), any other value is refused with this note.
REMOVED: Dict[str, Any] = {
    "time_stretch": 0.0, "drop_event": 0.0, "ema": 0.0, "label_smoothing": 0.0,
    "learn_threshold": False, "beta_range": None, "neuron": "lif", "adapt_decay": 0.97, "adapt_strength": 1.8,
    "beta_parametrization": "clamp", "beta_lr": None, "weight_decay_scope": "all",
}


# ---------------------------------------------------------------------------------------------
# checks: each returns the value, normalised, or raises naming the option
# ---------------------------------------------------------------------------------------------
def _int(minimum: int = 0, optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name}: expected an int, got {type(v).__name__} ({v!r})")
        if v < minimum:
            raise ValueError(f"{name}: expected an int >= {minimum}, got {v}")
        return int(v)
    check.kind = ("int", optional)  # type: ignore[attr-defined]
    return check


def _float(lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False, optional: bool = False,
           what: str = "a number", hi_open: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name}: expected {what}, got {type(v).__name__} ({v!r})")
        v = float(v)
        if not math.isfinite(v) or (v >= hi if hi_open else v > hi) or (v <= lo if lo_open else v < lo):
            rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            raise ValueError(f"{name}: expected {what} in {rng}, got {v:g}")
        return v
    check.kind = ("float", optional)  # type: ignore[attr-defined]
    return check


def _bool() -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, bool):
            raise TypeError(f"{name}: expected True or False, got {v!r}")
        return v
    check.kind = ("bool", False)  # type: ignore[attr-defined]
    return check


def _choice(choices: Tuple[str, ...], optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if v is None and "none" in choices:  # --set x=none reads as None: the choice "none"
            return "none"
        if not isinstance(v, str) or v not in choices:
            raise ValueError(f"{name}: expected one of {list(choices)}{' or None' if optional else ''}, got {v!r}")
        return v
    check.kind = ("choice", choices)  # type: ignore[attr-defined]
    return check


def _pair(what: str, second_nonneg: bool = False, ordered: bool = False,
          first_nonneg: bool = False) -> Callable[[str, Any], Any]:
    """An optional pair of finite numbers ``[a, b]`` (a delay range ``[low, high]``, a normal
    distribution ``[mean, std]``)."""
    def check(name: str, v: Any) -> Any:
        if v is None:
            return None
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)):
            raise TypeError(f"{name}: expected {what} (two numbers) or None, got {v!r}")
        a, b = float(v[0]), float(v[1])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"{name}: expected finite numbers, got {v!r}")
        if first_nonneg and a < 0:
            raise ValueError(f"{name}: expected {what} with a first value >= 0, got {v!r}")
        if second_nonneg and b < 0:
            raise ValueError(f"{name}: expected {what} with a second value >= 0, got {v!r}")
        if ordered and a > b:
            raise ValueError(f"{name}: expected {what} with low <= high, got {v!r}")
        return [a, b]
    check.kind = ("pair", True)  # type: ignore[attr-defined]
    return check


def _str(optional: bool = True) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise TypeError(f"{name}: expected a string, got {type(v).__name__} ({v!r})")
        return v
    check.kind = ("str", optional)  # type: ignore[attr-defined]
    return check


def _sizes() -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                                       for h in v):
            raise ValueError(f"{name}: expected a list of layer sizes (ints >= 1), got {v!r}")
        return list(v)
    check.kind = ("sizes", False)  # type: ignore[attr-defined]
    return check


def _delay_init() -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        if isinstance(v, bool) or not (isinstance(v, (int, float)) or v in ("uniform", "half_normal")):
            raise ValueError(f"{name}: expected 'uniform', 'half_normal' or a number, got {v!r}")
        if isinstance(v, (int, float)) and not math.isfinite(v):
            raise ValueError(f"{name}: expected a finite number, got {v!r}")
        return float(v) if isinstance(v, (int, float)) else v
    check.kind = ("delay_init", False)  # type: ignore[attr-defined]
    return check


def opt(default: Any, check: Callable[[str, Any], Any], help: str, flag: bool = False) -> Any:
    """A config option: its default, its check, its help text, and whether the command line has
    a flag of its own for it (``flag``; every option is reachable with ``--set``)."""
    meta = {"check": check, "help": help, "flag": flag}
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata=meta)
    return field(default=default, metadata=meta)


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """The data set and how it is read."""

    dataset: str = opt("sequence", _choice(DATASETS), "data set", flag=True)
    data_dir: Optional[str] = opt(None, _str(), "folder with the data set's files (not needed for sequence, yinyang)",
                                  flag=True)
    dt: Optional[float] = opt(None, _float(0.0, lo_open=True, optional=True),
                              "bin width in seconds (SHD, SSC, Braille)")
    n_steps: Optional[int] = opt(None, _int(1, optional=True), "fixed number of time steps (SHD/SSC; Yin-Yang, "
                                 "sequence: the sequence length)")
    pool: int = opt(1, _int(1), "SHD/SSC channel pooling (5: 700 -> 140)")
    duration: Optional[float] = opt(None, _float(0.0, lo_open=True, optional=True),
                                    "SHD/SSC: seconds of each recording kept (None: 1 s; DelRec's SHD and SSC: 1.4)")
    val_fraction: Optional[float] = opt(None, _float(0.0, 1.0, lo_open=True, hi_open=True, optional=True,
                                                     what="a fraction"),
                                        "SHD, PS-MNIST: fraction of the training file held out for validation "
                                        "(None: 0.1 for SHD, 5000 images for PS-MNIST; DelRec: 0.2 and 0.17)")
    train_limit: Optional[int] = opt(None, _int(1, optional=True), "use only this many training samples", flag=True)
    eval_limit: Optional[int] = opt(None, _int(1, optional=True), "... and validation/test samples", flag=True)
    gap: int = opt(10, _int(1), "sequence detection: steps between the two input spikes")


@dataclass
class AugmentConfig:
    """Training-time augmentation (validation and test samples are never changed)."""

    time_shift: int = opt(0, _int(0), "shift each training sample by a random whole number of steps in [-n, n]")
    blend: float = opt(0.0, _float(0.0, 1.0, what="a probability"),
                       "probability of blending a training sample with another of its class (DelRec's and "
                       "EventProp's SHD configurations)")
    channel_shift: int = opt(0, _int(0), "shift each training sample's input channels by a random whole number in "
                             "[-n, n], channels shifted out lost (EventProp's SHD and SSC: 40)")
    repeat: int = opt(1, _int(1), "an epoch passes this many times over the training samples, each pass "
                      "augmented afresh (DelRec's SHD: 3, its tripled training set)")


@dataclass
class ModelConfig:
    """What every model has: which one, its layers and its delays."""

    name: str = opt("ff-delays", _str(optional=False), "model preset (snn-delays presets lists them)", flag=True)
    hidden: List[int] = opt([32], _sizes(), "hidden layer sizes, e.g. [256, 256] (flag: 256,256 or 2x256)",
                            flag=True)
    max_delay: int = opt(12, _int(1), "largest delay in steps", flag=True)
    delay_type: str = opt("synaptic", _choice(("synaptic", "axonal", "dendritic")),
                          "delays per connection, per presynaptic or per postsynaptic neuron", flag=True)
    delay_init: Union[str, float] = opt("uniform", _delay_init(), "'uniform', 'half_normal' or a number of steps")
    delay_range: Optional[List[float]] = opt(None, _pair("a delay range [low, high] in steps", ordered=True,
                                                         first_nonneg=True),
                                             "delay_init 'uniform': [low, high] in steps, clamped to the layer's "
                                             "range (None: the whole range; DelRec's SHD: [11, 31])")
    output_delays: bool = opt(True, _bool(), "learnable delays also on the readout connections")
    readout: str = opt("li_mean", _choice(READOUTS), "logits from the readout (see READOUTS)")


@dataclass
class SurrogateModelConfig:
    """The surrogate-gradient models (``ff-*``, ``delrec``, ``rec-nodelay``): neurons and delays."""

    beta: float = opt(0.9, _float(0.0, 1.0), "membrane decay of the hidden LIF neurons")
    beta_out: float = opt(0.9, _float(0.0, 1.0), "decay of the leaky-integrator readout")
    learn_beta: bool = opt(False, _bool(), "feed-forward models: learn one membrane decay per hidden neuron")
    surrogate: str = opt("atan", _choice(SURROGATE_NAMES), "surrogate spike function")
    surrogate_param: Optional[float] = opt(None, _float(0.0, lo_open=True, optional=True),
                                           "its parameter: atan alpha, fast_sigmoid slope, triangle gamma, "
                                           "triangular threshold (None: its default)")
    reset_mechanism: str = opt("subtract", _choice(("subtract", "zero", "none")), "the LIF neurons' reset")
    reset_delay: bool = opt(True, _bool(), "reset one step after the spike (snnTorch's default) or in its step "
                            "(zero without delay: NIR's LIF)")
    detach_reset: bool = opt(True, _bool(), "zero reset in the spike's step: no gradient through the reset")
    reset_convention: str = opt("snntorch", _choice(("snntorch", "spikingjelly")),
                                "recurrent models, reset in the spike's step: snnTorch's (a membrane still above "
                                "threshold after a subtraction is reset again) or spikingjelly's (one reset per "
                                "spike; DelRec's)")
    dropout: float = opt(0.0, _float(0.0, 1.0, what="a probability", hi_open=True),
                         "hidden-spike dropout (training only)")
    batch_norm: bool = opt(False, _bool(), "batch-normalise each hidden layer's input current over time and batch")
    interpolation: str = opt("triangle", _choice(("triangle", "round")),
                             "delays read through the triangle, or rounded forward with its slope backward")
    delay_std: Optional[float] = opt(None, _float(0.0, lo_open=True, optional=True),
                                     "delay_init 'half_normal': standard deviation in steps (None: max_delay / 2)")
    dropout_placement: str = opt("spikes", _choice(("spikes", "current")),
                                 "dropout on each hidden layer's output spikes, or on its input current before the "
                                 "neurons (DelRec's SSC and PS-MNIST)")
    dropout_mask: str = opt("step", _choice(("step", "sequence")),
                            "a new dropout mask every time step, or one per sample and neuron for the whole "
                            "sequence (DelRec's)")
    linear_init: str = opt("default", _choice(("default", "kaiming")),
                           "feed-forward weights: torch's default, or kaiming_uniform_ for ReLU (DelRec's SHD)")
    recurrent_dropout: float = opt(0.0, _float(0.0, 1.0, what="a probability", hi_open=True),
                                   "recurrent models: drop each neuron's delayed recurrent input for a whole "
                                   "sequence with this probability (training only; DelRec's)")
    learn_width: bool = opt(False, _bool(), "recurrent models: learn each presynaptic neuron's triangle width "
                            "s = 1 + 2 sigma sigmoid(p) (DelRec's p_spread; learning rate of the delays)")
    recurrent_init: str = opt("default", _choice(("default", "orthogonal")),
                              "recurrent weights: snnTorch's default, or orthogonal (DelRec's)")
    first_layer_recurrent: bool = opt(True, _bool(), "recurrent models: False makes the first hidden layer plain "
                                      "LIF neurons without recurrence (DelRec's SHD)")


@dataclass
class EventPropModelConfig:
    """The EventProp models (``eventprop-ff``, ``eventprop-rec``): time constants in steps,
    initial weights and the spike-count regulariser."""

    tau_syn: float = opt(5.0, _float(0.0, lo_open=True), "synaptic time constant (steps)")
    tau_mem: float = opt(20.0, _float(0.0, lo_open=True), "membrane time constant (steps)")
    tau_out: Optional[float] = opt(None, _float(0.0, lo_open=True, optional=True),
                                   "readout membrane time constant (steps; None: tau_mem)")
    weight_mean: Optional[float] = opt(None, _float(optional=True), "initial weights ~ N(mean, std) / sqrt(fan_in)")
    weight_std: Optional[float] = opt(None, _float(0.0, optional=True), "(with weight_mean)")
    reg_strength: float = opt(0.0, _float(0.0), "spike-count regulariser strength k_reg (0: off)")
    reg_target: float = opt(0.0, _float(0.0), "its target spikes per hidden neuron and sample (the paper's nu)")
    init_input: Optional[List[float]] = opt(None, _pair("[mean, std]", second_nonneg=True),
                                            "first hidden layer's input weights ~ N(mean, std), not scaled by the "
                                            "fan-in (mlGeNN's units; None: weight_mean / weight_std)")
    init_hidden: Optional[List[float]] = opt(None, _pair("[mean, std]", second_nonneg=True),
                                             "... the weights between hidden layers")
    init_recurrent: Optional[List[float]] = opt(None, _pair("[mean, std]", second_nonneg=True),
                                                "... the recurrent weights (eventprop-rec)")
    init_output: Optional[List[float]] = opt(None, _pair("[mean, std]", second_nonneg=True),
                                             "... the readout's input weights")
    rec_delay_init: Union[str, float] = opt("uniform", _delay_init(), "eventprop-rec: initial recurrent delays, "
                                            "'uniform', 'half_normal' or a number of steps (lags start at 1)")


@dataclass
class OptimConfig:
    """Optimisation, the delays' width schedule and model selection."""

    epochs: int = opt(20, _int(1), "epochs", flag=True)
    batch_size: int = opt(64, _int(1), "global batch (split over processes)", flag=True)
    lr: float = opt(1e-2, _float(0.0), "learning rate of the weights", flag=True)
    delay_lr: float = opt(1e-1, _float(0.0), "learning rate of the delays", flag=True)
    weight_decay: float = opt(0.0, _float(0.0), "weight decay of the non-delay parameters")
    optimizer: str = opt("adam", _choice(OPTIMIZERS), "adam (L2 term) or adamw (decoupled weight decay)")
    lr_schedule: str = opt("cosine", _choice(LR_SCHEDULES), "learning-rate schedule per epoch (see LR_SCHEDULES)")
    delay_lr_schedule: str = opt("same", _choice(LR_SCHEDULES + ("same",)),
                                 "the delays' (and learnable widths') schedule ('same': lr_schedule; DelRec's SHD: "
                                 "cosine)")
    sigma0: float = opt(0.0, _float(0.0), "initial extra half-width of the delay triangle (0: none)", flag=True)
    sigma_decay: float = opt(0.95, _float(0.0, 1.0, lo_open=True),
                             "base of DelRec's width schedule sigma0 * x**(100 epoch / epochs)")
    selection: str = opt("val", _choice(SELECTIONS), "model tested: best on validation (val) or the final epoch")
    patience: Optional[int] = opt(None, _int(1, optional=True),
                                  "stop after this many epochs without a better validation accuracy (None: never; "
                                  "EventProp's: 15)")
    round_delays: bool = opt(False, _bool(), "round the delays to whole steps in place after each epoch's training, "
                             "before validation, and train on from there (DelRec's)")
    train_on_val: bool = opt(False, _bool(), "train on training + validation samples (needs selection 'last')")


@dataclass
class RunConfig:
    """Where and how the run happens."""

    seed: int = opt(0, _int(0), "random seed", flag=True)
    device: str = opt("auto", _str(optional=False), "'auto', 'cpu', 'cuda' or 'cuda:N'", flag=True)
    num_workers: int = opt(0, _int(0), "DataLoader worker processes")
    out: Optional[str] = opt(None, _str(), "run folder (default runs/<dataset>-<model>-<time>)")
    progress: bool = opt(True, _bool(), "tqdm progress bars", flag=True)
    tensorboard: bool = opt(True, _bool(), "also log to TensorBoard when it is installed")
    flush_denormal: bool = opt(True, _bool(), "CPU: flush denormal floats to zero while training (speed)")


#: section name -> its dataclass, in order
SECTIONS: Dict[str, type] = {"data": DataConfig, "augment": AugmentConfig, "model": ModelConfig,
                             "surrogate": SurrogateModelConfig, "eventprop": EventPropModelConfig, "optim": OptimConfig,
                             "run": RunConfig}
#: short names that differ from the field's
_ALIASES = {"model": ("model", "name")}


def options() -> Iterator[Tuple[str, str, "dataclasses.Field"]]:
    """Every option: ``(section, short name, field)``."""
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            short = "model" if (section, f.name) == ("model", "name") else f.name
            yield section, short, f


def resolve_option(key: str) -> Tuple[str, str]:
    """``(section, field)`` of ``"section.name"`` or a short name."""
    if "." in key:
        section, name = key.split(".", 1)
        if section in SECTIONS and name in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            return section, name
        raise ValueError(f"config: unknown option {key!r}; valid are section.name with the sections "
                         f"{list(SECTIONS)} (snn-delays train --print-config shows them all)")
    if key in _ALIASES:
        return _ALIASES[key]
    for section, short, f in options():
        if short == key:
            return section, f.name
    if key in REMOVED:
        raise ValueError(f"config: {key!r} was removed (it measured no gain and no published configuration "
                         "uses it; see the changelog)")
    raise ValueError(f"config: unknown option {key!r}; valid short names are {sorted(s for _, s, _ in options())}")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved as ``config.json`` in the run folder.

    Examples
    --------
    >>> cfg = TrainConfig.from_dict({"epochs": 3, "model": {"max_delay": 5}})
    >>> cfg.validate().optim.epochs, cfg.model.max_delay
    (3, 5)
    >>> try:
    ...     TrainConfig.from_dict({"optim.epochs": 0}).validate()
    ... except ValueError as e:
    ...     print(e)
    optim.epochs: expected an int >= 1, got 0
    """

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    surrogate: SurrogateModelConfig = field(default_factory=SurrogateModelConfig)
    eventprop: EventPropModelConfig = field(default_factory=EventPropModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> "TrainConfig":
        """Check every option (each field's own check) and the rules between options; raise
        ``ValueError``/``TypeError`` naming the option as ``section.name``."""
        for section, _short, f in options():
            sec = getattr(self, section)
            setattr(sec, f.name, f.metadata["check"](f"{section}.{f.name}", getattr(sec, f.name)))
        e = self.eventprop
        if (e.weight_mean is None) != (e.weight_std is None):
            raise ValueError(f"eventprop.weight_mean, eventprop.weight_std: give both or neither, got "
                             f"{e.weight_mean!r} and {e.weight_std!r}")
        if self.optim.train_on_val and self.optim.selection != "last":
            raise ValueError("optim.train_on_val: the validation samples are then training samples and cannot "
                             f"select the model; expected optim.selection='last', got {self.optim.selection!r}")
        if self.optim.patience is not None and self.optim.selection != "val":
            raise ValueError("optim.patience: stopping early needs the validation accuracy; expected "
                             f"optim.selection='val', got {self.optim.selection!r}")
        if self.surrogate.reset_convention == "spikingjelly" and self.surrogate.reset_delay:
            raise ValueError("surrogate.reset_convention: 'spikingjelly' resets in the spike's own step; expected "
                             "surrogate.reset_delay=False, got True")
        m, d = self.model, self.data
        if m.delay_range is not None and m.delay_init != "uniform":
            raise ValueError("model.delay_range: a range is for delay_init 'uniform'; expected model.delay_init="
                             f"'uniform', got {m.delay_init!r}")
        if d.val_fraction is not None and d.dataset not in ("shd", "psmnist"):
            raise ValueError("data.val_fraction: only SHD and PS-MNIST hold validation samples out of their "
                             f"training file (the others have fixed splits); got dataset {d.dataset!r}")
        if d.duration is not None and d.dataset not in ("shd", "ssc"):
            raise ValueError(f"data.duration: applies to SHD and SSC; got dataset {d.dataset!r}")
        from .models import available_models

        if self.model.name not in available_models():
            raise ValueError(f"model.name: expected one of {sorted(available_models())}, got {self.model.name!r}")
        return self

    def get(self, key: str) -> Any:
        """The value of an option (``"optim.lr"`` or ``"lr"``)."""
        section, name = resolve_option(key)
        return getattr(getattr(self, section), name)

    def set(self, key: str, value: Any) -> "TrainConfig":
        """Set an option (``"optim.lr"`` or ``"lr"``); returns ``self`` (not validated)."""
        section, name = resolve_option(key)
        setattr(getattr(self, section), name, value)
        return self

    def to_dict(self) -> Dict[str, Any]:
        """The nested dict (``{"data": {...}, "model": {...}, ...}``) that :meth:`from_dict` reads."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        """A config from a dict of sections (``{"optim": {"lr": 1e-3}}``), dotted keys
        (``{"optim.lr": 1e-3}``) or short names (``{"lr": 1e-3}``, as in run folders written before
        the sections existed); unset options keep their defaults. Not validated."""
        if not isinstance(d, dict):
            raise TypeError(f"config: expected a mapping of settings, got {type(d).__name__}")
        cfg = cls()
        for key, value in d.items():
            if key in SECTIONS and isinstance(value, dict):
                for name, v in value.items():
                    cfg.set(f"{key}.{name}", v)
            elif key in REMOVED and value == REMOVED[key]:
                continue  # an old run folder's default of a removed option
            else:
                cfg.set(key, value)
        return cfg


# ---------------------------------------------------------------------------------------------
# presets and files
# ---------------------------------------------------------------------------------------------
_PRESET_DIR = Path(__file__).resolve().parent / "presets"


def _read_toml(text: str, where: str) -> Dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ModuleNotFoundError:  # pragma: no cover - Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as e:
            raise ValueError("config: reading TOML needs Python >= 3.11 or `pip install tomli`") from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config: '{where}' is not valid TOML: {e}") from e


def _load_presets() -> Dict[str, Dict[str, Any]]:
    out = {}
    for path in sorted(_PRESET_DIR.glob("*.toml")):
        data = _read_toml(path.read_text(), str(path))
        data.pop("description", None)
        out[path.stem] = data
    return out


#: The paper configurations and the embedded default, one TOML file each in
#: ``snn_delays_ext/train/presets`` (``snn-delays train --preset NAME``): nested dicts of the
#: options each sets; the rest keep their defaults.
PRESETS: Dict[str, Dict[str, Any]] = _load_presets()


def preset_description(name: str) -> str:
    """The ``description`` line of a preset file."""
    data = _read_toml((_PRESET_DIR / f"{name}.toml").read_text(), name)
    return str(data.get("description", ""))


def load_config_file(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a config file: ``.toml`` (sections as tables), ``.json`` or ``.yaml``/``.yml`` (needs
    PyYAML). A top-level ``preset = "NAME"`` starts from that preset."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config: file '{p}' not found")
    suffix = p.suffix.lower()
    if suffix == ".json":
        data = json.loads(p.read_text())
    elif suffix == ".toml":
        data = _read_toml(p.read_text(), str(p))
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
    if "train" in data and isinstance(data["train"], dict):  # the former layout: one [train] table
        data = data["train"]
    return data


def make_config(preset: Optional[str] = None, config_file: Optional[Union[str, Path]] = None,
                overrides: Optional[Dict[str, Any]] = None, keep_none: bool = False) -> TrainConfig:
    """Build a validated config: defaults < ``preset`` < ``config_file`` < ``overrides``.

    ``overrides`` maps option names (``"lr"``, ``"optim.lr"``) or sections to values; ``None``
    values are ignored unless ``keep_none`` (then they set the option to ``None``, as
    ``--set NAME=none`` does). A config file may name its own ``preset``.

    Examples
    --------
    >>> make_config("yinyang", overrides={"epochs": 2}).model.hidden
    [30]
    """
    file_values = load_config_file(config_file) if config_file is not None else {}
    file_preset = file_values.pop("preset", None)
    preset = preset if preset is not None else file_preset
    cfg = TrainConfig()
    layers: List[Dict[str, Any]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        layers.append(PRESETS[preset])
    layers.append(file_values)
    layers.append({k: v for k, v in (overrides or {}).items() if keep_none or v is not None})
    for layer in layers:
        for key, value in layer.items():
            if key in SECTIONS and isinstance(value, dict):
                for name, v in value.items():
                    cfg.set(f"{key}.{name}", v)
            else:
                cfg.set(key, value)
    return cfg.validate()
