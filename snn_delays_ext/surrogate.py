"""Surrogate spike functions: a true triangle, and recognition of snnTorch's for the kernels.

:func:`triangle` is the piecewise-linear surrogate of DelRec and of Bellec et al. (2018)/Esser
et al. (2016), ``max(0, gamma - |u|) / gamma**2``. snnTorch 1.0's ``surrogate.triangular`` is a
different function: its backward returns ``+threshold`` below the threshold and ``-threshold`` at
and above it, everywhere (not a triangle, and not local to the threshold); it stays recognised
here so that layers using it get exactly snnTorch's gradient.

snnTorch surrogates are closures (``snntorch.surrogate.atan(alpha=2.0)`` returns
``atan.<locals>.inner`` whose closure holds ``alpha``). :func:`surrogate_spec` maps a
recognised one to a ``(kind, param)`` pair that the kernels implement; anything else returns
``None`` and the layers fall back to the plain-PyTorch reference path, which calls the function
itself.
"""

from __future__ import annotations

from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch

from ._checks import check_positive_float

__all__ = ["SurrogateSpec", "surrogate_spec", "surrogate_spec_constant", "SURROGATE_KINDS", "SURROGATE_PARAMETERS",
           "TriangleSurrogate", "triangle"]

#: Kernel codes of the recognised surrogates (``csrc/common.h`` ``SurrogateKind``).
SURROGATE_KINDS: Dict[str, int] = {
    "atan": 0,
    "fast_sigmoid": 1,
    "sigmoid": 2,
    "triangular": 3,
    "straight_through_estimator": 4,
    "heaviside": 5,
    "triangle": 6,  # this module's triangle(gamma)
}

# closure variable holding the parameter, and its default
_PARAM = {
    "atan": ("alpha", 2.0),
    "fast_sigmoid": ("slope", 25.0),
    "sigmoid": ("slope", 25.0),
    "triangular": ("threshold", 1.0),
    "straight_through_estimator": (None, 0.0),
    "heaviside": (None, 0.0),
    "triangle": ("gamma", 1.0),
}

#: The keyword argument that sets each recognised factory's parameter (``None``: it has none),
#: e.g. ``snntorch.surrogate.atan(alpha=...)``.
SURROGATE_PARAMETERS: Dict[str, Optional[str]] = {name: p for name, (p, _) in _PARAM.items()}

# where each recognised factory lives (its closures' ``__module__``)
_MODULE = {name: "snntorch" for name in SURROGATE_KINDS}
_MODULE["triangle"] = __name__


class _TriangleSpike(torch.autograd.Function):
    """Heaviside forward (``u > 0``, snnTorch's convention); triangle derivative backward.

    Written with a separate ``setup_context`` and ``generate_vmap_rule`` so that it works under
    ``torch.func`` transforms (``vmap``, ``grad``, ``jacrev``), which snnTorch's own surrogates
    (``forward(ctx, ...)``) do not.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(u: torch.Tensor, gamma: float) -> torch.Tensor:  # type: ignore[override]
        return (u > 0).to(u.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        u, gamma = inputs
        ctx.save_for_backward(u)
        ctx.gamma = gamma

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        g = ctx.gamma
        return grad * (g - u.abs()).clamp_min(0) / (g * g), None


def triangle(gamma: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""Triangle (piecewise-linear) surrogate spike function.

    Forward: the Heaviside step ``u > 0`` of ``u = mem - threshold``, in ``u``'s dtype. Backward:

    .. math:: \frac{\partial S}{\partial u} = \frac{\max(0, \gamma - |u|)}{\gamma^2},

    a triangle of half-width ``gamma`` and unit area, peaking at ``1 / gamma`` on the threshold
    (``gamma = 1``: ``max(0, 1 - |u|)``, the surrogate of DelRec and Bellec et al. 2018). Use it
    as ``spike_grad`` of snnTorch neurons or of :class:`~snn_delays_ext.DelayedRecurrentLeaky`,
    whose compiled kernels implement it.

    Parameters
    ----------
    gamma : float
        Half-width of the triangle, in units of membrane potential (> 0).

    Returns
    -------
    callable
        ``spike(u)``, differentiable through the triangle derivative.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([-1.5, -0.5, 0.0, 0.25, 2.0], requires_grad=True)
    >>> s = triangle()(u)
    >>> s
    tensor([0., 0., 0., 1., 1.], grad_fn=<_TriangleSpikeBackward>)
    >>> s.sum().backward()
    >>> u.grad
    tensor([0.0000, 0.5000, 1.0000, 0.7500, 0.0000])
    """
    return TriangleSurrogate(check_positive_float("gamma", gamma))


class TriangleSurrogate:
    """The spike function :func:`triangle` returns: a picklable callable (a model holding it
    saves with ``torch.save(model)``), recognised by the kernels through its ``gamma``.

    Examples
    --------
    >>> import pickle
    >>> pickle.loads(pickle.dumps(triangle(0.5))).gamma
    0.5
    """

    def __init__(self, gamma: float) -> None:
        self.gamma = float(gamma)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return _TriangleSpike.apply(u, self.gamma)

    def __repr__(self) -> str:
        return f"triangle(gamma={self.gamma:g})"


class SurrogateSpec(NamedTuple):
    """A surrogate the kernels implement: ``kind`` code and its scalar parameter.

    Parameters
    ----------
    name : str
        snnTorch's factory name, e.g. ``"atan"``.
    kind : int
        Kernel code (see :data:`SURROGATE_KINDS`).
    param : float
        ``alpha`` (atan), ``slope`` (sigmoids), ``threshold`` (snnTorch's triangular),
        ``gamma`` (:func:`triangle`), else 0.
    """

    name: str
    kind: int
    param: float


def surrogate_spec(fn: Optional[Callable]) -> Optional[SurrogateSpec]:
    """Return the kernel spec of an snnTorch surrogate, or ``None`` if not recognised.

    Parameters
    ----------
    fn : callable or None
        A spike function such as ``snntorch.surrogate.atan(alpha=2.0)`` or
        :func:`triangle`. ``None`` means
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
    if isinstance(fn, TriangleSurrogate):
        return SurrogateSpec("triangle", SURROGATE_KINDS["triangle"], fn.gamma)
    code = getattr(fn, "__code__", None)
    qualname = getattr(fn, "__qualname__", "")
    module = getattr(fn, "__module__", "") or ""
    if code is None:
        return None
    parts = qualname.split(".<locals>.")
    if len(parts) != 2 or parts[1] != "inner" or parts[0] not in SURROGATE_KINDS:
        return None
    name = parts[0]
    home = _MODULE[name]
    if not (module == home or module.startswith(home + ".")):
        return None
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


def _assume_constant_result(fn: Callable) -> Callable:
    """``torch._dynamo.assume_constant_result`` without importing ``torch._dynamo`` (1.6 s of
    import time): that decorator only marks the function, as here (a test keeps the two equal)."""
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


@_assume_constant_result
def surrogate_spec_constant(fn: Optional[Callable]) -> Optional[Tuple[int, float]]:
    """``(kind, param)`` of :func:`surrogate_spec` (``None`` if not recognised), a constant for
    ``torch.compile``: the spike function does not change inside a compiled graph.

    Examples
    --------
    >>> import snntorch.surrogate as sg
    >>> surrogate_spec_constant(sg.atan(alpha=3.0))
    (0, 3.0)
    """
    spec = surrogate_spec(fn)
    return None if spec is None else (spec.kind, spec.param)
