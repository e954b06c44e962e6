"""``DelayedLeaky``: a delayed linear map followed by snnTorch ``Leaky`` neurons, over a sequence."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple, Union

import snntorch as snn
import torch
from torch import nn

from ._checks import check_bool, check_choice, check_tensor, has_data
from ._delay_layer import DelayInit
from .delayed_linear import DelayedLinear, autocast_input
from .dispatch import Choice
from .functional.leaky_sequence import LeakyParameters, leaky_sequence, leaky_sequence_choice
from .functional.recurrent_leaky import RESET_MECHANISMS

__all__ = ["DelayedLeaky"]


def _check_neuron_value(name: str, value: object, n: int) -> None:
    """``beta`` / ``threshold``: a real number or a tensor of 1 or ``n`` finite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name}: expected a float or a tensor, got {type(value).__name__}")
    if isinstance(value, torch.Tensor):
        if not (value.is_floating_point() or value.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name}: expected a real-valued tensor, got dtype {value.dtype}")
        if value.dim() > 1 or value.numel() not in (1, n):
            raise ValueError(f"{name}: expected a scalar or a ({n},) tensor (one per neuron), got shape "
                             f"{tuple(value.shape)}")
        if has_data(value) and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name}: expected finite values, got {value.flatten()[:4].tolist()}")
    elif not torch.isfinite(torch.tensor(float(value))):
        raise ValueError(f"{name}: expected a finite number, got {value}")


