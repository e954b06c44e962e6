"""Network presets for training: a registry of model builders.

A preset is a function ``builder(n_inputs, n_classes, cfg) -> torch.nn.Module`` registered under
a name with :func:`register_model`. The module maps a time-first batch ``(T, B, F)`` to logits
``(B, C)``; ``forward(x, record=True)`` also returns the hidden spike trains (for rasters).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

from .._checks import check_bool, check_fraction, check_int, check_positive_float, has_data
from .._delay_layer import init_delays
from ..delayed_linear import DelayedLinear
from ..delayed_recurrent_leaky import DelayedRecurrentLeaky
from ..eventprop import EventPropSNN
from ..functional.leaky_sequence import LeakyParameters, leaky_sequence
from ..functional.recurrent_leaky import RESET_MECHANISMS
from ..leaky_readout import leaky_integrate
from ..surrogate import SURROGATE_PARAMETERS
from ..surrogate import triangle
from ..utils import delay_layers
from .config import READOUTS, SECTIONS

__all__ = ["register_model", "build_model", "available_models", "FeedForwardSNN", "RecurrentSNN",
           "leaky_integrator", "readout_logits", "TimeBatchNorm", "SURROGATES"]

ModelBuilder = Callable[[int, int, "object"], nn.Module]
_REGISTRY: Dict[str, Tuple[ModelBuilder, str]] = {}


def register_model(name: str, builder: ModelBuilder, description: str = "", overwrite: bool = False) -> None:
    """Register a model preset under ``name`` (what ``--model`` accepts).

    Parameters
    ----------
    name : str
        Preset name.
    builder : callable
        ``builder(n_inputs, n_classes, cfg)`` returning an ``nn.Module`` that maps ``(T, B, F)``
        to logits ``(B, C)`` and accepts ``record=True`` (then returns ``(logits, spikes)``,
        ``spikes`` a list of ``(T, B, H)`` tensors). ``cfg`` is the
        :class:`~snn_delays_ext.train.TrainConfig`.
    description : str
        One line for ``--help``.
    overwrite : bool
        Replace an existing preset of that name.

    Examples
    --------
    >>> import torch
    >>> register_model("tiny-linear", lambda n_in, n_out, cfg: FeedForwardSNN(n_in, [], n_out, delays=False),
    ...                "a readout only", overwrite=True)
    >>> "tiny-linear" in available_models()
    True
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    if not callable(builder):
        raise TypeError(f"builder: expected a callable, got {type(builder).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"name: model preset {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = (builder, description)


def available_models() -> Dict[str, str]:
    """Registered model presets: name -> description."""
    return {k: v[1] for k, v in _REGISTRY.items()}


def build_model(name: str, n_inputs: int, n_classes: int, cfg: object) -> nn.Module:
    """Build the preset ``name`` (see :func:`register_model`)."""
    if name not in _REGISTRY:
        raise ValueError(f"model: expected one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name][0](n_inputs, n_classes, cfg)


def leaky_integrator(cur: torch.Tensor, beta: float) -> torch.Tensor:
    """Non-spiking leaky integrator ``v_t = beta v_{t-1} + I_t`` over a ``(T, B, C)`` current
    (the update of :class:`~snn_delays_ext.LeakyReadout`, which export writes as ``nir.LI``;
    computed on ``cur``'s device, in its dtype)."""
    return leaky_integrate(cur, float(beta))


def readout_logits(cur: torch.Tensor, readout: str, beta: float) -> torch.Tensor:
    """Logits from the readout current ``(T, B, C)``.

    ``"sum"``: summed over time (DelRec's SSC and PS-MNIST); ``"li_mean"`` / ``"li_max"``: the
    mean / max over time of a leaky integrator's voltage ``v``; ``"li_shaped"``: its
    exponentially weighted mean ``(1/T) sum_t exp(-t/T) v_t`` (EventProp's loss shaping);
    ``"li_softmax_sum"``: the sum over time of its per-step softmax over the classes,
    ``sum_t softmax(v_t)`` (DelRec's SHD; the engine's cross-entropy then applies a softmax to
    that sum, as DelRec's loss does).

    Examples
    --------
    >>> import torch
    >>> cur = torch.ones(3, 1, 1)
    >>> readout_logits(cur, "li_mean", 0.5).item()    # v = 1, 1.5, 1.75
    1.4166666269302368
    """
    if readout == "sum":
        return cur.sum(0)
    v = leaky_integrator(cur, beta)
    if readout == "li_shaped":
        T = v.shape[0]
        w = torch.exp(-torch.arange(T, device=v.device, dtype=v.dtype) / T)
        return (w.view(T, 1, 1) * v).sum(0) / T
    if readout == "li_mean":
        return v.mean(0)
    if readout == "li_max":
        return v.max(0).values
    if readout == "li_softmax_sum":
        return torch.softmax(v, dim=-1).sum(0)
    raise ValueError(f"readout: expected one of {list(READOUTS)}, got {readout!r}")


#: Surrogate spike functions of the training models: name -> factory. ``"triangle"`` is
#: :func:`snn_delays_ext.surrogate.triangle` (DelRec's); ``"triangular"`` is snnTorch's function
#: of that name, whose derivative is ``+threshold`` below the threshold and ``-threshold`` above
#: it, not a triangle. A ``surrogate_param`` is passed as the factory's ``alpha`` / ``slope`` /
#: ``gamma`` / ``threshold``.
SURROGATES: Dict[str, Callable[..., Callable]] = {
    "atan": surrogate.atan,
    "fast_sigmoid": surrogate.fast_sigmoid,
    "triangle": triangle,
    "triangular": surrogate.triangular,
}


def _spike_grad(name: str, param: Optional[float] = None) -> Callable:
    if name not in SURROGATES:
        raise ValueError(f"surrogate: expected one of {sorted(SURROGATES)}, got {name!r}")
    if param is None:
        return SURROGATES[name]()
    return SURROGATES[name](**{SURROGATE_PARAMETERS[name]: check_positive_float("surrogate_param", param)})


#: ``surrogate.dropout_placement`` and ``surrogate.dropout_mask``
DROPOUT_PLACEMENTS = ("spikes", "current")
DROPOUT_MASKS = ("step", "sequence")


class _SequenceDropout(nn.Dropout):
    """Dropout on a time-first ``(T, B, F)`` sequence with one mask per sample and feature for
    every step (SpikingJelly's multi-step ``Dropout``, DelRec's): a dropped feature stays
    dropped for the whole sequence, a kept one is scaled by ``1 / (1 - p)``. Training only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((1,) + tuple(x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class _StepDropout(nn.Dropout):
    """``torch.nn.Dropout`` (a new mask for every element, kept ones scaled by ``1 / (1 - p)``)
    with its mask drawn as ``rand >= p`` on the CPU, where that is about 3x faster than the
    ``bernoulli_`` that ``nn.Dropout`` draws (``benchmarks/braille_epoch.py``: dropout was 16% of
    a Braille training step); the same distribution, another random stream. Other devices run
    ``nn.Dropout``'s fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


def _dropout(p: float, mask: str = "step") -> nn.Module:
    p = check_fraction("dropout", p, "a probability")
    if mask not in DROPOUT_MASKS:
        raise ValueError(f"dropout_mask: expected one of {list(DROPOUT_MASKS)}, got {mask!r}")
    if p == 0:
        return nn.Identity()
    return _SequenceDropout(p) if mask == "sequence" else _StepDropout(p)


def _check_placement(placement: str) -> str:
    if placement not in DROPOUT_PLACEMENTS:
        raise ValueError(f"dropout_placement: expected one of {list(DROPOUT_PLACEMENTS)}, got {placement!r}")
    return placement


@torch.no_grad()
def _init_linears(linears: Sequence[nn.Module], linear_init: str) -> None:
    """``"kaiming"``: ``kaiming_uniform_`` for ReLU on every feed-forward weight matrix (DelRec's
    SHD ``init_ff_weights``; biases keep torch's default); ``"default"``: nothing."""
    if linear_init not in ("default", "kaiming"):
        raise ValueError(f"linear_init: expected 'default' or 'kaiming', got {linear_init!r}")
    if linear_init == "kaiming":
        for lin in linears:
            nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")


class TimeBatchNorm(nn.Module):
    """Batch normalisation over the features of a time-first ``(T, B, F)`` sequence: the
    statistics pool every step of every sample (``torch.nn.BatchNorm1d`` on the ``T * B`` rows).

    The normalisation is the ``bn`` attribute, a plain ``BatchNorm1d``, so
    :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm` swaps it for the synchronised one
    under DistributedDataParallel (the engine does this on CUDA).

    Parameters
    ----------
    num_features : int
        ``F``.
    **kwargs
        Passed to ``torch.nn.BatchNorm1d`` (``eps``, ``momentum``, ``affine``, ...).

    Examples
    --------
    >>> import torch
    >>> bn = TimeBatchNorm(4)
    >>> y = bn(torch.randn(10, 8, 4) * 3 + 1)
    >>> y.shape, bool(y.mean((0, 1)).abs().max() < 1e-5)
    (torch.Size([10, 8, 4]), True)
    """

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__()
        self.num_features = check_int("num_features", num_features, minimum=1)
        self.bn: nn.Module = nn.BatchNorm1d(self.num_features, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.num_features:
            raise ValueError(f"x: expected a (T, B, {self.num_features}) sequence, got shape {tuple(x.shape)}")
        return self.bn(x.reshape(-1, x.shape[-1])).view(x.shape)


def _norm(batch_norm: bool, n: int) -> nn.Module:
    if not isinstance(batch_norm, bool):
        raise TypeError(f"batch_norm: expected True or False, got {batch_norm!r}")
    return TimeBatchNorm(n) if batch_norm else nn.Identity()


def _detaches_reset(detach_reset: bool, reset_mechanism: str, reset_delay: bool) -> bool:
    """Whether a surrogate model's reset is given no gradient: ``detach_reset`` acts on the zero
    reset in the spike's step only (snnTorch's delayed reset is detached already)."""
    return detach_reset and reset_mechanism == "zero" and not reset_delay


def _leaky(h: int, beta: float, learn_beta: bool, spike_grad: Callable, reset_mechanism: str,
           reset_delay: bool, detach_reset: bool) -> nn.Module:
    """The hidden LIF neurons of a feed-forward layer (snnTorch's ``Leaky``); a learnable decay
    is one per neuron."""
    cls = _DetachedZeroResetLeaky if _detaches_reset(detach_reset, reset_mechanism, reset_delay) else snn.Leaky
    lif = cls(beta=torch.full((h,), float(beta)) if learn_beta else beta, learn_beta=learn_beta,
              spike_grad=spike_grad, reset_mechanism=reset_mechanism, reset_delay=reset_delay)
    _leaky_parameters(lif)  # reads graded_spikes_factor once here, where it has a value (see _graded_is_one)
    return lif


#: snnTorch ``Leaky``'s membrane update per reset mechanism (what ``state_function`` is bound to)
_STATE_FUNCTIONS = {"_base_sub": "subtract", "_base_zero": "zero", "_base_int": "none"}


def _graded_is_one(lif: nn.Module) -> bool:
    """Whether the neuron's ``graded_spikes_factor`` is a fixed 1. Reading a CUDA scalar
    synchronises, so the answer is kept until the buffer changes; where no value can be read
    (``meta`` tensors, ``torch.compile``) the last answer read counts (``_leaky_parameters`` reads
    it when the network is built)."""
    g = lif.graded_spikes_factor
    if g.requires_grad or g.numel() != 1:
        return False
    cached = getattr(lif, "_sde_graded_key", None)
    if not has_data(g):
        return cached is not None and cached[1]
    key = (id(g), g._version)
    if cached is None or cached[0] != key:
        cached = (key, float(g) == 1.0)
        lif._sde_graded_key = cached
    return cached[1]


def _has_hooks(module: nn.Module) -> bool:
    """Whether forward hooks or pre-hooks are registered on ``module`` or globally."""
    from torch.nn.modules import module as _m

    return bool(module._forward_hooks or module._forward_pre_hooks or _m._global_forward_hooks
                or _m._global_forward_pre_hooks)


def _leaky_parameters(lif: nn.Module) -> Optional[LeakyParameters]:
    """The :class:`~snn_delays_ext.functional.LeakyParameters` of a hidden neuron module
    (``snn.Leaky`` or :class:`_DetachedZeroResetLeaky`), or ``None`` when it has options the
    sequence function does not model (inhibition, state quantisation, graded spikes, hidden
    state, a subclass), or forward hooks: those step snnTorch's module instead."""
    detached = type(lif) is _DetachedZeroResetLeaky
    if not (detached or type(lif) is snn.Leaky) or lif.init_hidden or lif.inhibition or lif.state_quant:
        return None
    if _has_hooks(lif):  # a hook (NIR export's tracing, a user's probe) sees the module called every step
        return None
    reset = lif.reset_mechanism
    if _STATE_FUNCTIONS.get(getattr(lif.state_function, "__name__", "")) != reset or not _graded_is_one(lif):
        return None
    if detached:  # mem (1 - spk.detach()) after each spike: zero reset once, in the spike's step
        return LeakyParameters(lif.beta, lif.threshold, lif.spike_grad, "zero", False, True, "spikingjelly")
    return LeakyParameters(lif.beta, lif.threshold, lif.spike_grad, reset, bool(lif.reset_delay))


def _run_leaky(lif: nn.Module, cur: torch.Tensor) -> torch.Tensor:
    """The spikes ``(T, B, H)`` of a hidden neuron module over the current ``cur``, from rest.

    :func:`snn_delays_ext.functional.leaky_sequence` (the compiled op: the time loop in C++ or
    CUDA, one autograd node) where the module is a plain ``snn.Leaky``; else snnTorch's module
    stepped in a Python loop. The same spikes and gradients either way."""
    params = _leaky_parameters(lif)
    if params is not None:
        return leaky_sequence(cur, params)[0]
    mem = lif.init_leaky()
    spikes = []
    for c in cur.unbind(0):
        spk, mem = lif(c, mem)
        spikes.append(spk)
    # snnTorch's spike functions return float32: the spikes go on in the current's dtype
    return torch.stack(spikes).to(cur.dtype)


class _DetachedZeroResetLeaky(snn.Leaky):
    """snnTorch's ``Leaky(reset_mechanism="zero", reset_delay=False)`` (NIR's LIF), the same
    values, with the reset detached from the gradient: ``mem = beta mem + I``,
    ``spk = H(mem - thr)``, ``mem = mem (1 - spk)``, where snnTorch multiplies by the spike with
    its surrogate gradient (its delayed reset is detached). One step ``(spk, mem)`` per call, as
    ``Leaky`` without ``init_hidden``; exports to NIR as a ``Leaky``."""

    def forward(self, input_: torch.Tensor, mem: torch.Tensor):  # type: ignore[override]
        if mem.shape != input_.shape:  # init_leaky()'s empty state: start at rest
            mem = torch.zeros_like(input_)
        mem = self.beta.clamp(0, 1) * mem + input_
        spk = self.fire(mem)
        return spk, mem * (1.0 - spk.detach())


class FeedForwardSNN(nn.Module):
    """Feed-forward spiking network: ``[DelayedLinear -> snntorch.Leaky] x L -> DelayedLinear ->
    readout``; with ``delays=False`` the linear maps are plain ``nn.Linear`` (the baseline).

    Parameters
    ----------
    n_inputs, hidden, n_classes
        Input features, hidden layer sizes, classes.
    max_delay : int
        Largest delay in steps (delay layers).
    delays : bool
        Use delay layers (``False``: no-delay baseline).
    delay_type : str
        ``DelayedLinear``'s ``delay_type``.
    output_delays : bool
        Delays also on the readout connections.
    beta, beta_out : float
        Membrane decay of the hidden LIF neurons and of the leaky-integrator readout.
    readout : {"sum", "li_mean", "li_max", "li_shaped"}
        See :func:`readout_logits`.
    surrogate : str
        A name in :data:`SURROGATES`: ``"atan"``, ``"fast_sigmoid"`` (snnTorch),
        ``"triangle"`` (:func:`snn_delays_ext.surrogate.triangle`) or ``"triangular"``
        (snnTorch's, not a triangle: see :data:`SURROGATES`).
    surrogate_param : float, optional
        Its parameter: atan ``alpha``, fast_sigmoid ``slope``, triangle ``gamma``, triangular
        ``threshold``; ``None`` keeps the factory's default.
    delay_init : str or float
        Initial delays (see :class:`~snn_delays_ext.DelayedLinear`).
    interpolation : {"triangle", "round"}
        ``DelayedLinear``'s ``interpolation``.
    dropout : float
        Probability of dropping each hidden spike (``torch.nn.Dropout`` on the ``(T, B, H)``
        spike trains between layers, training mode only); 0 disables it.
    dropout_placement : {"spikes", "current"}
        Drop each hidden layer's output spikes (default), or its input current before the
        neurons (DelRec's SSC and PS-MNIST).
    dropout_mask : {"step", "sequence"}
        A new mask every step (``torch.nn.Dropout``, default), or one mask per sample and
        feature for the whole sequence (DelRec's, SpikingJelly's multi-step dropout).
    linear_init : {"default", "kaiming"}
        Feed-forward weights: torch's default, or ``kaiming_uniform_`` for ReLU (DelRec's SHD).
    learn_beta : bool
        Learn one membrane decay per hidden neuron (starting at ``beta``; snnTorch's
        ``learn_beta`` with a per-neuron tensor), i.e. heterogeneous time constants.
    batch_norm : bool
        Normalise each hidden layer's input current with :class:`TimeBatchNorm` (statistics over
        time and batch, learnable scale and shift) before its neurons.
    reset_mechanism : {"subtract", "zero", "none"}
        The hidden neurons' reset (snnTorch's ``reset_mechanism``).
    reset_delay : bool
        Reset one step after the spike (snnTorch's default) or in the step of the spike.
        ``reset_mechanism="zero", reset_delay=False`` is NIR's LIF: only such a network exports
        to a graph that other NIR tools and chips run exactly (see :doc:`/nir`).
    detach_reset : bool
        With ``reset_mechanism="zero", reset_delay=False``: no gradient through the reset (the
        same forward values as snnTorch's, whose same-step reset multiplies the membrane by the
        spike with its surrogate gradient; its delayed reset is detached). Default ``True``.

    Examples
    --------
    >>> import torch
    >>> net = FeedForwardSNN(3, [8], 2, max_delay=5)
    >>> net(torch.rand(10, 4, 3)).shape
    torch.Size([4, 2])
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int, max_delay: int = 10,
                 delays: bool = True, delay_type: str = "synaptic", output_delays: bool = True,
                 beta: float = 0.9, beta_out: float = 0.9, readout: str = "li_mean",
                 surrogate: str = "atan", surrogate_param: Optional[float] = None,
                 delay_init: Union[str, float] = "uniform", interpolation: str = "triangle",
                 dropout: float = 0.0, learn_beta: bool = False, batch_norm: bool = False,
                 reset_mechanism: str = "subtract", reset_delay: bool = True, detach_reset: bool = True,
                 dropout_placement: str = "spikes", dropout_mask: str = "step", linear_init: str = "default") -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {list(READOUTS)}, got {readout!r}")
        if reset_mechanism not in RESET_MECHANISMS:
            raise ValueError(f"reset_mechanism: expected one of {list(RESET_MECHANISMS)}, got {reset_mechanism!r}")
        for name, flag in (("delays", delays), ("output_delays", output_delays), ("learn_beta", learn_beta),
                           ("reset_delay", reset_delay), ("detach_reset", detach_reset)):
            check_bool(name, flag)
        self.readout, self.beta_out = readout, float(beta_out)
        self.drop = _dropout(dropout, dropout_mask)
        self.dropout_placement = _check_placement(dropout_placement)
        sizes = [n_inputs] + list(hidden)
        spike_grad = _spike_grad(surrogate, surrogate_param)

        def lin(a: int, b: int, with_delay: bool) -> nn.Module:
            if with_delay:
                return DelayedLinear(a, b, max_delay, delay_type=delay_type, delay_init=delay_init,
                                     interpolation=interpolation)
            return nn.Linear(a, b)

        self.linears = nn.ModuleList(lin(a, b, delays) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(_norm(batch_norm, h) for h in hidden)
        self.lifs = nn.ModuleList(_leaky(h, beta, learn_beta, spike_grad, reset_mechanism, reset_delay, detach_reset)
                                  for h in hidden)
        self.out = lin(sizes[-1], n_classes, delays and output_delays)
        _init_linears([*self.linears, self.out], linear_init)

    def forward(self, x: torch.Tensor, record: bool = False):
        spikes: List[torch.Tensor] = []
        h = x
        on_current = self.dropout_placement == "current"
        for lin, norm, lif in zip(self.linears, self.norms, self.lifs):
            cur = norm(lin(h))
            h = _run_leaky(lif, self.drop(cur) if on_current else cur)
            spikes.append(h)
            if not on_current:
                h = self.drop(h)
        logits = readout_logits(self.out(h), self.readout, self.beta_out)
        return (logits, spikes) if record else logits


class RecurrentSNN(nn.Module):
    """DelRec-style recurrent network: ``[Linear -> DelayedRecurrentLeaky] x L -> Linear``,
    output summed over time; with ``delays=False`` the recurrent layers are ``snntorch.RLeaky``
    semantics (every recurrent lag 1, delays fixed). The hidden layers are ``recs`` (with
    ``first_layer_recurrent=False`` the first of them is a plain LIF layer, snnTorch's
    ``Leaky``).

    Parameters
    ----------
    n_inputs, hidden, n_classes, max_delay, delays, readout, beta_out, dropout, batch_norm
        As in :class:`FeedForwardSNN`.
    dropout_placement, dropout_mask, linear_init
        As in :class:`FeedForwardSNN` (DelRec: the mask per sequence, on the spikes for SHD
        and on the current for SSC and PS-MNIST; ``"kaiming"`` for SHD).
    reset_mechanism, reset_delay, detach_reset
        As in :class:`FeedForwardSNN` (``detach_reset`` acts on the zero reset in the spike's step
        only, as there). DelRec's neuron resets in the spike's own step: to zero (SHD), or by
        subtraction (SSC, PS-MNIST).
    interpolation : {"triangle", "round"}
        ``DelayedRecurrentLeaky``'s ``interpolation``.
    beta : float
        Membrane decay of the recurrent LIF neurons (DelRec: 0.5).
    surrogate : str
        A name in :data:`SURROGATES`; default ``"triangle"``, DelRec's.
    surrogate_param : float, optional
        Its parameter (triangle ``gamma``, ...); ``None`` keeps the factory's default.
    delay_std : float, optional
        Standard deviation of the half-normal initial recurrent delays (default ``max_delay / 2``).
    delay_type : {"axonal", "synaptic"}
        ``DelayedRecurrentLeaky``'s ``delay_type``.
    delay_init : str, float or torch.Tensor
        Initial recurrent lags (``DelayedRecurrentLeaky``'s ``delay_init``; default
        ``"half_normal"``: ``1 + |N(0, delay_std)|``, DelRec's SSC and PS-MNIST). A DelRec delay
        ``d`` is the lag ``1 + d`` here.
    recurrent_dropout : float
        ``DelayedRecurrentLeaky``'s ``recurrent_dropout`` (DelRec's: each neuron's delayed
        recurrent input dropped for a whole sequence, training only).
    learn_width : bool
        ``DelayedRecurrentLeaky``'s ``learn_width`` (DelRec's ``p_spread``: a learnable triangle
        width per presynaptic neuron).
    recurrent_init : {"default", "orthogonal"}
        Recurrent weights: snnTorch's default, or ``torch.nn.init.orthogonal_`` (DelRec's).
    first_layer_recurrent : bool
        ``False``: the first hidden layer is plain LIF neurons (the same neuron options) without
        recurrence (DelRec's SHD).
    reset_convention : {"snntorch", "spikingjelly"}
        ``DelayedRecurrentLeaky``'s ``reset_convention`` (DelRec's neuron: ``"spikingjelly"``).

    Examples
    --------
    >>> import torch
    >>> net = RecurrentSNN(3, [8, 8], 2, max_delay=5)
    >>> net(torch.rand(10, 4, 3)).shape
    torch.Size([4, 2])
    """

    def __init__(self, n_inputs: int, hidden: Sequence[int], n_classes: int, max_delay: int = 25,
                 delays: bool = True, beta: float = 0.5, readout: str = "sum", beta_out: float = 0.9,
                 surrogate: str = "triangle", delay_std: Optional[float] = None,
                 delay_type: str = "axonal", dropout: float = 0.0, batch_norm: bool = False,
                 surrogate_param: Optional[float] = None, reset_mechanism: str = "subtract",
                 reset_delay: bool = True, detach_reset: bool = True, interpolation: str = "triangle",
                 delay_init: Union[str, float, torch.Tensor] = "half_normal", recurrent_dropout: float = 0.0,
                 learn_width: bool = False, recurrent_init: str = "default", first_layer_recurrent: bool = True,
                 dropout_placement: str = "spikes", dropout_mask: str = "step", linear_init: str = "default",
                 reset_convention: str = "snntorch") -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {list(READOUTS)}, got {readout!r}")
        if reset_convention not in ("snntorch", "spikingjelly"):
            raise ValueError(f"reset_convention: expected 'snntorch' or 'spikingjelly', got {reset_convention!r}")
        if (reset_convention == "spikingjelly" and not first_layer_recurrent and hidden
                and reset_mechanism == "subtract"):
            raise ValueError("reset_convention: the plain first layer (first_layer_recurrent=False) resets as "
                             "snnTorch's Leaky; 'spikingjelly' with a subtractive reset is for the recurrent "
                             "layers only (with reset_mechanism 'zero' the two conventions agree)")
        for name, flag in (("detach_reset", detach_reset), ("learn_width", learn_width),
                           ("first_layer_recurrent", first_layer_recurrent)):
            check_bool(name, flag)
        check_fraction("recurrent_dropout", recurrent_dropout, "a probability")
        if recurrent_init not in ("default", "orthogonal"):
            raise ValueError(f"recurrent_init: expected 'default' or 'orthogonal', got {recurrent_init!r}")
        self.readout, self.beta_out = readout, float(beta_out)
        self.drop = _dropout(dropout, dropout_mask)
        self.dropout_placement = _check_placement(dropout_placement)
        sizes = [n_inputs] + list(hidden)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(_norm(batch_norm, h) for h in hidden)
        # DelRec's layer options, passed only when set (the layer gained them later)
        extra: Dict[str, object] = {}
        if recurrent_dropout:
            extra["recurrent_dropout"] = float(recurrent_dropout)
        if learn_width:
            extra["learn_width"] = True
        if reset_convention != "snntorch":
            extra["reset_convention"] = reset_convention
        spike_grad = _spike_grad(surrogate, surrogate_param)

        def layer(i: int, h: int) -> nn.Module:
            if i == 0 and not first_layer_recurrent:
                return _leaky(h, beta, False, spike_grad, reset_mechanism, reset_delay, detach_reset)
            return DelayedRecurrentLeaky(
                beta, h, max_delay, delay_type=delay_type, spike_grad=spike_grad,
                delay_init=delay_init if delays else 1.0, delay_std=delay_std, learn_delays=delays,
                reset_mechanism=reset_mechanism, reset_delay=reset_delay,
                detach_reset=_detaches_reset(detach_reset, reset_mechanism, reset_delay),
                interpolation=interpolation, **extra)

        self.recs = nn.ModuleList(layer(i, h) for i, h in enumerate(hidden))
        self.out = nn.Linear(sizes[-1], n_classes)
        _init_linears([*self.linears, self.out], linear_init)
        if recurrent_init == "orthogonal":
            with torch.no_grad():
                for rec in self.recs:
                    if isinstance(rec, DelayedRecurrentLeaky):
                        nn.init.orthogonal_(rec.recurrent.weight)

    def forward(self, x: torch.Tensor, record: bool = False):
        spikes: List[torch.Tensor] = []
        h = x
        on_current = self.dropout_placement == "current"
        for lin, norm, rec in zip(self.linears, self.norms, self.recs):
            cur = norm(lin(h))
            if on_current:
                cur = self.drop(cur)
            h = rec(cur)[0] if isinstance(rec, DelayedRecurrentLeaky) else _run_leaky(rec, cur)
            spikes.append(h)
            if not on_current:
                h = self.drop(h)
        logits = readout_logits(self.out(h), self.readout, self.beta_out)
        return (logits, spikes) if record else logits


def _refuse_section(cfg: "object", section: str, reason: str, keep: Sequence[str] = ()) -> None:
    """Raise a ``ValueError`` for the first option of ``section`` that ``cfg`` sets away from its
    default (``keep``: options of it this model does use): a model refuses the options of
    another family instead of ignoring them."""
    values, defaults = getattr(cfg, section), SECTIONS[section]()
    for f in dataclasses.fields(defaults):
        if f.name not in keep and getattr(values, f.name) != getattr(defaults, f.name):
            raise ValueError(f"{section}.{f.name}: {reason}; expected {getattr(defaults, f.name)!r} (the default), "
                             f"got {getattr(values, f.name)!r}")


def _refuse_options(cfg: "object", section: str, names: Sequence[str], reason: str) -> None:
    """Raise a ``ValueError`` for the first of ``names`` (options of ``section``) that ``cfg``
    sets away from its default."""
    values, defaults = getattr(cfg, section), SECTIONS[section]()
    for name in names:
        if getattr(values, name) != getattr(defaults, name):
            raise ValueError(f"{section}.{name}: {reason}; expected {getattr(defaults, name)!r} (the default), "
                             f"got {getattr(values, name)!r}")


@torch.no_grad()
def _apply_delay_range(model: nn.Module, delay_range: Optional[Sequence[float]]) -> None:
    """``model.delay_range``: every learnable (feed-forward, or DelRec's recurrent) delay tensor
    drawn again uniformly from ``[low, high]`` and clamped to its layer's range."""
    if delay_range is None:
        return
    low, high = float(delay_range[0]), float(delay_range[1])
    for m in delay_layers(model):
        d = m.delays
        if d.requires_grad:
            d.copy_(torch.empty_like(d).uniform_(low, high).clamp_(float(m.min_delay), float(m.max_delay)))


#: The surrogate options only the recurrent models have
_RECURRENT_ONLY = ("recurrent_dropout", "learn_width", "recurrent_init", "first_layer_recurrent", "reset_convention")


def _ff(delays: bool) -> ModelBuilder:
    def build(n_in: int, n_out: int, cfg) -> nn.Module:
        _refuse_section(cfg, "eventprop", "the EventProp options apply to the eventprop-* models")
        _refuse_options(cfg, "surrogate", _RECURRENT_ONLY, "the feed-forward models have no recurrent connections")
        m, s = cfg.model, cfg.surrogate
        net = FeedForwardSNN(
            n_in, m.hidden, n_out, max_delay=m.max_delay, delays=delays, delay_type=m.delay_type,
            output_delays=m.output_delays, beta=s.beta, beta_out=s.beta_out, readout=m.readout,
            surrogate=s.surrogate, surrogate_param=s.surrogate_param, delay_init=m.delay_init,
            interpolation=s.interpolation, dropout=s.dropout, learn_beta=s.learn_beta, batch_norm=s.batch_norm,
            reset_mechanism=s.reset_mechanism, reset_delay=s.reset_delay, detach_reset=s.detach_reset,
            dropout_placement=s.dropout_placement, dropout_mask=s.dropout_mask, linear_init=s.linear_init,
        )
        _apply_delay_range(net, m.delay_range)
        return net
    return build


def _rec(delays: bool) -> ModelBuilder:
    def build(n_in: int, n_out: int, cfg) -> nn.Module:
        _refuse_section(cfg, "eventprop", "the EventProp options apply to the eventprop-* models")
        m, s = cfg.model, cfg.surrogate
        if s.learn_beta:
            raise ValueError("surrogate.learn_beta: the recurrent models keep one fixed decay per layer (DelRec); "
                             "expected False, got True")
        if m.delay_type not in ("axonal", "synaptic"):
            raise ValueError(f"model.delay_type: recurrent delays are 'axonal' or 'synaptic', got {m.delay_type!r}")
        if not delays:
            _refuse_options(cfg, "surrogate", ("learn_width",), "the no-delay baseline has no delay triangles")
        net = RecurrentSNN(
            n_in, m.hidden, n_out, max_delay=m.max_delay, delays=delays, beta=s.beta,
            readout=m.readout, beta_out=s.beta_out, surrogate=s.surrogate, delay_std=s.delay_std,
            delay_type=m.delay_type, dropout=s.dropout, batch_norm=s.batch_norm,
            surrogate_param=s.surrogate_param, reset_mechanism=s.reset_mechanism, reset_delay=s.reset_delay,
            detach_reset=s.detach_reset, interpolation=s.interpolation, delay_init=m.delay_init,
            recurrent_dropout=s.recurrent_dropout, learn_width=s.learn_width, recurrent_init=s.recurrent_init,
            first_layer_recurrent=s.first_layer_recurrent, dropout_placement=s.dropout_placement,
            dropout_mask=s.dropout_mask, linear_init=s.linear_init, reset_convention=s.reset_convention,
        )
        _apply_delay_range(net, m.delay_range)
        return net
    return build


register_model("ff-delays", _ff(True), "feed-forward: DelayedLinear + snntorch.Leaky (surrogate BPTT)")
register_model("ff-nodelay", _ff(False), "feed-forward baseline: nn.Linear + snntorch.Leaky, no delays")
register_model("delrec", _rec(True), "DelRec-style recurrent: Linear + DelayedRecurrentLeaky (axonal delays)")
register_model("rec-nodelay", _rec(False), "recurrent baseline: Linear + RLeaky-equivalent (all lags 1, fixed)")


def _eventprop(recurrent: bool) -> ModelBuilder:
    def build(n_in: int, n_out: int, cfg) -> nn.Module:
        # the surrogate models' neuron options do not exist for the event-based layers: refuse them
        _refuse_section(cfg, "surrogate", "the EventProp models have current-based LIF neurons with fixed time "
                        "constants, reset to 0 in the spike's step (as NIR's CubaLIF), and exact gradients")
        if not recurrent:
            _refuse_options(cfg, "eventprop", ("init_recurrent", "rec_delay_init"),
                            "eventprop-ff has no recurrent connections")
        m, e = cfg.model, cfg.eventprop
        net = EventPropSNN(
            n_in, list(m.hidden), n_out, max_delay=m.max_delay, recurrent=recurrent,
            tau_syn=e.tau_syn, tau_mem=e.tau_mem, tau_out=e.tau_out, readout=m.readout, delay_init=m.delay_init,
            output_delays=m.output_delays, weight_mean=e.weight_mean, weight_std=e.weight_std,
            backward="eventprop", reg_strength=e.reg_strength, reg_target=e.reg_target,
        )
        _apply_delay_range(net, m.delay_range)
        _eventprop_init(net, e)
        return net
    return build


@torch.no_grad()
def _eventprop_init(net: nn.Module, e: "object") -> None:
    """The EventProp options ``init_input`` / ``init_hidden`` / ``init_recurrent`` /
    ``init_output`` (weights ``N(mean, std)``, not scaled by the fan-in, as mlGeNN's
    initialisers) and ``rec_delay_init``."""
    layers = list(net.layers)  # type: ignore[attr-defined]
    for i, layer in enumerate(layers):
        spec = e.init_input if i == 0 else e.init_hidden  # type: ignore[attr-defined]
        if spec is not None:
            layer.weight.normal_(spec[0], spec[1])
        if getattr(layer, "rec_weight", None) is not None:
            if e.init_recurrent is not None:  # type: ignore[attr-defined]
                layer.rec_weight.normal_(e.init_recurrent[0], e.init_recurrent[1])  # type: ignore[attr-defined]
            if e.rec_delay_init != "uniform":  # type: ignore[attr-defined]
                d = layer.rec_delays
                d.copy_(init_delays("eventprop.rec_delay_init", tuple(d.shape), layer.max_delay, 1,
                                    e.rec_delay_init, None, d.dtype, d.device))  # type: ignore[attr-defined]
    if e.init_output is not None:  # type: ignore[attr-defined]
        net.out.weight.normal_(e.init_output[0], e.init_output[1])  # type: ignore[attr-defined]


register_model("eventprop-ff", _eventprop(False),
               "EventProp feed-forward: delayed current-based LIF layers + LI readout (exact gradients)")
register_model("eventprop-rec", _eventprop(True),
               "EventProp recurrent: DelayedRecurrentSynaptic layers (ff + recurrent delays) + LI readout")
