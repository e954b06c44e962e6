"""Batch augmentation for time-first spike trains."""

from __future__ import annotations

from typing import Optional

import torch

from .._checks import check_fraction, check_int

__all__ = ["random_drop_event", "random_time_shift", "random_time_stretch"]


def _check_batch(x: object) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected a (T, B, F) tensor, got {getattr(x, 'shape', type(x).__name__)}")


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
    _check_batch(x)
    max_shift = check_int("max_shift", max_shift, minimum=0)
    if max_shift == 0:
        return x
    T, B, _ = x.shape
    shift = torch.randint(-max_shift, max_shift + 1, (B,), generator=generator).to(x.device)
    src = torch.arange(T, device=x.device).unsqueeze(1) - shift.unsqueeze(0)  # (T, B): y[t] = x[t - s]
    valid = (src >= 0) & (src < T)
    out = torch.gather(x, 0, src.clamp(0, T - 1).unsqueeze(2).expand_as(x))
    return out * valid.unsqueeze(2).to(x.dtype)


def random_time_stretch(x: torch.Tensor, max_stretch: float,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Stretch or compress every sample of a binned ``(T, B, F)`` batch in time by its own random
    factor ``s`` drawn uniformly from ``[1 - max_stretch, 1 + max_stretch]``.

    The content of step ``t`` moves to step ``floor((t + 0.5) * s)`` and is *added* there, so
    event counts are conserved (compressed steps merge, stretched ones leave empty steps between
    them), as if each event's time had been multiplied by ``s`` before binning; content moved
    past the last step is lost. The binned counterpart of ``tonic.transforms.TimeStretch``: for
    recordings made at varying speed (e.g. a finger sliding over Braille letters).

    Parameters
    ----------
    x : torch.Tensor
        Time-first batch ``(T, B, F)``.
    max_stretch : float
        Largest relative change of duration, in ``[0, 1)`` (0 returns ``x`` unchanged).
    generator : torch.Generator, optional
        CPU random source for the factors (default: the global one).

    Returns
    -------
    torch.Tensor
        The stretched batch, same shape, dtype and device.

    Examples
    --------
    >>> x = torch.zeros(10, 1, 1); x[4, 0, 0] = 1.0
    >>> y = random_time_stretch(x, 0.2)
    >>> y.sum().item(), int(y[:, 0, 0].argmax()) in (3, 4, 5)
    (1.0, True)
    """
    _check_batch(x)
    max_stretch = check_fraction("max_stretch", max_stretch)
    if max_stretch == 0.0:
        return x
    T, B, F = x.shape
    s = 1.0 + max_stretch * (2.0 * torch.rand(B, generator=generator, dtype=torch.float64) - 1.0)
    t = torch.arange(T, dtype=torch.float64)
    dst = torch.floor((t.unsqueeze(1) + 0.5) * s.unsqueeze(0)).long()  # (T, B)
    dst = dst.clamp(max=T).to(x.device)  # row T collects what is lost
    out = torch.zeros(T + 1, B, F, dtype=x.dtype, device=x.device)
    out.scatter_add_(0, dst.unsqueeze(2).expand(T, B, F), x)
    return out[:T]


def random_drop_event(x: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Drop every event of a binned ``(T, B, F)`` batch of event counts independently with
    probability ``p``.

    A bin holding ``n`` events keeps ``Binomial(n, 1 - p)`` of them, which is exactly what
    binning after ``tonic.transforms.DropEvent`` (each event removed with probability ``p``)
    gives; for 0/1 spike trains it is dropout on the input spikes without the ``1 / (1 - p)``
    rescaling. Models the recording noise of event sensors (missed taxel or cochlea events).

    Parameters
    ----------
    x : torch.Tensor
        Time-first batch ``(T, B, F)`` of event counts (non-negative whole numbers, any float
        dtype).
    p : float
        Probability of dropping each event, in ``[0, 1)`` (0 returns ``x`` unchanged).
    generator : torch.Generator, optional
        Random source on ``x``'s device (default: the global one).

    Returns
    -------
    torch.Tensor
        The thinned batch, same shape, dtype and device; no count grows.

    Examples
    --------
    >>> x = torch.full((4, 2, 3), 5.0)
    >>> y = random_drop_event(x, 0.5)
    >>> bool((y <= x).all()), bool((y == y.round()).all())
    (True, True)
    """
    _check_batch(x)
    p = check_fraction("p", p, "a probability")
    if p == 0.0:
        return x
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor of event counts, got dtype {x.dtype}")
    if bool((x < 0).any()) or not bool((x == x.round()).all()):
        raise ValueError("x: expected event counts (non-negative whole numbers); dropping events is undefined "
                         "for graded or negative input such as time-to-first-spike codes")
    keep = torch.full_like(x, 1.0 - p)
    return torch.binomial(x, keep, generator=generator)
