"""EventProp with learnable delays: exact event-based gradients for weights and delays.

Current-based LIF layers in mlGeNN's discrete form (Mészáros, Knight & Nowotny 2025;
Wunderlich & Pehle 2021) with feed-forward and recurrent synaptic delays, trained either with
the EventProp adjoint (``backward="eventprop"``) or BPTT with a surrogate
(``backward="surrogate"``), a leaky-integrator readout, the paper's losses and helpers.
"""

from .functional import (
    EventPropConfig,
    decays_from_taus,
    eventprop_lif,
    lif_sequence_surrogate,
    rounded_delays,
    synaptic_scale,
)
from .layers import BACKWARDS, DelayedRecurrentSynaptic, LeakyIntegrator
from .losses import (
    bump_silent_neurons_,
    first_spike_time_loss,
    first_spike_times,
    loss_shaping_ce,
    max_voltage_ce,
    predict_first_spike,
    relative_first_spike_loss,
)
from .network import EVENTPROP_READOUTS, EventPropSNN, spike_count_planes

__all__ = [
    "BACKWARDS",
    "DelayedRecurrentSynaptic",
    "EVENTPROP_READOUTS",
    "EventPropConfig",
    "EventPropSNN",
    "LeakyIntegrator",
    "bump_silent_neurons_",
    "decays_from_taus",
    "eventprop_lif",
    "first_spike_time_loss",
    "first_spike_times",
    "lif_sequence_surrogate",
    "loss_shaping_ce",
    "max_voltage_ce",
    "predict_first_spike",
    "relative_first_spike_loss",
    "spike_count_planes",
    "rounded_delays",
    "synaptic_scale",
]
