"""A non-spiking leaky-integrator readout: NIR's ``LI`` neuron as an snnTorch-style module."""

from __future__ import annotations

import numbers
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from ._checks import check_bool, check_tensor, has_data

__all__ = ["LeakyReadout", "leaky_integrate"]


def leaky_integrate(input_: torch.Tensor, beta: Union[float, torch.Tensor],
                    mem: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``mem[t] = beta * mem[t-1] + input[t]`` over a sequence ``(T, B, N)`` or one step ``(B, N)``.

    The update of :class:`LeakyReadout`, as a function (no checks: the module checks). Every
    tensor it makes is on ``input_``'s device, in its dtype.

    Parameters
    ----------
    input_ : torch.Tensor
        ``(T, B, N)`` or ``(B, N)``.
    beta : float or torch.Tensor
        Decay: a number, or a tensor broadcasting against ``(B, N)`` on ``input_``'s device
        (it is cast to ``input_``'s dtype).
    mem : torch.Tensor, optional
        ``(B, N)`` membrane before the first step (``None``: zeros).

    Returns
    -------
    torch.Tensor
        The membrane after each step, shaped as ``input_``.

    Examples
    --------
    >>> leaky_integrate(torch.ones(3, 1, 1), 0.5).flatten().tolist()
    [1.0, 1.5, 1.75]
    """
    if isinstance(beta, torch.Tensor):
        beta = beta.to(input_.dtype)
    v = input_.new_zeros(input_.shape[-2:]) if mem is None else mem
    if input_.dim() == 2:
        return beta * v + input_
    steps = []
    for x in input_.unbind(0):
        v = beta * v + x
        steps.append(v)
    return torch.stack(steps) if steps else input_.new_zeros(input_.shape)


class LeakyReadout(nn.Module):
    r"""Leaky integrator without spikes: ``mem[t] = beta * mem[t-1] + input[t]``.

    The readout of the training CLI's surrogate models (``readout="li_mean"`` and the other
    ``li_*`` readouts integrate the readout current so before reducing it over time), and the
    Euler step of NIR's ``LI`` neuron ``tau dv/dt = -v + r I`` with ``beta = 1 - dt / tau`` and
    ``(dt / tau) r = 1``: :func:`~snn_delays_ext.nir.export_to_nir` writes it as that node and
    :func:`~snn_delays_ext.nir.import_from_nir` reads an ``LI`` node back as this module.

    Parameters
    ----------
    beta : float or torch.Tensor
        Decay per step, in ``[0, 1]``: a number, or one value per neuron (a 1-D tensor, which
        fixes the number of neurons).
    init_hidden : bool
        snnTorch's convention. ``True``: the module keeps the membrane; a call takes the input
        and returns the new membrane; reset it between samples with
        :func:`snn_delays_ext.reset`, ``reset_mem()`` or ``snntorch.utils.reset``. ``False``:
        a call takes the input and the previous membrane (``None``: zeros) and returns the new.

    Notes
    -----
    The input is one step ``(B, N)`` or a whole sequence ``(T, B, N)`` (time first); the output
    has its shape: the membrane after the step, or after every step of the sequence.

    Examples
    --------
    >>> import torch
    >>> from snn_delays_ext import LeakyReadout
    >>> li = LeakyReadout(beta=0.5)
    >>> li(torch.ones(3, 1, 1)).flatten().tolist()     # 1, 0.5 + 1, 0.75 + 1
    [1.0, 1.5, 1.75]
    >>> li(torch.ones(1, 1)).item()                    # the state goes on from the sequence's end
    1.875
    >>> _ = li.reset_mem()
    >>> li(torch.ones(1, 1)).item()
    1.0
    """

    mem: Optional[torch.Tensor]

    def __init__(self, beta: Union[float, torch.Tensor], init_hidden: bool = True) -> None:
        super().__init__()
        self.init_hidden = check_bool("init_hidden", init_hidden)
        if isinstance(beta, torch.Tensor):
            b = beta.detach().clone()
            b = b if b.is_floating_point() else b.to(torch.get_default_dtype())
            if b.dim() > 1:
                raise ValueError(f"beta: expected a number or a 1-D tensor, got shape {tuple(b.shape)}")
        elif isinstance(beta, numbers.Real) and not isinstance(beta, (bool, np.bool_)):
            b = torch.tensor(float(beta), dtype=torch.float64)  # cast to the input's dtype per call
        else:
            raise TypeError(f"beta: expected a number or a tensor, got {type(beta).__name__}")
        if has_data(b) and (not bool(torch.isfinite(b).all()) or bool((b < 0).any()) or bool((b > 1).any())):
            raise ValueError(f"beta: expected values in [0, 1], got {b.tolist()}")
        self.register_buffer("beta", b)
        self.mem = None

    def extra_repr(self) -> str:
        b = self.beta
        shown = f"{b.item():g}" if b.dim() == 0 else f"tensor of {b.numel()}"
        return f"beta={shown}, init_hidden={self.init_hidden}"

    def reset_mem(self) -> "LeakyReadout":
        """Forget the membrane (the next step starts from 0); returns ``self``."""
        self.mem = None
        return self

    def _check_input(self, input_: torch.Tensor) -> None:
        check_tensor("input_", input_, ranks=(2, 3), last_dim=self.beta.numel() if self.beta.dim() == 1 else None,
                     device=self.beta.device)

    def forward(self, input_: torch.Tensor, mem: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Integrate one step or a sequence.

        Parameters
        ----------
        input_ : torch.Tensor
            ``(B, N)`` (one step) or ``(T, B, N)`` (a sequence), floating point.
        mem : torch.Tensor, optional
            ``(B, N)``: the membrane before the first step, with ``init_hidden=False`` only
            (``None``: zeros).

        Returns
        -------
        torch.Tensor
            The membrane after each step, shaped as ``input_``.
        """
        self._check_input(input_)
        if self.init_hidden:
            if mem is not None:
                raise TypeError("mem: init_hidden=True keeps the membrane in the module; do not pass it")
            mem = self.mem
        step_shape = input_.shape[-2:]
        if mem is not None and tuple(mem.shape) != tuple(step_shape):
            hint = ("; call reset_mem() (or snn_delays_ext.reset(net)) before a new batch" if self.init_hidden
                    else "")
            raise ValueError(f"mem: expected shape {tuple(step_shape)} (batch, features), got {tuple(mem.shape)}{hint}")
        out = leaky_integrate(input_, self.beta, mem)
        v = out if input_.dim() == 2 else (out[-1] if out.shape[0] else mem)
        if self.init_hidden:
            self.mem = v
        return out
