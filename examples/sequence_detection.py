"""
Learning delays: telling two spike orders apart
===============================================

Two input channels each fire one spike. In class 0 channel 0 fires first and channel 1
``gap`` steps later; in class 1 the order is reversed. Onset ``t0`` is random. Two output
neurons are memoryless coincidence detectors (``beta = 0``): the class score is the largest
input current an output receives at any step.

With equal delays the two classes are mirror images in time, so *every* output sees the same
largest current for both classes, whatever the weights: a network without (learnable) delays
is stuck at exactly 50 %. Learning delays fixes it: output 0 delays channel 0 by ``gap`` steps
more than channel 1, so the two spikes of class 0 arrive together (and those of class 1 arrive
``2 gap`` apart); output 1 does the opposite.

The delays start at the worst case (all equal, 0 steps; the slope at a whole step is that
of the linear segment above it, so they move), the interpolation triangle starts wide
(``sigma0``) so a delay feels spikes far away, and shrinks each epoch (DelRec's schedule).
Run it with ``python examples/sequence_detection.py`` (about 10 s on a laptop CPU).
"""

from __future__ import annotations

import argparse
from typing import Tuple

import torch
import torch.nn.functional as F

import snn_delays_ext as sde

T_STEPS = 64
GAP = 8
MAX_DELAY = 20
WORST_CASE_DELAY = 0.0  # every delay equal: both classes look alike


def make_batch(batch: int, generator: torch.Generator, gap: int = GAP) -> Tuple[torch.Tensor, torch.Tensor]:
    """Spike trains ``(T, B, 2)`` and labels ``(B,)`` of the two-order task."""
    labels = torch.randint(0, 2, (batch,), generator=generator)
    t0 = torch.randint(0, 12, (batch,), generator=generator)
    x = torch.zeros(T_STEPS, batch, 2)
    b = torch.arange(batch)
    first = labels  # class 0: channel 0 first; class 1: channel 1 first
    x[t0, b, first] = 1.0
    x[t0 + gap, b, 1 - first] = 1.0
    return x, labels


def scores(layer: sde.DelayedLinear, x: torch.Tensor) -> torch.Tensor:
    """Class scores: the largest current each (memoryless) output neuron receives."""
    return layer(x).amax(dim=0)


def accuracy(layer: sde.DelayedLinear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((scores(layer, x).argmax(-1) == y).float().mean())


def train(
    epochs: int = 40,
    learn_delays: bool = True,
    seed: int = 0,
    sigma0: float = 10.0,
    verbose: bool = True,
) -> Tuple[sde.DelayedLinear, float, float]:
    """Train the delayed readout; returns the layer and test accuracy before and after."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    layer = sde.DelayedLinear(2, 2, max_delay=MAX_DELAY, delay_type="synaptic", bias=False,
                              delay_init=WORST_CASE_DELAY, learn_delays=learn_delays)
    with torch.no_grad():  # excitatory coincidence detectors
        layer.weight.uniform_(0.2, 1.0)
    x_test, y_test = make_batch(512, gen)
    before = accuracy(layer, x_test, y_test)
    groups = [{"params": layer.weight_parameters(), "lr": 0.05}]
    if learn_delays:
        groups.append({"params": layer.delay_parameters(), "lr": 1.0})
    opt = torch.optim.Adam(groups)
    schedule = sde.SigmaScheduler(layer, epochs=epochs, sigma0=sigma0)
    for epoch in range(epochs):
        for _ in range(4):
            x, y = make_batch(64, gen)
            loss = F.cross_entropy(scores(layer, x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            layer.clamp_delays_()
        schedule.step()
        if verbose and (epoch % 10 == 9 or epoch == epochs - 1):
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  sigma {layer.sigma:.2f}  "
                  f"test acc {accuracy(layer, x_test, y_test):.3f}")
    layer.quantize_delays()
    after = accuracy(layer, x_test, y_test)
    return layer, before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frozen", action="store_true", help="freeze the delays (control)")
    args = parser.parse_args()
    layer, before, after = train(args.epochs, learn_delays=not args.frozen, seed=args.seed)
    print(f"accuracy before training: {before:.3f}")
    print(f"accuracy after training (delays rounded to whole steps): {after:.3f}")
    d = layer.effective_delays()
    print("learned delays (steps), rows = output neuron, columns = input channel:")
    print(d)
    print(f"delay differences: output 0: {float(d[0, 0] - d[0, 1]):+.0f} (ideal {GAP:+d}), "
          f"output 1: {float(d[1, 1] - d[1, 0]):+.0f} (ideal {GAP:+d})")


if __name__ == "__main__":
    main()
