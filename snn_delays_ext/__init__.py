"""snn_delays_ext: learnable transmission delays for spiking neural networks.

Drop-in layers for snnTorch (``DelayedLinear``, ``DelayedLeaky``, ``DelayedRecurrentLeaky``) and
Norse, with interpolated delays trained by surrogate-gradient BPTT (DelRec) or EventProp.
"""

from . import functional
from ._backend import backend
from ._checks import set_validation
from ._version import __version__
from .delayed_leaky import DelayedLeaky
from .delayed_linear import DelayedLinear
from .delayed_recurrent_leaky import DelayedRecurrentLeaky
from .eventprop import DelayedRecurrentSynaptic, LeakyIntegrator
from .leaky_readout import LeakyReadout
from .schedule import SigmaScheduler
from .utils import (
    clamp_delays_,
    delay_layers,
    delay_parameters,
    detach,
    install_snntorch_reset,
    quantize_delays,
    reset,
    set_sigma,
    weight_parameters,
)

__all__ = [
    "DelayedLeaky",
    "DelayedLinear",
    "DelayedRecurrentLeaky",
    "DelayedRecurrentSynaptic",
    "LeakyIntegrator",
    "LeakyReadout",
    "SigmaScheduler",
    "__version__",
    "backend",
    "clamp_delays_",
    "delay_layers",
    "delay_parameters",
    "detach",
    "functional",
    "install_snntorch_reset",
    "quantize_delays",
    "reset",
    "set_sigma",
    "set_validation",
    "weight_parameters",
]

install_snntorch_reset()  # snntorch.utils.reset(net) resets our layers too (README, "Conventions")


def __getattr__(name: str):
    # NIR export/import need the optional ``nir`` package: import them on first use
    if name in ("export_to_nir", "import_from_nir"):
        from . import nir as _nir

        return getattr(_nir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
