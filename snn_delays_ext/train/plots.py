"""Plots of a finished (or running) training run: learning curves, delay histograms, raster."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Dict, List, Union

import torch

__all__ = ["plot_run"]


def _read_metrics(path: Path) -> Dict[str, List[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) for r in rows] for k in rows[0]}


def plot_run(run_dir: Union[str, Path]) -> List[Path]:
    """Write PNG plots of the run in ``run_dir`` and return their paths.

    - ``learning_curves.png``: training loss, training and validation accuracy per epoch
      (from ``metrics.csv``),
    - ``delays_<layer>.png``: histogram of the learned delays of each delay layer, at the start
      (``delays_init.pt``) and at the end (``delays_final.pt``, or the latest checkpoint),
    - ``raster.png``: input and hidden spikes of one test sample (``raster.pt``).

    Uses matplotlib's non-interactive Agg backend; plots whose inputs are missing are skipped.
    """
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("snn-delays plot needs matplotlib: pip install matplotlib (or the extra: "
                          "pip install 'snn-delays-ext[train]')") from e

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run_dir: '{run}' is not a folder (expected a run folder written by `snn-delays train`)")
    written: List[Path] = []

    metrics = run / "metrics.csv"
    if metrics.is_file():
        m = _read_metrics(metrics)
        if m:
            validated = any(math.isfinite(v) for v in m["val_acc"])  # not with --train-on-val
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
            a1.plot(m["epoch"], m["train_loss"], label="train")
            if validated:
                a1.plot(m["epoch"], m["val_loss"], label="validation")
            a1.set_xlabel("epoch"); a1.set_ylabel("cross-entropy"); a1.legend(); a1.set_title("loss")
            a2.plot(m["epoch"], [100 * v for v in m["train_acc"]], label="train")
            if validated:
                a2.plot(m["epoch"], [100 * v for v in m["val_acc"]], label="validation")
            a2.set_xlabel("epoch"); a2.set_ylabel("accuracy (%)"); a2.legend(); a2.set_title("accuracy")
            fig.tight_layout()
            p = run / "learning_curves.png"
            fig.savefig(p, dpi=100)
            plt.close(fig)
            written.append(p)

    init = torch.load(run / "delays_init.pt") if (run / "delays_init.pt").is_file() else {}
    final: Dict[str, torch.Tensor] = {}
    if (run / "delays_final.pt").is_file():
        final = torch.load(run / "delays_final.pt")
    elif (run / "checkpoint.pt").is_file():
        state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
        final = {k[: -len(".delays")]: v for k, v in state.items() if k.endswith(".delays")}
    for name in sorted(set(init) | set(final)):
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, src in (("before training", init), ("after training", final)):
            if name in src:
                ax.hist(src[name].flatten().float().numpy(), bins=40, alpha=0.6, label=label)
        ax.set_xlabel("delay (time steps)"); ax.set_ylabel("count"); ax.set_title(f"delays of layer '{name}'")
        ax.legend()
        fig.tight_layout()
        p = run / f"delays_{name.replace('.', '_') or 'net'}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)

    if (run / "raster.pt").is_file():
        r = torch.load(run / "raster.pt")
        panels = [("input", r["input"])] + [(f"hidden {i + 1}", h) for i, h in enumerate(r["hidden"])]
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels)), squeeze=False)
        for ax, (title, s) in zip(axes[:, 0], panels):
            t, n = torch.nonzero(s > 0, as_tuple=True)
            ax.scatter(t.numpy(), n.numpy(), s=12, c="k", marker="|")
            ax.set_ylabel("neuron"); ax.set_title(title); ax.set_xlim(-0.5, s.shape[0] - 0.5)
        axes[-1, 0].set_xlabel("time step")
        fig.suptitle(f"one test sample (label {r['label']}, predicted {r['prediction']})")
        fig.tight_layout()
        p = run / "raster.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    return written
