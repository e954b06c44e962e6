"""Network presets for training: a registry of model builders.

A preset is a function ``builder(n_inputs, n_classes, cfg) -> torch.nn.Module`` registered under
a name with :func:`register_model`. The module maps a time-first batch ``(T, B, F)`` to logits
``(B, C)``; ``forward(x, record=True)`` also returns the hidden spike trains (for rasters).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn
from torch.nn.utils import parametrize

from .._checks import as_real, check_bool, check_choice, check_fraction, check_int, check_positive_float
from ..delayed_linear import DelayedLinear
from ..delayed_recurrent_leaky import DelayedRecurrentLeaky
from ..leaky_readout import leaky_integrate
from ..functional.recurrent_leaky import RESET_MECHANISMS
from ..surrogate import _PARAM as _SURROGATE_PARAM
from ..surrogate import triangle
from ..eventprop import EventPropSNN
from .adaptive import AdaptiveLeaky

__all__ = ["register_model", "build_model", "available_models", "FeedForwardSNN", "RecurrentSNN",
           "learned_thresholds", "leaky_integrator", "readout_logits", "TimeBatchNorm", "SigmoidBeta",
           "BETA_PARAMETRIZATIONS", "SURROGATES", "NEURONS", "AdaptiveLeaky"]

ModelBuilder = Callable[[int, int, "object"], nn.Module]
_REGISTRY: Dict[str, Tuple[ModelBuilder, str]] = {}
READOUTS = ("sum", "li_mean", "li_max", "li_shaped", "li_softmax")
#: Hidden neuron models of the feed-forward surrogate networks
NEURONS = ("lif", "alif")
#: How a learnable membrane decay is stored: snnTorch's clipped value, or a logit.
BETA_PARAMETRIZATIONS = ("clamp", "sigmoid")


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

    ``"sum"``: summed over time (DelRec); ``"li_mean"`` / ``"li_max"``: the mean / max over time
    of a leaky integrator's voltage ``v``; ``"li_shaped"``: its exponentially weighted mean
    ``(1/T) sum_t exp(-t/T) v_t`` (EventProp's loss shaping); ``"li_softmax"``: the log of the
    time-averaged class probabilities, ``log((1/T) sum_t softmax(v_t))`` (every step votes with
    a probability vector, as the DCLS SHD models; ``softmax`` of these logits is that average, so
    ``cross_entropy`` on them is the negative log of the averaged probability of the target).

    Examples
    --------
    >>> import torch
    >>> cur = torch.randn(5, 2, 3)
    >>> p = readout_logits(cur, "li_softmax", 0.9).softmax(-1)
    >>> torch.allclose(p, leaky_integrator(cur, 0.9).softmax(-1).mean(0))
    True
    """
    if readout == "sum":
        return cur.sum(0)
    v = leaky_integrator(cur, beta)
    if readout == "li_softmax":  # log-mean-exp of the per-step log-probabilities: no exp overflow
        return torch.logsumexp(torch.log_softmax(v, -1), 0) - math.log(v.shape[0])
    if readout == "li_shaped":
        T = v.shape[0]
        w = torch.exp(-torch.arange(T, device=v.device, dtype=v.dtype) / T)
        return (w.view(T, 1, 1) * v).sum(0) / T
    return v.mean(0) if readout == "li_mean" else v.max(0).values


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
    return SURROGATES[name](**{_SURROGATE_PARAM[name][0]: check_positive_float("surrogate_param", param)})


def _dropout(p: float) -> nn.Module:
    p = check_fraction("dropout", p, "a probability")
    return nn.Dropout(p) if p > 0 else nn.Identity()


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


