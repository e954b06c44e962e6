"""Recognise snnTorch surrogate spike functions so the compiled kernels can reproduce them.

snnTorch surrogates are closures (``snntorch.surrogate.atan(alpha=2.0)`` returns
``atan.<locals>.inner`` whose closure holds ``alpha``). :func:`surrogate_spec` maps a
recognised one to a ``(kind, param)`` pair that the kernels implement; anything else returns
``None`` and the layers fall back to the plain-PyTorch reference path, which calls the function
itself.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional

__all__ = ["SurrogateSpec", "surrogate_spec", "SURROGATE_KINDS"]

#: Kernel codes of the recognised surrogates (``csrc/common.h`` ``SurrogateKind``).
SURROGATE_KINDS: Dict[str, int] = {
    "atan": 0,
    "fast_sigmoid": 1,
    "sigmoid": 2,
    "triangular": 3,
    "straight_through_estimator": 4,
    "heaviside": 5,
}

# closure variable holding the parameter, and its default
_PARAM = {
    "atan": ("alpha", 2.0),
    "fast_sigmoid": ("slope", 25.0),
    "sigmoid": ("slope", 25.0),
    "triangular": ("threshold", 1.0),
    "straight_through_estimator": (None, 0.0),
    "heaviside": (None, 0.0),
}


class SurrogateSpec(NamedTuple):
    """A surrogate the kernels implement: ``kind`` code and its scalar parameter.

    Parameters
    ----------
    name : str
        snnTorch's factory name, e.g. ``"atan"``.
    kind : int
        Kernel code (see :data:`SURROGATE_KINDS`).
    param : float
        ``alpha`` (atan), ``slope`` (sigmoids), ``threshold`` (triangular), else 0.
    """

    name: str
    kind: int
    param: float


def surrogate_spec(fn: Optional[Callable]) -> Optional[SurrogateSpec]:
    """Return the kernel spec of an snnTorch surrogate, or ``None`` if not recognised.

    Parameters
    ----------
    fn : callable or None
        A spike function such as ``snntorch.surrogate.atan(alpha=2.0)``. ``None`` means
        snnTorch's default, ``atan(alpha=2.0)``.

    Returns
    -------
    SurrogateSpec or None
        ``None`` for anything that is not a plain snnTorch surrogate closure with a finite
        numeric parameter (custom functions, ``surrogate_disable``, lambdas...).

    Examples
    --------
    >>> import snntorch.surrogate as sg
    >>> surrogate_spec(sg.fast_sigmoid(slope=10))
    SurrogateSpec(name='fast_sigmoid', kind=1, param=10.0)
    >>> surrogate_spec(lambda x: (x > 0).float()) is None
    True
    """
    if fn is None:
        return SurrogateSpec("atan", SURROGATE_KINDS["atan"], 2.0)
    code = getattr(fn, "__code__", None)
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", "") or ""
    if code is None or not module.startswith("snntorch"):
        return None
    parts = qualname.split(".<locals>.")
    if len(parts) != 2 or parts[1] != "inner" or parts[0] not in SURROGATE_KINDS:
        return None
    name = parts[0]
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    pname, default = _PARAM[name]
    param = default
    if pname is not None:
        if pname not in cells:
            return None
        try:
            value = cells[pname].cell_contents
        except ValueError:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        param = float(value)
        if param != param or param in (float("inf"), float("-inf")):
            return None
    return SurrogateSpec(name, SURROGATE_KINDS[name], param)
