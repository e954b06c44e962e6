"""Network-level helpers: reset and detach state, split parameters, clamp and round delays."""

from __future__ import annotations

import functools
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from ._delay_layer import DelayLayerMixin
from .leaky_readout import LeakyReadout
from ._checks import check_int, check_module, check_nonneg_float

__all__ = [
    "reset",
    "install_snntorch_reset",
    "detach",
    "delay_layers",
    "delay_parameters",
    "weight_parameters",
    "clamp_delays_",
    "quantize_delays",
    "set_sigma",
]


def delay_layers(net: nn.Module) -> List[nn.Module]:
    """Every delay layer in ``net`` (including ``net`` itself), in ``net.modules()`` order.

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> net = torch.nn.Sequential(sde.DelayedLinear(3, 4, 5), torch.nn.Linear(4, 2))
    >>> [type(m).__name__ for m in sde.delay_layers(net)]
    ['DelayedLinear']
    """
    check_module("net", net)
    return [m for m in net.modules() if isinstance(m, DelayLayerMixin)]


def reset(net: nn.Module) -> nn.Module:
    """Reset the state of every stateful layer in ``net``, at any depth.

    Our delay layers (step buffers, membranes) and snnTorch's neurons (``reset_mem``) are reset
    and detached from the graph. ``snntorch.utils.reset(net)`` resets our layers too (see
    :func:`install_snntorch_reset`), but it resets snnTorch's neurons only by the classes of
    ``net``'s direct children; this function resets each stateful module at any depth.

    Parameters
    ----------
    net : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``net``, for chaining.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> import snn_delays_ext as sde
    >>> net = nn.Sequential(sde.DelayedLinear(3, 4, max_delay=5))
    >>> _ = net(torch.rand(2, 3))
    >>> _ = sde.reset(net)
    """
    check_module("net", net)
    for m in net.modules():
        _reset_module(m)
    return net


def _reset_module(m: nn.Module) -> None:
    """Reset (and detach) the state of one module: a delay layer's ``reset_state``, else a
    ``reset_mem`` (snnTorch neurons and our recurrent layers); stateless modules are left."""
    if hasattr(m, "reset_state") and isinstance(m, DelayLayerMixin):
        m.reset_state()  # type: ignore[operator]
    elif hasattr(m, "reset_mem") and callable(m.reset_mem):
        m.reset_mem()
        for name in ("spk", "mem", "syn"):
            t = getattr(m, name, None)
            if isinstance(t, torch.Tensor):
                setattr(m, name, t.detach())


def _reset_delay_layers(net: nn.Module) -> None:
    """Reset (and detach) the state of every delay layer and ``LeakyReadout`` in ``net``, at any depth."""
    for m in net.modules():
        if isinstance(m, (DelayLayerMixin, LeakyReadout)):
            _reset_module(m)


def _with_delay_layers(original: Callable[..., object]) -> Callable[..., object]:
    """``snntorch.utils.reset`` that also resets our delay layers (what the README promises)."""

    @functools.wraps(original)
    def reset(net: nn.Module, *args: object, **kwargs: object) -> object:
        out = original(net, *args, **kwargs)
        if isinstance(net, nn.Module):
            _reset_delay_layers(net)
        return out

    reset._sde_wrapped = True  # type: ignore[attr-defined]
    return reset


def install_snntorch_reset() -> bool:
    """Make ``snntorch.utils.reset(net)`` reset this library's layers too.

    snnTorch's ``utils.reset`` only knows its own neuron classes (and only looks at ``net``'s
    direct children); it would leave a :class:`~snn_delays_ext.DelayedLinear`'s step buffer or
    an EventProp layer's state in place, so the next sample would start from the previous one's
    delayed spikes. Importing ``snn_delays_ext`` calls this once: ``snntorch.utils.reset`` then
    runs snnTorch's reset and resets every delay layer in ``net`` at any depth. Idempotent.
    A ``from snntorch.utils import reset`` executed *before* ``snn_delays_ext`` is imported keeps
    the unwrapped function; :func:`reset` always does everything.

    Returns
    -------
    bool
        ``True`` if ``snntorch.utils.reset`` is (now) the wrapped one, ``False`` if snnTorch is
        not importable.

    Examples
    --------
    >>> import torch, snntorch.utils, snn_delays_ext as sde
    >>> net = torch.nn.Sequential(sde.DelayedLinear(2, 2, max_delay=3, delay_init=1.0))
    >>> first = net(torch.ones(1, 2))  # the input arrives one step later: zero current now
    >>> _ = snntorch.utils.reset(net)
    >>> torch.equal(net(torch.ones(1, 2)), first)  # without the reset: the stored input's current
    True
    """
    try:
        import snntorch.utils as snn_utils
    except ImportError:  # pragma: no cover - snnTorch is a dependency
        return False
    if not getattr(snn_utils.reset, "_sde_wrapped", False):
        snn_utils.reset = _with_delay_layers(snn_utils.reset)
    return True


