"""Which implementation runs the delay ops."""

from __future__ import annotations

import torch

__all__ = ["backend"]


def backend(device: str = "cpu") -> str:
    """Say whether compiled kernels are loaded for a device type.

    Parameters
    ----------
    device : str
        ``"cpu"`` (default) or ``"cuda"``.

    Returns
    -------
    str
        ``"compiled"``: the C++/CUDA custom ops in :mod:`snn_delays_ext.ops` (``torch.ops.
        snn_delays_ext.*``) are loaded for that device; ``"reference"``: only the plain-PyTorch
        path of :mod:`snn_delays_ext.functional` can run there. What one call of a layer runs
        also depends on its settings and input: ``layer.backend(x)`` says it, with the reason
        (the rules are in :mod:`snn_delays_ext.dispatch`).

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
