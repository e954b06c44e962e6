"""Width schedules for the interpolation triangle (DelRec's per-epoch shrink)."""

from __future__ import annotations

__all__ = ["delrec_sigma"]


def delrec_sigma(epoch: int, epochs: int, sigma0: float = 10.0, decay: float = 0.95) -> float:
    """DelRec's width schedule ``sigma = sigma0 * decay ** (100 * epoch / epochs)``.

    The triangle half-width is ``s = 1 + sigma``: wide at the start so that a delay sees
    spikes far from its current value, nearly linear interpolation at the end (with
    ``decay = 0.95`` and 100 "percent" of training, ``sigma`` ends at ``0.59 % `` of ``sigma0``).

    Parameters
    ----------
    epoch : int
        Current epoch, from 0.
    epochs : int
        Total number of epochs (>= 1).
    sigma0 : float
        Initial extra half-width (DelRec uses 10).
    decay : float
        Factor per percent of training.

    Returns
    -------
    float

    Examples
    --------
    >>> delrec_sigma(0, 100)
    10.0
    >>> round(delrec_sigma(50, 100), 4)
    0.7694
    """
    if epochs < 1:
        raise ValueError(f"epochs: expected an int >= 1, got {epochs}")
    if epoch < 0:
        raise ValueError(f"epoch: expected an int >= 0, got {epoch}")
    if sigma0 < 0:
        raise ValueError(f"sigma0: expected a float >= 0, got {sigma0}")
    if not 0 < decay <= 1:
        raise ValueError(f"decay: expected a float in (0, 1], got {decay}")
    return float(sigma0) * float(decay) ** (100.0 * epoch / epochs)