class SigmoidBeta(nn.Module):
    """Parametrisation of a learnable decay as ``beta = sigmoid(logit)``.

    snnTorch's ``learn_beta`` learns ``beta`` itself and clips it to ``[0, 1]`` in the forward
    pass, so a decay pushed below 0 or above 1 gets no gradient from the loss; below 0 nothing
    brings it back (weight decay only pulls it towards 0), and neurons that lost their memory for
    good, ``beta = 0``, are common after training. Registered with
    :func:`torch.nn.utils.parametrize.register_parametrization` on a neuron's ``beta``, the
    stored parameter becomes the logit: the decay stays in ``(0, 1)`` and always gets a gradient.
    The neuron's own clipping is then a no-op. The training engine does not apply weight decay
    to these logits (decaying a logit pulls ``beta`` towards 0.5).

    Examples
    --------
    >>> import snntorch as snn
    >>> import torch
    >>> from torch.nn.utils import parametrize
    >>> lif = snn.Leaky(beta=torch.full((3,), 0.9), learn_beta=True)
    >>> _ = parametrize.register_parametrization(lif, "beta", SigmoidBeta())
    >>> round(float(lif.parametrizations.beta.original[0]), 4)  # logit(0.9)
    2.1972
    >>> torch.allclose(lif.beta, torch.full((3,), 0.9))
    True
    """

    def forward(self, logit: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logit)

    def right_inverse(self, beta: torch.Tensor) -> torch.Tensor:
        if not bool(((beta > 0) & (beta < 1)).all()):
            raise ValueError(f"beta: a sigmoid-parametrised decay must lie in (0, 1), got values in "
                             f"[{float(beta.min()):g}, {float(beta.max()):g}]")
        return torch.logit(beta)


def sigmoid_beta_logits(model: nn.Module) -> List[nn.Parameter]:
    """The stored logits of every :class:`SigmoidBeta`-parametrised ``beta`` in ``model``."""
    out: List[nn.Parameter] = []
    for m in model.modules():
        plist = getattr(getattr(m, "parametrizations", None), "beta", None)
        if plist is not None and any(isinstance(f, SigmoidBeta) for f in plist):
            out.append(plist.original)
    return out


def learned_thresholds(model: nn.Module) -> List[nn.Parameter]:
    """The learnable firing thresholds (``learn_threshold``) of the snnTorch neurons in ``model``.

    The training engine gives them no weight decay: pulling a threshold towards 0 does not
    regularise, it makes the neuron fire on any input.
    """
    return [m.threshold for m in model.modules()
            if isinstance(m, snn.SpikingNeuron) and isinstance(getattr(m, "threshold", None), nn.Parameter)]


def check_beta_range(beta_range: Optional[Sequence[float]], open_interval: bool = False
                     ) -> Optional[Tuple[float, float]]:
    """Check a ``(low, high)`` range of initial decays; ``None`` passes through.

    Both ends must be real numbers with ``0 <= low < high <= 1`` (``0 < low < high < 1`` with
    ``open_interval``, for decays stored as logits).

    >>> check_beta_range([0.5, 0.98])
    (0.5, 0.98)
    >>> try:
    ...     check_beta_range((0.9, 0.5))
    ... except ValueError as e:
    ...     print(e)
    beta_range: expected (low, high) with 0 <= low < high <= 1, got (0.9, 0.5)
    """
    if beta_range is None:
        return None
    if isinstance(beta_range, (str, bytes)) or not isinstance(beta_range, Sequence) or len(beta_range) != 2:
        raise TypeError(f"beta_range: expected a pair (low, high) of decays, got {beta_range!r}")
    lo, hi = (as_real("beta_range", v, "two numbers") for v in beta_range)
    ok = (0.0 < lo < hi < 1.0) if open_interval else (0.0 <= lo < hi <= 1.0)  # False for NaN
    if not ok:
        bounds = "0 < low < high < 1" if open_interval else "0 <= low < high <= 1"
        raise ValueError(f"beta_range: expected (low, high) with {bounds}, got {tuple(beta_range)!r}")
    return lo, hi


def check_neuron(neuron: str, learn_threshold: bool, reset_mechanism: str = "subtract",
                 reset_delay: bool = True) -> None:
    """Check a hidden neuron model name (:data:`NEURONS`) against the neuron options: the
    adaptive neurons (``"alif"``) have their own threshold dynamics and snnTorch's default reset
    (subtract, one step later), so they refuse ``learn_threshold`` and other resets."""
    if neuron not in NEURONS:
        raise ValueError(f"neuron: expected one of {list(NEURONS)}, got {neuron!r}")
    check_choice("reset_mechanism", reset_mechanism, RESET_MECHANISMS)
    check_bool("reset_delay", reset_delay)
    if neuron == "alif" and learn_threshold is True:
        raise ValueError("learn_threshold: the adaptive neurons ('alif') have their own threshold dynamics; "
                         "expected False with neuron='alif', got True")
    if neuron == "alif" and (reset_mechanism != "subtract" or not reset_delay):
        raise ValueError("reset_mechanism, reset_delay: the adaptive neurons ('alif') subtract their threshold "
                         "one step after the spike; expected 'subtract' and True with neuron='alif', got "
                         f"{reset_mechanism!r} and {reset_delay!r}")


