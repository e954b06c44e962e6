"""Training engine and command line (``snn-delays train``, ``plot``, ``export``).

Examples
--------
>>> from snn_delays_ext.train import make_config
>>> cfg = make_config("default", overrides={"epochs": 1})
>>> cfg.data.dataset, cfg.model.name
('sequence', 'ff-delays')
"""

from .config import PRESETS, TrainConfig, load_config_file, make_config
from .engine import evaluate, make_datasets, train
from .export import export_run, load_run_model
from .models import (FeedForwardSNN, RecurrentSNN, TimeBatchNorm, available_models, build_model, readout_logits,
                     register_model)
from .plots import plot_run

__all__ = [
    "FeedForwardSNN",
    "PRESETS",
    "RecurrentSNN",
    "TimeBatchNorm",
    "TrainConfig",
    "available_models",
    "build_model",
    "evaluate",
    "export_run",
    "load_config_file",
    "load_run_model",
    "make_config",
    "make_datasets",
    "plot_run",
    "readout_logits",
    "register_model",
    "train",
]
