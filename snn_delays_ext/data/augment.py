"""Batch augmentation for time-first spike trains."""

from __future__ import annotations

from typing import Optional

import torch

from .._checks import check_bool, check_fraction, check_int, check_nonneg_float

__all__ = ["random_blend", "random_channel_shift", "random_drop_event", "random_time_shift", "random_time_stretch"]


def _check_batch(x: object) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x: expected a (T, B, F) tensor, got {getattr(x, 'shape', type(x).__name__)}")


def _shift_time(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move sample ``b`` of a ``(T, B, F)`` batch later by ``shift[b]`` whole steps (earlier if
    negative): ``y[t] = x[t - shift]``, zeros shifted in, steps shifted out lost."""
    T = x.shape[0]
    src = torch.arange(T, device=x.device).unsqueeze(1) - shift.unsqueeze(0)  # (T, B)
    valid = (src >= 0) & (src < T)
    out = torch.gather(x, 0, src.clamp(0, T - 1).unsqueeze(2).expand_as(x))
    return out * valid.unsqueeze(2).to(x.dtype)


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
    return _random_shift(x, max_shift, generator, 0)


def _random_shift(x: torch.Tensor, max_shift: object, generator: Optional[torch.Generator], dim: int) -> torch.Tensor:
    """Shift each sample of a ``(T, B, F)`` batch along ``dim`` (0: time, 2: channels) by its own
    random whole number in ``[-max_shift, max_shift]``, zeros shifted in."""
    _check_batch(x)
    max_shift = check_int("max_shift", max_shift, minimum=0)
    if max_shift == 0:
        return x
    shift = torch.randint(-max_shift, max_shift + 1, (x.shape[1],), generator=generator).to(x.device)
    if dim == 0:
        return _shift_time(x, shift)
    n = x.shape[2]
    src = torch.arange(n, device=x.device).unsqueeze(0) - shift.unsqueeze(1)  # (B, F)
    valid = (src >= 0) & (src < n)
    out = torch.gather(x, 2, src.clamp(0, n - 1).unsqueeze(0).expand_as(x))
    return out * valid.unsqueeze(0).to(x.dtype)


def random_channel_shift(x: torch.Tensor, max_shift: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Shift the input channels of every sample of a ``(T, B, F)`` batch by its own random whole
    number in ``[-max_shift, max_shift]``: ``y[:, b, f] = x[:, b, f - shift[b]]``, channels
    shifted in are zero, channels shifted out are lost.

    For inputs whose channels are ordered along a physical axis, such as the cochlear
    frequency channels of SHD and SSC (the "shift" augmentation of the EventProp SHD and SSC
    configurations, there +-40 of the 700 channels).

    Parameters
    ----------
    x : torch.Tensor
        Time-first batch ``(T, B, F)``.
    max_shift : int
        Largest shift in channels (0 returns ``x`` unchanged).
    generator : torch.Generator, optional
        CPU random source for the shifts (default: the global one).

    Returns
    -------
    torch.Tensor
        The shifted batch, same shape, dtype and device.

    Examples
    --------
    >>> x = torch.zeros(2, 1, 5); x[:, 0, 2] = 1.0
    >>> y = random_channel_shift(x, 2)
    >>> y.shape, y.sum().item()
    (torch.Size([2, 1, 5]), 2.0)
    """
    return _random_shift(x, max_shift, generator, 2)


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


def _time_centre(x: torch.Tensor) -> torch.Tensor:
    """Centre of mass in time (steps) of each sample of a ``(T, B, F)`` batch; NaN when empty."""
    per_step = x.sum(2).to(torch.float64)  # (T, B)
    t = torch.arange(x.shape[0], dtype=torch.float64, device=x.device).unsqueeze(1)
    return (t * per_step).sum(0) / per_step.sum(0)


def random_blend(x: torch.Tensor, labels: torch.Tensor, p: float, align: bool = True,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Blend samples of a ``(T, B, F)`` batch with other samples of the same class.

    Each sample is, with probability ``p``, replaced by a blend of itself and a partner drawn at
    random among the *other* samples of the batch with the same label (a sample with no such
    partner is left as it is). The blend takes every ``(step, channel)`` bin from one of the two
    at random (probability 1/2 each), so it holds about half of each sample's events and about as
    many events as either. With ``align`` the partner is first shifted in time (by a whole number
    of steps, zeros shifted in) so that its centre of mass in time falls on the sample's. This is
    close to the "blend" augmentation used with EventProp on the Heidelberg digits (Nowotny,
    Turner and Knight, "Loss shaping enhances exact gradient learning with EventProp in spiking
    neural networks"), here on binned batches: new training samples that stay inside a class,
    for small data sets.

    Parameters
    ----------
    x : torch.Tensor
        Time-first batch ``(T, B, F)`` (event counts, spikes, or any values).
    labels : torch.Tensor
        Integer class labels ``(B,)``, on any device.
    p : float
        Probability that a sample is blended, in ``[0, 1]`` (0 returns ``x`` unchanged).
    align : bool, optional
        Align the partner's centre of mass in time on the sample's (default ``True``).
    generator : torch.Generator, optional
        CPU random source (default: the global one).

    Returns
    -------
    torch.Tensor
        The blended batch, same shape, dtype and device; labels are unchanged.

    Examples
    --------
    >>> x = torch.zeros(6, 2, 1); x[1, 0, 0] = 1.0; x[3, 1, 0] = 1.0
    >>> y = random_blend(x, torch.tensor([4, 4]), 1.0)
    >>> y.shape, float(y.sum()) <= 2.0
    (torch.Size([6, 2, 1]), True)
    """
    _check_batch(x)
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"labels: expected a 1-D integer tensor, got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} of shape {getattr(labels, 'shape', '-')}")
    T, B, F = x.shape
    if labels.numel() != B:
        raise ValueError(f"labels: expected {B} labels (the batch size of x), got {labels.numel()}")
    p = check_nonneg_float("p", p)
    if p > 1.0:
        raise ValueError(f"p: expected a probability in [0, 1], got {p}")
    check_bool("align", align)
    if p == 0.0 or B < 2:
        return x
    lab = labels.cpu()
    same = (lab.unsqueeze(0) == lab.unsqueeze(1)) & ~torch.eye(B, dtype=torch.bool)
    scores = torch.rand(B, B, generator=generator).masked_fill(~same, -1.0)
    partner = scores.argmax(1)  # a uniformly random same-class partner where one exists
    blend = same.any(1) & (torch.rand(B, generator=generator) < p)
    if not bool(blend.any()):
        return x
    pick = torch.rand(T, B, F, generator=generator) < 0.5
    partner_d = partner.to(x.device)
    other = x[:, partner_d, :]
    if align:
        centre = _time_centre(x)
        other = _shift_time(other, torch.round(centre - centre[partner_d]).nan_to_num(0.0).long())
    take_other = (pick & blend.view(1, B, 1)).to(x.device)
    return torch.where(take_other, other, x)