def initial_decays(h: int, beta: float, beta_range: Optional[Tuple[float, float]]) -> torch.Tensor:
    """One initial decay per neuron: ``beta`` everywhere, or, with ``beta_range = (low, high)``,
    drawn uniformly from ``[low, high)`` (torch's global generator, so ``torch.manual_seed``
    fixes them)."""
    if beta_range is None:
        return torch.full((h,), float(beta))
    lo, hi = beta_range
    return lo + (hi - lo) * torch.rand(h)


def _detaches_reset(detach_reset: bool, reset_mechanism: str, reset_delay: bool) -> bool:
    """Whether a surrogate model's reset is given no gradient: ``detach_reset`` acts on the zero
    reset in the spike's step only (snnTorch's delayed reset is detached already)."""
    return detach_reset and reset_mechanism == "zero" and not reset_delay


def _leaky(h: int, beta: float, learn_beta: bool, beta_parametrization: str, surrogate_name: str,
           surrogate_param: Optional[float], learn_threshold: bool = False,
           beta_range: Optional[Tuple[float, float]] = None, neuron: str = "lif",
           adapt_decay: float = 0.97, adapt_strength: float = 1.8, reset_mechanism: str = "subtract",
           reset_delay: bool = True, detach_reset: bool = True) -> nn.Module:
    if beta_parametrization not in BETA_PARAMETRIZATIONS:
        raise ValueError(f"beta_parametrization: expected one of {list(BETA_PARAMETRIZATIONS)}, "
                         f"got {beta_parametrization!r}")
    per_neuron = learn_beta or beta_range is not None
    lif: nn.Module
    if neuron == "alif":
        lif = AdaptiveLeaky(h, initial_decays(h, beta, beta_range), adapt_decay, adapt_strength,
                            _spike_grad(surrogate_name, surrogate_param), learn_beta=learn_beta)
    else:
        cls = _DetachedZeroResetLeaky if _detaches_reset(detach_reset, reset_mechanism, reset_delay) else snn.Leaky
        lif = cls(beta=initial_decays(h, beta, beta_range) if per_neuron else beta, learn_beta=learn_beta,
                        threshold=torch.ones(h) if learn_threshold else 1.0, learn_threshold=learn_threshold,
                        spike_grad=_spike_grad(surrogate_name, surrogate_param), reset_mechanism=reset_mechanism,
                        reset_delay=reset_delay)
    if learn_beta and beta_parametrization == "sigmoid":
        if beta_range is None and not 0.0 < float(beta) < 1.0:
            raise ValueError(f"beta: expected a number in (0, 1) with beta_parametrization='sigmoid', got {beta}")
        parametrize.register_parametrization(lif, "beta", SigmoidBeta())
    return lif


