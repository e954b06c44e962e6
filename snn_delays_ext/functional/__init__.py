"""Pure functions: the delay math without state (Norse-style functional layer)."""

from .delayed_linear import DELAY_TYPES_FF, delayed_linear, history_length, zero_history
from .interpolation import INTERPOLATIONS, delay_taps, round_half_up, tap_range
from .leaky_sequence import LeakyParameters, leaky_sequence, leaky_step
from .recurrent_leaky import (
    DELAY_TYPES_RECURRENT,
    RESET_MECHANISMS,
    RecurrentLeakyParameters,
    RecurrentLeakyState,
    recurrent_history_length,
    recurrent_leaky_sequence,
    recurrent_leaky_step,
)
from .schedule import delrec_sigma
from .synaptic_sequence import SynapticParameters, synaptic_sequence, synaptic_step

__all__ = [
    "DELAY_TYPES_FF",
    "DELAY_TYPES_RECURRENT",
    "INTERPOLATIONS",
    "LeakyParameters",
    "RESET_MECHANISMS",
    "RecurrentLeakyParameters",
    "RecurrentLeakyState",
    "SynapticParameters",
    "delay_taps",
    "delayed_linear",
    "delrec_sigma",
    "history_length",
    "leaky_sequence",
    "leaky_step",
    "recurrent_history_length",
    "recurrent_leaky_sequence",
    "recurrent_leaky_step",
    "round_half_up",
    "synaptic_sequence",
    "synaptic_step",
    "tap_range",
    "zero_history",
]
