"""Norse flavour: delayed LIF layers in Norse's style (needs ``norse``).

Functional steps on NamedTuple states taking :class:`norse.torch.LIFParameters`
(:mod:`snn_delays_ext.norse.functional`) and thin modules with
``forward(x, state=None) -> (z, state)`` that work inside :class:`norse.torch.SequentialState`
and :class:`norse.torch.Lift`. They share the delay kernels of the snnTorch flavour.
"""

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