def _run_leaky(lif: nn.Module, cur: torch.Tensor) -> torch.Tensor:
    if isinstance(lif, AdaptiveLeaky):
        return lif(cur)
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
    readout : {"sum", "li_mean", "li_max"}
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
    learn_beta : bool
        Learn one membrane decay per hidden neuron (starting at ``beta``; snnTorch's
        ``learn_beta`` with a per-neuron tensor), i.e. heterogeneous time constants.
    learn_threshold : bool
        Learn one firing threshold per hidden neuron (starting at 1; snnTorch's
        ``learn_threshold`` with a per-neuron tensor). The reset subtracts the neuron's own
        threshold.
    beta_parametrization : {"clamp", "sigmoid"}
        With ``learn_beta``: ``"clamp"`` learns ``beta`` itself, clipped to ``[0, 1]`` by the
        neuron (snnTorch's behaviour); ``"sigmoid"`` learns its logit (:class:`SigmoidBeta`), so
        no decay gets stuck at 0 or 1. ``beta`` must then lie in ``(0, 1)``.
    batch_norm : bool
        Normalise each hidden layer's input current with :class:`TimeBatchNorm` (statistics over
        time and batch, learnable scale and shift) before its neurons, as the DCLS models.
    beta_range : (float, float), optional
        Heterogeneous initial decays: each hidden neuron's decay is drawn uniformly from
        ``[low, high)`` instead of being ``beta`` (Perez-Nieves et al. 2021, "Neural
        heterogeneity promotes robust learning"). Learned with ``learn_beta``, fixed otherwise.
        ``beta`` is then unused (``beta_out`` still sets the readout's decay).
    neuron : {"lif", "alif"}
        Hidden neurons: snnTorch's ``Leaky`` (``"lif"``) or LIF neurons with an adaptive
        threshold (``"alif"``, :class:`~snn_delays_ext.train.AdaptiveLeaky`, Bellec et al. 2018;
        not with ``learn_threshold``; no NIR node exists for them).
    adapt_decay, adapt_strength : float
        With ``neuron="alif"``: the adaptation trace's decay per step ``rho`` and the threshold
        rise ``b`` (threshold ``1 + b a``, ``a`` the ``(1 - rho)``-normalised spike trace).
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
                 surrogate: str = "atan", delay_init: Union[str, float] = "uniform",
                 interpolation: str = "triangle", dropout: float = 0.0, learn_beta: bool = False,
                 batch_norm: bool = False, beta_parametrization: str = "clamp",
                 surrogate_param: Optional[float] = None, learn_threshold: bool = False,
                 beta_range: Optional[Sequence[float]] = None, neuron: str = "lif",
                 adapt_decay: float = 0.97, adapt_strength: float = 1.8, reset_mechanism: str = "subtract",
                 reset_delay: bool = True, detach_reset: bool = True) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {list(READOUTS)}, got {readout!r}")
        check_neuron(neuron, learn_threshold, reset_mechanism, reset_delay)
        check_bool("detach_reset", detach_reset)
        for name, flag in (("delays", delays), ("output_delays", output_delays), ("learn_beta", learn_beta),
                           ("learn_threshold", learn_threshold)):
            check_bool(name, flag)
        decay_range = check_beta_range(beta_range, open_interval=learn_beta and beta_parametrization == "sigmoid")
        self.readout, self.beta_out = readout, float(beta_out)
        self.drop = _dropout(dropout)
        sizes = [n_inputs] + list(hidden)

        def lin(a: int, b: int, with_delay: bool) -> nn.Module:
            if with_delay:
                return DelayedLinear(a, b, max_delay, delay_type=delay_type, delay_init=delay_init,
                                     interpolation=interpolation)
            return nn.Linear(a, b)

        self.linears = nn.ModuleList(lin(a, b, delays) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(_norm(batch_norm, h) for h in hidden)
        self.lifs = nn.ModuleList(_leaky(h, beta, learn_beta, beta_parametrization, surrogate, surrogate_param,
                                         learn_threshold, decay_range, neuron, adapt_decay, adapt_strength,
                                         reset_mechanism, reset_delay, detach_reset)
                                  for h in hidden)
        self.out = lin(sizes[-1], n_classes, delays and output_delays)

    def forward(self, x: torch.Tensor, record: bool = False):
        spikes: List[torch.Tensor] = []
        h = x
        for lin, norm, lif in zip(self.linears, self.norms, self.lifs):
            h = _run_leaky(lif, norm(lin(h)))
            spikes.append(h)
            h = self.drop(h)
        logits = readout_logits(self.out(h), self.readout, self.beta_out)
        return (logits, spikes) if record else logits


class RecurrentSNN(nn.Module):
    """DelRec-style recurrent network: ``[Linear -> DelayedRecurrentLeaky] x L -> Linear``,
    output summed over time; with ``delays=False`` the recurrent layers are ``snntorch.RLeaky``
    semantics (every recurrent lag 1, delays fixed).

    Parameters
    ----------
    n_inputs, hidden, n_classes, max_delay, delays, readout, beta_out, dropout, batch_norm
        As in :class:`FeedForwardSNN`.
    reset_mechanism, reset_delay, detach_reset
        As in :class:`FeedForwardSNN` (DelRec: subtract, one step later; ``detach_reset`` acts
        on the zero reset in the spike's step only, as there).
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
                 reset_delay: bool = True, detach_reset: bool = True) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {list(READOUTS)}, got {readout!r}")
        check_bool("detach_reset", detach_reset)
        self.readout, self.beta_out = readout, float(beta_out)
        self.drop = _dropout(dropout)
        sizes = [n_inputs] + list(hidden)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(_norm(batch_norm, h) for h in hidden)
        self.recs = nn.ModuleList(
            DelayedRecurrentLeaky(beta, h, max_delay, delay_type=delay_type, spike_grad=_spike_grad(surrogate, surrogate_param),
                                  delay_init="half_normal" if delays else 1.0, delay_std=delay_std,
                                  learn_delays=delays, reset_mechanism=reset_mechanism, reset_delay=reset_delay,
                                  detach_reset=_detaches_reset(detach_reset, reset_mechanism, reset_delay))
            for h in hidden
        )
        self.out = nn.Linear(sizes[-1], n_classes)

    def forward(self, x: torch.Tensor, record: bool = False):
        spikes: List[torch.Tensor] = []
        h = x
        for lin, norm, rec in zip(self.linears, self.norms, self.recs):
            h, _ = rec(norm(lin(h)))
            spikes.append(h)
            h = self.drop(h)
        logits = readout_logits(self.out(h), self.readout, self.beta_out)
        return (logits, spikes) if record else logits


#: Defaults of the training options that some model families do not have (``TrainConfig``'s)
_OPTION_DEFAULTS: Dict[str, object] = {"learn_beta": False, "learn_threshold": False, "beta_range": None,
                                       "neuron": "lif", "batch_norm": False, "dropout": 0.0, "tau_out": None,
                                       "reg_strength": 0.0, "reset_mechanism": "subtract", "reset_delay": True,
                                       "detach_reset": True}


def refuse_options(cfg: object, reasons: Dict[str, str]) -> None:
    """Raise a ``ValueError`` for the first option in ``reasons`` that ``cfg`` sets away from its
    default: ``"<name>: <reason>; expected <default>, got <value>"``. Model builders call it so
    that an option their model does not have is refused, not silently ignored.

    >>> from snn_delays_ext.train import TrainConfig
    >>> try:
    ...     refuse_options(TrainConfig(neuron="alif"), {"neuron": "this model has LIF neurons only"})
    ... except ValueError as e:
    ...     print(e)
    neuron: this model has LIF neurons only; expected 'lif', got 'alif'
    """
    for name, reason in reasons.items():
        default = _OPTION_DEFAULTS[name]
        value = getattr(cfg, name, default)
        if value != default:
            raise ValueError(f"{name}: {reason}; expected {default!r}, got {value!r}")


def _refuse_eventprop_only(cfg: object) -> None:
    """Surrogate-gradient models have no spike-count regulariser and no readout time constant in
    steps (they have ``beta_out``): refuse them, not ignore them."""
    refuse_options(cfg, {
        "reg_strength": "the spike-count regulariser acts in the EventProp backward pass (models "
                        "'eventprop-ff', 'eventprop-rec')",
        "tau_out": "the readout time constant of the EventProp models (here: beta_out)",
    })


def _ff(delays: bool) -> ModelBuilder:
    def build(n_in: int, n_out: int, cfg) -> nn.Module:
        _refuse_eventprop_only(cfg)
        return FeedForwardSNN(
            n_in, cfg.hidden, n_out, max_delay=cfg.max_delay, delays=delays, delay_type=cfg.delay_type,
            output_delays=cfg.output_delays, beta=cfg.beta, beta_out=cfg.beta_out, readout=cfg.readout,
            surrogate=cfg.surrogate, delay_init=cfg.delay_init, interpolation=cfg.interpolation,
            dropout=cfg.dropout, learn_beta=cfg.learn_beta, batch_norm=cfg.batch_norm,
            beta_parametrization=cfg.beta_parametrization, surrogate_param=cfg.surrogate_param,
            learn_threshold=getattr(cfg, "learn_threshold", False), beta_range=getattr(cfg, "beta_range", None),
            neuron=getattr(cfg, "neuron", "lif"), adapt_decay=getattr(cfg, "adapt_decay", 0.97),
            adapt_strength=getattr(cfg, "adapt_strength", 1.8),
            reset_mechanism=getattr(cfg, "reset_mechanism", "subtract"), reset_delay=getattr(cfg, "reset_delay", True),
            detach_reset=getattr(cfg, "detach_reset", True),
        )
    return build


def _rec(delays: bool) -> ModelBuilder:
    def build(n_in: int, n_out: int, cfg) -> nn.Module:
        _refuse_eventprop_only(cfg)
        refuse_options(cfg, {
            "learn_beta": "the recurrent presets keep one fixed decay per layer (DelRec)",
            "learn_threshold": "the recurrent presets keep the threshold 1 (DelRec)",
            "beta_range": "the recurrent presets keep one fixed decay per layer (DelRec)",
            "neuron": "the recurrent presets use DelayedRecurrentLeaky's LIF neurons",
        })
        dtype = cfg.delay_type if cfg.delay_type in ("axonal", "synaptic") else "axonal"
        return RecurrentSNN(
            n_in, cfg.hidden, n_out, max_delay=cfg.max_delay, delays=delays, beta=cfg.beta,
            readout=cfg.readout, beta_out=cfg.beta_out, surrogate=cfg.surrogate,
            delay_std=cfg.delay_std, delay_type=dtype, dropout=cfg.dropout, batch_norm=cfg.batch_norm,
            surrogate_param=cfg.surrogate_param, reset_mechanism=getattr(cfg, "reset_mechanism", "subtract"),
            reset_delay=getattr(cfg, "reset_delay", True), detach_reset=getattr(cfg, "detach_reset", True),
        )
    return build


register_model("ff-delays", _ff(True), "feed-forward: DelayedLinear + snntorch.Leaky (surrogate BPTT)")
register_model("ff-nodelay", _ff(False), "feed-forward baseline: nn.Linear + snntorch.Leaky, no delays")
register_model("delrec", _rec(True), "DelRec-style recurrent: Linear + DelayedRecurrentLeaky (axonal delays)")
register_model("rec-nodelay", _rec(False), "recurrent baseline: Linear + RLeaky-equivalent (all lags 1, fixed)")


def _eventprop(recurrent: bool) -> ModelBuilder:
    def build(n_in: int, n_out: int, cfg) -> nn.Module:
        # surrogate-model options that the event-based layers do not have: refuse, not ignore
        refuse_options(cfg, {
            "dropout": "the EventProp presets have no dropout (event-based forward)",
            "learn_beta": "the EventProp presets use fixed tau_syn/tau_mem",
            "learn_threshold": "the EventProp presets use the threshold 1",
            "beta_range": "the EventProp presets use fixed tau_syn/tau_mem",
            "neuron": "the EventProp presets use current-based LIF neurons",
            "batch_norm": "the EventProp presets have no batch norm (exact event-based gradients)",
            "reset_mechanism": "the EventProp neurons reset to 0 in the step of the spike (as NIR's CubaLIF)",
            "reset_delay": "the EventProp neurons reset to 0 in the step of the spike (as NIR's CubaLIF)",
            "detach_reset": "the EventProp gradient is exact, not a surrogate through the reset",
        })
        return EventPropSNN(
            n_in, list(cfg.hidden), n_out, max_delay=cfg.max_delay, recurrent=recurrent,
            tau_syn=float(cfg.tau_syn), tau_mem=float(cfg.tau_mem), tau_out=cfg.tau_out,
            readout=cfg.readout, delay_init=cfg.delay_init, output_delays=cfg.output_delays,
            weight_mean=cfg.weight_mean, weight_std=cfg.weight_std, backward="eventprop",
            reg_strength=float(cfg.reg_strength), reg_target=float(cfg.reg_target),
        )
    return build


register_model("eventprop-ff", _eventprop(False),
               "EventProp feed-forward: delayed current-based LIF layers + LI readout (exact gradients)")
register_model("eventprop-rec", _eventprop(True),
               "EventProp recurrent: DelayedRecurrentSynaptic layers (ff + recurrent delays) + LI readout")