class DelayedLeaky(nn.Module):
    """Delayed linear connections followed by snnTorch ``Leaky`` neurons, over a whole sequence.

    One call computes ``DelayedLinear -> snn.Leaky`` for a time-first input ``(T, B, in)``:

    .. math::

        I_o(t) &= b_o + \\sum_i w_{oi} \\sum_k h_k(l_{oi})\\, x_i(t - k) \\\\
        m_o(t) &= \\beta_o m_o(t-1) + I_o(t) - r_o(t) \\vartheta_o, \\quad
        s_o(t) = \\Theta(m_o(t) - \\vartheta_o)

    with the reset ``r`` of snnTorch's ``reset_mechanism`` and ``reset_delay``. The spikes,
    membranes and gradients are those of the :class:`~snn_delays_ext.DelayedLinear` submodule
    ``linear`` followed by the ``snntorch.Leaky`` submodule ``lif`` called once per step from
    ``init_leaky()``; the neurons run as one compiled op over the sequence
    (:func:`snn_delays_ext.functional.leaky_sequence`) instead of a Python loop of ``T`` calls.
    Each call starts from silence (no spike before ``t = 0``, membranes at rest): the layer keeps
    no state between calls.

    The connections are a real ``DelayedLinear`` (``layer.linear``), so
    :func:`snn_delays_ext.delay_parameters`, :func:`~snn_delays_ext.clamp_delays_`,
    :func:`~snn_delays_ext.set_sigma`, :func:`~snn_delays_ext.quantize_delays`,
    :class:`~snn_delays_ext.SigmaScheduler` and ``export_to_nir`` (a delayed map followed by
    ``nir.LIF``) treat them as any other delay layer; the neurons are a real ``snntorch.Leaky``
    (``layer.lif``) holding ``beta`` and ``threshold`` as snnTorch does (a learnable one is an
    ``nn.Parameter``; ``beta`` is clamped to ``[0, 1]`` when used).

    Parameters
    ----------
    in_features, out_features : int
        Input features and neurons.
    max_delay : int
        Largest delay in time steps (>= 1).
    beta : float or torch.Tensor
        Membrane decay: one value, or a ``(out_features,)`` tensor (one per neuron; learnable
        per neuron with ``learn_beta=True``), as snnTorch's ``Leaky``.
    threshold : float or torch.Tensor
        Firing threshold, one value or one per neuron.
    spike_grad : callable, optional
        Spike function with a surrogate gradient, e.g. ``snntorch.surrogate.fast_sigmoid()``
        (default: snnTorch's ``atan()``). The compiled op runs the surrogates
        :func:`snn_delays_ext.surrogate.surrogate_spec` knows; another runs the plain-PyTorch
        loop, with the same numbers.
    reset_mechanism : {"subtract", "zero", "none"}
        As snnTorch's ``Leaky``.
    reset_delay : bool
        As snnTorch's ``Leaky``: ``True`` resets the membrane one step after the spike,
        ``False`` in the spike's own step.
    learn_beta, learn_threshold : bool
        Make ``beta`` / ``threshold`` learnable, as snnTorch's ``Leaky``.
    delay_type : {"synaptic", "axonal", "dendritic"}
        One delay per connection ``(out, in)``, per input ``(in,)`` or per neuron ``(out,)``.
    bias : bool
        Learn an additive (not delayed) bias on the input current.
    sigma : float
        Extra half-width of the interpolation triangle, ``s = 1 + sigma``.
    interpolation : {"triangle", "round"}
        ``"round"``: integer delays forward, straight-through gradient.
    delay_init : str, float or torch.Tensor
        Initial delays, as :class:`~snn_delays_ext.DelayedLinear`'s.
    delay_std : float, optional
        Standard deviation for ``delay_init="half_normal"``.
    learn_delays : bool
        If ``False`` the delays are fixed.
    device, dtype
        Factory arguments of the parameters.

    Attributes
    ----------
    linear : DelayedLinear
        The connections (``weight``, ``bias``, ``delays``).
    lif : snntorch.Leaky
        The neurons (``beta``, ``threshold``); it is not called itself.

    Examples
    --------
    >>> import torch, snntorch as snn
    >>> from snn_delays_ext import DelayedLeaky
    >>> layer = DelayedLeaky(4, 3, max_delay=10, beta=torch.full((3,), 0.9), learn_beta=True)
    >>> x = (torch.rand(25, 8, 4) < 0.3).float()     # (T, B, in) spikes
    >>> spk, mem = layer(x)
    >>> spk.shape, mem.shape
    (torch.Size([25, 8, 3]), torch.Size([25, 8, 3]))
    >>> cur, m, steps = layer.linear(x), layer.lif.init_leaky(), []   # the same, step by step
    >>> for t in range(25):
    ...     s, m = layer.lif(cur[t], m)
    ...     steps.append(s)
    >>> torch.equal(torch.stack(steps), spk)
    True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        max_delay: int,
        beta: Union[float, torch.Tensor],
        threshold: Union[float, torch.Tensor] = 1.0,
        spike_grad: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        learn_beta: bool = False,
        learn_threshold: bool = False,
        delay_type: str = "synaptic",
        bias: bool = True,
        sigma: float = 0.0,
        interpolation: str = "triangle",
        delay_init: DelayInit = "uniform",
        delay_std: Optional[float] = None,
        learn_delays: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        linear = DelayedLinear(
            in_features, out_features, max_delay, delay_type=delay_type, bias=bias, sigma=sigma,
            interpolation=interpolation, delay_init=delay_init, delay_std=delay_std, learn_delays=learn_delays,
            device=device, dtype=dtype,
        )
        n = linear.out_features
        _check_neuron_value("beta", beta, n)
        _check_neuron_value("threshold", threshold, n)
        if spike_grad is not None and not callable(spike_grad):
            raise TypeError(f"spike_grad: expected a callable spike function or None, got {type(spike_grad).__name__}")
        check_choice("reset_mechanism", reset_mechanism, RESET_MECHANISMS)
        for name, flag in (("reset_delay", reset_delay), ("learn_beta", learn_beta),
                           ("learn_threshold", learn_threshold)):
            check_bool(name, flag)
        self.linear = linear
        # snnTorch's own neuron module holds beta and threshold (buffers, or parameters when learnt)
        factory = {"device": linear.weight.device, "dtype": linear.weight.dtype}
        as_tensor = (lambda v: v.detach().clone().to(**factory)  # noqa: E731
                     if isinstance(v, torch.Tensor) else torch.tensor(float(v), **factory))
        self.lif = snn.Leaky(
            beta=as_tensor(beta), threshold=as_tensor(threshold), spike_grad=spike_grad,
            learn_beta=learn_beta, learn_threshold=learn_threshold, reset_mechanism=reset_mechanism,
            reset_delay=reset_delay,
        ).to(**factory)

    # -- convenience views of the submodules' tensors --------------------------------------------
    @property
    def in_features(self) -> int:
        """Input features."""
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        """Number of neurons."""
        return self.linear.out_features

    @property
    def weight(self) -> torch.Tensor:
        """``linear.weight``, ``(out_features, in_features)``."""
        return self.linear.weight

    @property
    def bias(self) -> Optional[torch.Tensor]:
        """``linear.bias``, ``(out_features,)``, or ``None``."""
        return self.linear.bias

    @property
    def delays(self) -> torch.Tensor:
        """``linear.delays``, in time steps."""
        return self.linear.delays

    @property
    def beta(self) -> torch.Tensor:
        """``lif.beta`` (as stored; clamped to ``[0, 1]`` when used)."""
        return self.lif.beta

    @property
    def threshold(self) -> torch.Tensor:
        """``lif.threshold``."""
        return self.lif.threshold

    def neuron_parameters(self) -> LeakyParameters:
        """The neurons as :class:`~snn_delays_ext.functional.LeakyParameters` (what the forward
        pass hands to :func:`~snn_delays_ext.functional.leaky_sequence`)."""
        lif = self.lif
        return LeakyParameters(lif.beta, lif.threshold, lif.spike_grad, lif.reset_mechanism, bool(lif.reset_delay))

    # -- forward -----------------------------------------------------------------------------
    def _check_input(self, input_: object) -> torch.Tensor:
        return check_tensor("input_", input_, ranks=(3,), last_dim=self.in_features)

    def forward(self, input_: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the layer on a sequence, from silence.

        Parameters
        ----------
        input_ : torch.Tensor
            ``(T, B, in_features)``, time first, in the parameters' dtype and on their device.

        Returns
        -------
        spk : torch.Tensor
            ``(T, B, out_features)`` spikes, in the input's dtype.
        mem : torch.Tensor
            ``(T, B, out_features)`` membranes, each step's as snnTorch's ``Leaky`` returns it.

        Raises
        ------
        TypeError, ValueError
            ``input_`` is not a ``(T, B, in_features)`` floating tensor of the parameters'
            dtype and device (a single ``(B, in)`` step is refused: call ``linear`` and ``lif``
            step by step for a step loop).
        """
        self._check_input(input_)
        return leaky_sequence(self.linear(input_), self.neuron_parameters())

    def backend(self, input_: torch.Tensor) -> Dict[str, Choice]:
        """What a call with ``input_`` runs for the connections and for the neurons, and why
        (:mod:`snn_delays_ext.dispatch`).

        Returns
        -------
        dict
            ``{"connections": Choice, "neurons": Choice}``: the delayed linear map
            (:meth:`DelayedLinear.backend`) and the sequence of ``Leaky`` neurons
            (:func:`~snn_delays_ext.functional.leaky_sequence_choice`).

        Examples
        --------
        >>> layer = DelayedLeaky(3, 2, max_delay=5, beta=0.9)
        >>> sorted(layer.backend(torch.zeros(10, 4, 3)))
        ['connections', 'neurons']
        """
        x = self._check_input(input_)
        amp = autocast_input(x, self.weight, self.in_features)
        if amp is None:  # what forward refuses, outside autocast
            check_tensor("input_", x, ranks=(3,), dtype=self.weight.dtype, device=self.weight.device)
        T, B = x.shape[0], x.shape[1]
        # the neurons' input current (T, B, out), in autocast's dtype under autocast: only its
        # shape, dtype and device matter
        cur = x.new_empty((), dtype=amp if amp is not None else x.dtype).expand(T, B, self.out_features)
        return {"connections": self.linear.backend(x),
                "neurons": leaky_sequence_choice(cur, self.neuron_parameters())[0]}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
