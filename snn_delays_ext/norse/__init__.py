"""Norse flavour: delayed LIF layers in Norse's style (needs ``norse``).

Functional steps on NamedTuple states taking :class:`norse.torch.LIFParameters`
(:mod:`snn_delays_ext.norse.functional`) and thin modules with
``forward(x, state=None) -> (z, state)`` that work inside :class:`norse.torch.SequentialState`
and :class:`norse.torch.Lift`. They share the delay kernels of the snnTorch flavour.
"""

try:
    import norse.torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without norse
    raise ImportError(
        "snn_delays_ext.norse needs the 'norse' package: pip install --no-deps norse "
        "(norse declares torchvision; --no-deps keeps your torch build)"
    ) from exc

from .functional import (
    DelayedLIFFeedForwardState,
    DelayedLIFState,
    delayed_lif_feed_forward_step,
    delayed_lif_step,
    delayed_recurrent_input,
)
from .modules import DelayedLIF, DelayedLIFCell, DelayedLIFRecurrent, DelayedLIFRecurrentCell

__all__ = [
    "DelayedLIF",
    "DelayedLIFCell",
    "DelayedLIFFeedForwardState",
    "DelayedLIFRecurrent",
    "DelayedLIFRecurrentCell",
    "DelayedLIFState",
    "delayed_lif_feed_forward_step",
    "delayed_lif_step",
    "delayed_recurrent_input",
]