def detach(net: nn.Module) -> nn.Module:
    """Detach the state of every stateful layer in ``net`` from the graph (truncated BPTT).

    Detaches our layers' membranes, spikes and delay buffers, and snnTorch neurons' states,
    keeping their values (unlike :func:`reset`).

    Raises
    ------
    TypeError
        ``net`` is not a :class:`torch.nn.Module`.

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> lif = sde.DelayedRecurrentLeaky(0.9, 4, max_delay=5)
    >>> spk, mem = lif(torch.rand(2, 4, requires_grad=True))
    >>> _ = sde.detach(lif)
    >>> lif.mem.requires_grad
    False
    """
    check_module("net", net)
    for m in net.modules():
        if hasattr(m, "detach_state") and callable(m.detach_state):
            m.detach_state()
        else:
            for name in ("spk", "mem", "syn"):
                t = getattr(m, name, None)
                if isinstance(t, torch.Tensor) and name in getattr(m, "_buffers", {}):
                    setattr(m, name, t.detach())
    return net


def delay_parameters(net: nn.Module) -> List[nn.Parameter]:
    """Learnable delay tensors of every delay layer in ``net``.

    Use it to give the delays their own optimiser or learning rate (DelRec uses Adam with
    lr 5e-2 for delays, 1e-3 for weights, no weight decay on delays).

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> net = torch.nn.Sequential(sde.DelayedLinear(3, 4, max_delay=5), torch.nn.Linear(4, 2))
    >>> opt = torch.optim.Adam([
    ...     {"params": sde.weight_parameters(net), "lr": 1e-3},
    ...     {"params": sde.delay_parameters(net), "lr": 5e-2, "weight_decay": 0.0},
    ... ])
    """
    out: List[nn.Parameter] = []
    for m in delay_layers(net):
        out.extend(m.delay_parameters())  # type: ignore[attr-defined]
    return out


def weight_parameters(net: nn.Module) -> List[nn.Parameter]:
    """Every learnable parameter of ``net`` that is not a delay.

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> net = torch.nn.Sequential(sde.DelayedLinear(3, 4, 5), torch.nn.Linear(4, 2))
    >>> len(sde.weight_parameters(net)), len(sde.delay_parameters(net))
    (4, 1)
    """
    delays: Dict[int, bool] = {
        id(p): True
        for m in delay_layers(net)
        for p in m._delay_leaves()  # type: ignore[attr-defined]
    }
    return [p for p in net.parameters() if p.requires_grad and id(p) not in delays]


def clamp_delays_(net: nn.Module) -> None:
    """Clamp every delay in ``net`` to its layer's range, in place (after each optimiser step).

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> layer = sde.DelayedLinear(1, 1, max_delay=5)
    >>> with torch.no_grad():
    ...     _ = layer.delays.fill_(7.3)
    >>> sde.clamp_delays_(layer)
    >>> layer.delays.item()
    5.0
    """
    for m in delay_layers(net):
        m.clamp_delays_()  # type: ignore[attr-defined]


def quantize_delays(net: nn.Module, max_hardware_delay: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Round every delay in ``net`` to whole steps in place (see ``quantize_delays`` of a layer).

    All layers are checked against ``max_hardware_delay`` before any is changed.

    Returns
    -------
    dict
        Module name -> rounded delays.

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> net = torch.nn.Sequential(sde.DelayedLinear(2, 1, 5, delay_init=torch.tensor([[1.5, 2.49]])))
    >>> sde.quantize_delays(net)["0"]
    tensor([[2., 2.]])
    """
    check_module("net", net)
    if max_hardware_delay is not None:
        max_hardware_delay = check_int("max_hardware_delay", max_hardware_delay, minimum=0)
    named = [(n, m) for n, m in net.named_modules() if isinstance(m, DelayLayerMixin)]
    if max_hardware_delay is not None:
        for n, m in named:
            d = m.effective_delays()
            rounded = torch.floor(d + 0.5)
            if bool((rounded > max_hardware_delay).any()):
                raise ValueError(
                    f"max_hardware_delay: layer {n!r} has {int((rounded > max_hardware_delay).sum())} "
                    f"rounded delays above the limit {max_hardware_delay} (largest {int(rounded.max())})"
                )
    return {n: m.quantize_delays(max_hardware_delay) for n, m in named}  # type: ignore[attr-defined]


def set_sigma(net: nn.Module, sigma: float) -> None:
    """Set the interpolation width ``sigma`` of every delay layer in ``net``.

    Examples
    --------
    >>> import torch, snn_delays_ext as sde
    >>> net = torch.nn.Sequential(sde.DelayedLinear(2, 2, 9), sde.DelayedRecurrentLeaky(0.9, 2, 9))
    >>> sde.set_sigma(net, 3.0)
    >>> net[0].sigma, net[1].sigma
    (3.0, 3.0)
    """
    sigma = check_nonneg_float("sigma", sigma)
    for m in delay_layers(net):
        m.sigma = sigma  # type: ignore[attr-defined]
