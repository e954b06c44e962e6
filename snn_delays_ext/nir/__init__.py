"""Export to and import from NIR, the Neuromorphic Intermediate Representation (``nir``).

:func:`export_to_nir` turns a chain of layers into an :class:`nir.NIRGraph`;
:func:`import_from_nir` builds the equivalent PyTorch network back. Delays become ``nir.Delay``
nodes.

Units and conventions
---------------------
* **Delays are in seconds**, NIR's time unit: a delay of ``l`` steps is written as
  ``l * dt``. Export rounds every delay to whole steps first (halves up, never truncation);
  call :func:`snn_delays_ext.quantize_delays` before exporting to make the exported graph
  compute exactly what the trained network computes (a warning says when delays were not
  integers, or the interpolation width ``sigma`` was not 0).
* **Feed-forward delays** (:class:`~snn_delays_ext.DelayedLinear` and the delayed map of
  :class:`~snn_delays_ext.norse.DelayedLIF`): axonal delays ``(in,)`` are one ``Delay`` before
  the affine map; synaptic delays ``(out, in)`` are split into one branch per distinct delay
  value ``d`` (``Delay(d) -> Linear(W * [L == d])``, the lag-0 branch without ``Delay``), and the
  branches sum into the next node (NIR sums every edge that enters a node); dendritic delays
  ``(out,)`` are a ``Delay`` after the weights (``Linear -> Delay``) with the bias, which is not
  delayed, on a parallel zero-weight ``Affine`` branch. Each delayed map is one sub-graph.
  A connection of weight exactly 0 is in no branch, so every delayed layer's sub-graph also
  records the layer's whole-step delays as ``metadata["delay_steps"]``; :func:`import_from_nir`
  takes the delays of zero-weight connections from there.
* **Recurrent delays**: a recurrent layer is a sub-graph ``input -> neuron -> output`` with the
  recurrent edge ``neuron -> [Delay] -> Affine -> neuron``. The recurrent edge itself carries the
  one-step latency every discrete-time simulator gives a recurrent connection (as in snnTorch's
  own ``RLeaky`` export, which has no ``Delay``), so a recurrent lag of ``l >= 1`` steps is
  written as a ``Delay`` of ``(l - 1) * dt`` (none for lag 1); axonal delays are one ``Delay``
  before the recurrent weights, synaptic delays one branch per distinct lag. One-to-one
  recurrence (``all_to_all=False``, weight ``V``) is the diagonal matrix ``diag(V)``.
  :func:`import_from_nir` also reads such a loop written at the top level (snnTorch's own
  ``RLeaky`` export: ``lif -> w_rec -> lif`` beside the chain, not in a sub-graph).
* **Neurons** follow snnTorch's NIR convention: ``Leaky(beta)`` is ``nir.LIF`` with
  ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``, ``v_reset = 0``; ``Synaptic``
  is ``nir.CubaLIF`` with ``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``,
  ``r = tau_mem / dt``, ``w_in = tau_syn / dt`` (the Euler step of the NIR equations with step
  ``dt`` is then exactly snnTorch's update). A decay of 1 (no leak, e.g. a learned decay
  clipped at 1) is written as ``tau = 2**24 dt`` (a decay of ``1 - 2**-24``, the float32
  number below 1), not ``inf``: NIR simulators step with ``(dt / tau) r``, which is
  ``0 * inf = NaN`` for ``tau = r = inf``; import reads it back as 1.
  :class:`~snn_delays_ext.LeakyReadout` (``mem = beta mem + input``) is ``nir.LI`` with
  ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``; import folds another ``LI``
  input gain ``(dt / tau) r`` into the weights before it. Norse's LIF neurons are ``nir.CubaLIF`` with
  ``tau_syn = 1 / tau_syn_inv``, ``tau_mem = 1 / tau_mem_inv`` (seconds), ``r = 1``,
  ``w_in = tau_syn / dt`` and Norse's ``v_leak``, ``v_th``, ``v_reset``: Norse's update is then
  exactly the Euler step of NIR's ``CubaLIF`` equations, reset included. The EventProp layers
  (:class:`~snn_delays_ext.eventprop.DelayedRecurrentSynaptic`, readout
  :class:`~snn_delays_ext.eventprop.LeakyIntegrator`) are ``nir.CubaLIF`` / ``nir.CubaLI``
  with ``tau_syn = dt / (1 - alpha)``, ``tau_mem = dt / (1 - beta)``, ``w_in = tau_syn / dt``
  and ``r = c``, the layer's current scale
  (:func:`~snn_delays_ext.eventprop.synaptic_scale`): the Euler step is then exactly the
  layer's update, and its reset to 0 in the step of the spike is NIR's own, so other NIR tools
  simulate these layers exactly. Each is a sub-graph ``input -> [Delay] -> Linear -> neuron``
  (one branch per synaptic delay value) with the recurrent loop as for ``DelayedRecurrentLeaky``.
* NIR's LIF resets to ``v_reset`` in the step of the spike; snnTorch's default is a subtractive
  reset one step later. NIR cannot say that, so each neuron node also carries
  ``metadata`` (``beta``, ``alpha``, ``reset_mechanism``, ``reset_delay``, or Norse's parameters)
  that :func:`import_from_nir` uses to rebuild the exact neuron; without metadata a node is read
  with NIR's semantics. So only ``reset_mechanism="zero", reset_delay=False`` exports to what
  other NIR tools simulate exactly (no warning is given otherwise). ``graded_spikes_factor``
  other than 1, ``inhibition`` and ``state_quant`` have no NIR form: export refuses them.

The package: :mod:`~snn_delays_ext.nir.export` (the chain of layers, :func:`export_to_nir`),
:mod:`~snn_delays_ext.nir.importing` (:func:`import_from_nir`), one module per flavour of layers
(``snntorch``, ``norse``, ``eventprop``: their exporters, registered by type, and their readers)
and the helpers they share.
"""

try:  # the package is optional: ``pip install snn_delays_ext[nir]``
    import nir  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without nir
    raise ImportError(
        "snn_delays_ext.nir needs the 'nir' package: pip install nir (or snn_delays_ext[nir])"
    ) from exc

from .export import append_readout, export_to_nir
from .importing import import_from_nir

__all__ = ["append_readout", "export_to_nir", "import_from_nir"]
