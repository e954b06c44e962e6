"""Which implementation runs the delay ops."""

from __future__ import annotations

__all__ = ["backend"]


def backend() -> str:
    """Name the implementation the layers use for sequence inputs.

    Returns
    -------
    str
        ``"reference"``: the plain-PyTorch path in :mod:`snn_delays_ext.functional`.

    Examples
    --------
    >>> import snn_delays_ext
    >>> snn_delays_ext.backend() in {"reference", "compiled"}
    True
    """
    return "reference"
