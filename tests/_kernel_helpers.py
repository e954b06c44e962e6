"""Shared helpers of the kernel tests: float64 surrogates written from snnTorch's formulas and
thin calls of the reference path."""

from __future__ import annotations

import math

import snntorch.surrogate as sg
import torch

from snn_delays_ext.functional import recurrent_leaky as R
from snn_delays_ext.functional.delayed_linear import delayed_linear
from snn_delays_ext.surrogate import triangle


def ref_delayed_linear(*args, **kwargs):
    """The plain-PyTorch delayed linear map (the oracle): ``(y, new_past)``."""
    return delayed_linear(*args, backend="reference", **kwargs)


def compiled_delayed_linear(x, weight, bias, delays, max_delay, delay_type="synaptic", sigma=0.0,
                            interpolation="triangle"):
    """The compiled delayed linear map from silence (``backend="compiled"``): ``y``."""
    return delayed_linear(x, weight, bias, delays, max_delay, delay_type, sigma, interpolation,
                          backend="compiled")[0]


def _make(deriv):
    class _Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u > 0).to(u.dtype)

        @staticmethod
        def backward(ctx, g):
            (u,) = ctx.saved_tensors
            return g * deriv(u)

    return _Spike.apply


# The derivatives snnTorch's surrogate backward passes compute (snntorch/surrogate.py), and this
# project's triangle, written
# independently here in the input's dtype (snnTorch's own functions return float32 spikes, which
# rounds float64 gradients to float32 precision).
SURROGATES = {
    "atan": (0, 2.0, lambda a: _make(lambda u: a / 2 / (1 + (math.pi / 2 * a * u) ** 2))),
    "fast_sigmoid": (1, 25.0, lambda k: _make(lambda u: 1 / (k * u.abs() + 1) ** 2)),
    "sigmoid": (2, 5.0, lambda k: _make(lambda u: k * torch.exp(-k * u) / (torch.exp(-k * u) + 1) ** 2)),
    "triangular": (3, 1.0, lambda c: _make(lambda u: torch.where(u >= 0, -c * torch.ones_like(u), c * torch.ones_like(u)))),
    "straight_through_estimator": (4, 0.0, lambda _: _make(lambda u: torch.ones_like(u))),
    "heaviside": (5, 0.0, lambda _: _make(lambda u: (u > 0).to(u.dtype))),
    # snn_delays_ext.surrogate.triangle(gamma): max(0, gamma - |u|) / gamma^2 (a narrow gamma so
    # that the parity cases have membranes both inside and outside the triangle)
    "triangle": (6, 0.7, lambda g: _make(lambda u: (g - u.abs()).clamp_min(0) / g ** 2)),
}


# snnTorch's own surrogate factories (the float32 oracle of the neuron-sequence tests), with
# parameters that put membranes on both sides of the surrogates' features
SNNTORCH_SURROGATES = {
    "atan": lambda: sg.atan(alpha=3.0),
    "fast_sigmoid": lambda: sg.fast_sigmoid(slope=10),
    "sigmoid": lambda: sg.sigmoid(slope=5),
    "triangular": lambda: sg.triangular(),
    "straight_through_estimator": lambda: sg.straight_through_estimator(),
    "heaviside": lambda: sg.heaviside(),
    "triangle": lambda: triangle(0.7),
}


def reference_recurrent(x, weight, bias, delays, beta, threshold, spike_fn, max_delay, delay_type,
                        sigma, interpolation, reset, reset_delay=True, detach_reset=False):
    """The plain-PyTorch oracle from a zero state."""
    T, B, N = x.shape
    K = R.recurrent_history_length(max_delay, sigma)
    state = R.RecurrentLeakyState(x.new_zeros(B, N), x.new_zeros(K, B, N))
    params = R.RecurrentLeakyParameters(beta, threshold, spike_fn, reset, reset_delay, detach_reset=detach_reset)
    spk, mem, _ = R.recurrent_leaky_sequence(x, state, weight, bias, delays, params, max_delay,
                                             delay_type, sigma, interpolation, backend="reference")
    return spk, mem


def case_seed(*key) -> int:
    """A seed from a test case's parameters that is the same in every process (Python's ``hash``
    of strings changes with ``PYTHONHASHSEED``)."""
    import zlib

    return zlib.crc32(repr(key).encode())


def assert_float32_grads_as_accurate(got, snn32, oracle64, n_input: int, rel: float = 2e-6) -> None:
    """Our float32 gradients are as accurate as snnTorch's own float32 ones.

    ``oracle64`` is snnTorch's loop run in float64 on the same input (the truth up to float64
    rounding). Both float32 computations round the same sums in different orders, and a
    recurrence over time can cancel: the error of each is measured against the oracle, and ours
    may exceed snnTorch's by a factor of 4 plus ``rel`` of the gradient's scale times the square
    root of the number of terms each entry sums (``n_input`` input entries over its size).
    """
    for i, (a, e, o) in enumerate(zip(got, snn32, oracle64)):
        if e is None:
            assert a is None or not a.abs().any(), f"gradient {i}: snnTorch has none, ours is non-zero"
            continue
        o = o.to(torch.float64)
        ours = float((a.to(torch.float64) - o).abs().max()) if a.numel() else 0.0
        theirs = float((e.to(torch.float64) - o).abs().max()) if e.numel() else 0.0
        scale = max(1.0, float(o.abs().max())) if o.numel() else 1.0
        allowed = 4 * theirs + rel * scale * max(1, n_input // max(1, o.numel())) ** 0.5
        assert ours <= allowed, (f"gradient {i}: ours is {ours:.3g} from the float64 oracle, snnTorch's "
                                 f"float32 {theirs:.3g} (allowed {allowed:.3g})")
