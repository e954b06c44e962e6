"""Rebuild a trained run's model and export it to NIR (``snn-delays export RUN_DIR``)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import snntorch as snn
import torch
from torch import nn

from .._checks import check_int, check_positive_float
from ..utils import quantize_delays
from .config import TrainConfig
from .models import build_model

__all__ = ["load_run_model", "export_run"]

#: NIR's time unit is the second; runs whose dataset has no bin width get this step.
DEFAULT_DT = 1e-3


#: How a run's ``readout`` turns the graph's output ``v`` (T steps) into class scores:
#: ``graph.metadata["output_reduction"]``
_REDUCTIONS = {
    "sum": "sum",                    # sum_t v_t (v: the readout current)
    "li_mean": "mean",               # (1/T) sum_t v_t
    "li_max": "max",                 # max_t v_t
    "li_shaped": "shaped_mean",      # (1/T) sum_t exp(-t/T) v_t, t = 0 .. T-1
    "li_softmax_sum": "softmax_sum",  # sum_t softmax(v_t) over the classes (DelRec's SHD)
}


def _sizes_from_state(state: Dict[str, torch.Tensor]) -> Tuple[int, int]:
    """Input and class counts of a model saved before they were recorded: the first and the
    last weight matrix in registration order (input layer, readout)."""
    mats = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if not mats:
        raise ValueError("run_dir: model_best.pt holds no weight matrix to read the input and class counts from")
    return int(mats[0].shape[1]), int(mats[-1].shape[0])


def load_run_model(run_dir: Union[str, os.PathLike]) -> Tuple[nn.Module, TrainConfig, Dict[str, Any]]:
    """The selected model of a finished training run, rebuilt on the CPU in eval mode.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder written by ``snn-delays train`` (it holds ``model_best.pt``).

    Returns
    -------
    model, config, info
        The model with the saved weights and delays (as trained, not rounded), its
        :class:`~snn_delays_ext.train.TrainConfig` and ``{"n_inputs", "n_classes"}``.

    Examples
    --------
    >>> from snn_delays_ext.train import load_run_model
    >>> load_run_model("no/such/run")
    Traceback (most recent call last):
    ...
    FileNotFoundError: run_dir: 'no/such/run' has no model_best.pt (not a finished run folder)
    """
    path = Path(run_dir) / "model_best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"run_dir: '{run_dir}' has no model_best.pt (not a finished run folder)")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    state = saved["model"]
    cfg_dict = saved.get("config")
    if cfg_dict is None:  # pragma: no cover - every engine version saved it
        cfg_dict = json.loads((Path(run_dir) / "config.json").read_text())
    cfg = TrainConfig.from_dict(cfg_dict).set("run.device", "cpu").validate()
    if "n_inputs" in saved:
        n_in, n_classes = int(saved["n_inputs"]), int(saved["n_classes"])
    else:
        n_in, n_classes = _sizes_from_state(state)
    model = build_model(cfg.model.name, n_in, n_classes, cfg)
    model.load_state_dict(state)
    return model.eval(), cfg, {"n_inputs": n_in, "n_classes": n_classes}


def export_run(run_dir: Union[str, os.PathLike], out: Optional[Union[str, os.PathLike]] = None,
               dt: Optional[float] = None, max_hardware_delay: Optional[int] = None) -> Tuple[Path, Any]:
    """Export a trained run's selected model to an NIR file, delays rounded to whole steps.

    The model of ``RUN_DIR/model_best.pt`` (the one the run tested) gets its delays rounded
    (:func:`~snn_delays_ext.quantize_delays`: the network whose "rounded" test accuracy the
    run reported) and is written with :func:`~snn_delays_ext.export_to_nir`. The graph ends
    at the readout voltage: the surrogate models' leaky integrator (decay ``beta_out`` per
    step) is appended as an ``nir.LI`` node ``"readout"`` (for the ``li_*`` readouts; with
    ``"sum"`` the graph ends at the readout current), the EventProp models end with their
    ``nir.CubaLI`` readout. How the run turned that output ``v_t`` into class scores is
    recorded in ``graph.metadata``: ``output_reduction`` (``"mean"``: ``(1/T) sum_t v_t``;
    ``"max"``; ``"sum"``; ``"shaped_mean"``: ``(1/T) sum_t exp(-t/T) v_t``, ``t = 0 .. T-1``;
    ``"softmax_sum"``: ``sum_t softmax(v_t)`` over the classes), and ``readout`` (the run's
    readout name), ``beta_out``, ``n_classes``, ``dataset``, ``model``.

    NIR's LIF neurons reset to 0 in the step of the spike. A network trained with another reset
    (snnTorch's default subtracts the threshold one step later) is written with NIR's reset and
    its own in the node metadata: :func:`~snn_delays_ext.import_from_nir` rebuilds it exactly,
    other NIR tools run a different network. Such an export warns and records
    ``metadata["nir_semantics_exact"] = 0``; train with ``reset_mechanism="zero",
    reset_delay=False`` (``--set surrogate.reset_mechanism=zero --set surrogate.reset_delay=false``)
    for an exact graph. The
    EventProp models reset as NIR does.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A finished run folder.
    out : str or os.PathLike, optional
        The file to write (default ``RUN_DIR/model.nir``).
    dt : float, optional
        Seconds per time step; default: the run's bin width ``dt``, or 1 ms where the dataset
        has none (sequence detection, Yin-Yang, PS-MNIST count abstract steps).
    max_hardware_delay : int, optional
        Refuse delays above this many steps (``ValueError``).

    Returns
    -------
    path, graph
        The written file and the ``nir.NIRGraph``.
    """
    import nir

    from ..nir import append_readout, export_to_nir

    model, cfg, info = load_run_model(run_dir)
    if dt is None:
        dt = float(cfg.data.dt) if cfg.data.dt is not None else DEFAULT_DT
    else:
        dt = check_positive_float("dt", dt)
    if max_hardware_delay is not None:
        max_hardware_delay = check_int("max_hardware_delay", max_hardware_delay, minimum=0)
    quantize_delays(model)
    inexact = sorted({f"reset_mechanism={m.reset_mechanism!r}, reset_delay={bool(getattr(m, 'reset_delay', True))}"
                      for m in model.modules() if isinstance(m, snn.SpikingNeuron)
                      and (m.reset_mechanism != "zero" or bool(getattr(m, "reset_delay", True)))})
    if inexact:
        warnings.warn(
            f"export: the run's LIF neurons reset with {'; '.join(inexact)}, but NIR's LIF resets to 0 in "
            "the step of the spike: other NIR tools and chips run a different network (import_from_nir "
            "rebuilds the trained one from the metadata). Train with --set surrogate.reset_mechanism=zero "
            "--set surrogate.reset_delay=false for a graph that every NIR tool runs exactly.", stacklevel=2)
    # zeros: binary for the EventProp layers, and runs every layer once to find the chain
    graph = export_to_nir(model, torch.zeros(1, 1, info["n_inputs"]), dt=float(dt),
                          max_hardware_delay=max_hardware_delay)
    readout = str(getattr(model, "readout", None) or "sum")
    beta_out = getattr(model, "beta_out", None)
    if beta_out is not None and readout != "sum":
        append_readout(graph, float(beta_out), int(info["n_classes"]), float(dt))
    graph.metadata.update({
        "readout": readout, "output_reduction": _REDUCTIONS[readout],
        "n_classes": info["n_classes"], "dataset": cfg.data.dataset, "model": cfg.model.name,
        "nir_semantics_exact": int(not inexact),
    })
    if beta_out is not None:
        graph.metadata["beta_out"] = float(beta_out)
    path = Path(out) if out is not None else Path(run_dir) / "model.nir"
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(path), graph)
    return path, graph
