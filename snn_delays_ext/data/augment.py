"""Batch augmentation for time-first spike trains."""

from __future__ import annotations

from typing import Optional

import torch

from .._checks import check_int

__all__ = ["random_time_shift"]


def random_time_shift(x: torch.Tensor, max_shift: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Shift every sample of a ``(T, B, F)`` batch in time by its own random whole number of
    steps in ``[-max_shift, max_shift]``; steps shifted in are zero, steps shifted out are lost.

    The usual augmentation for event recordings whose onset varies between trials (e.g. the
    Braille letters, whose first event varies by about 130 ms): the label does not depend on
    when the recording started.

    Parameters
    ----------
    x : torch.Tensor
        Time-first batch ``(T, B, F)``.
    max_shift : int
        Largest shift in steps (0 returns ``x`` unchanged).
    generator : torch.Generator, optional
        CPU random source for the shifts (default: the global one).

    Returns
    -------
    torch.Tensor
        The shifted batch, same shape, dtype and device.

    Examples
    --------
    >>> x = torch.zeros(5, 1, 1); x[2, 0, 0] = 1.0
    >>> y = random_time_shift(x, 2)
    >>> y.sum().item(), y.shape
    (1.0, torch.Size([5, 1, 1]))
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected a (T, B, F) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    max_shift = check_int("max_shift", max_shift, minimum=0)
    if max_shift == 0:
        return x
    T, B, _ = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (B,), generator=generator).to(x.device)
    src = torch.arange(T, device=x.device).unsqueeze(1) - shift.unsqueeze(0)  # (T, B): y[t] = x[t - s]
    valid = (src >= 0) & (src < T)
    out = torch.gather(x, 0, src.clamp(0, T - 1).unsqueeze(2).expand_as(x))
    return out * valid.unsqueeze(2).to(x.dtype)
