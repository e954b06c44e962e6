"""Which implementation runs the delay ops."""

from __future__ import annotations

import torch

__all__ = ["backend"]


def backend(device: str = "cpu") -> str:
    """Name the implementation the layers use for sequence inputs on a device type.

    Parameters
    ----------
    device : str
        ``"cpu"`` (default) or ``"cuda"``.

    Returns
    -------
    str
        ``"compiled"``: the C++/CUDA custom ops in :mod:`snn_delays_ext.ops` (``torch.ops.
        snn_delays_ext.*``) are loaded for that device; ``"reference"``: the plain-PyTorch path
        in :mod:`snn_delays_ext.functional` (no compiled extension, or none for that device).
        A recurrent layer also takes the reference path for a ``spike_grad`` the kernels do not
        know (see :func:`snn_delays_ext.surrogate.surrogate_spec`) or ``reset_delay=False``.

    Examples
    --------
    >>> import snn_delays_ext
    >>> snn_delays_ext.backend() in {"reference", "compiled"}
    True

    Raises
    ------
    ValueError
        ``device`` is not a device PyTorch knows (e.g. ``"xyz"``).
    """
    from . import ops

    try:
        dev = torch.device(device).type
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: expected a device such as 'cpu' or 'cuda' (or a torch.device), got {device!r}"
        ) from None
    return "compiled" if dev in ops.available_devices() else "reference"
