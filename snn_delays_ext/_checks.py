"""Argument validation shared by every public entry point.

Every check raises a :class:`ValueError` or :class:`TypeError` whose message names the
argument, the expected value and the received value. Shapes, dtypes and devices are always
checked (they cost nothing: no tensor data is read). Value checks, which read tensor data
(finiteness of inputs and delays), follow :func:`set_validation`: by default they run on CPU
tensors and are skipped on accelerators, where reading a flag back would synchronise the host
with the device on every call; they are also skipped while :func:`torch.compile` traces (a
data-dependent branch would break the graph), on tensors without data (``device="meta"``, fake
tensors) and inside ``torch.func`` transforms.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from typing import Iterable, Optional, Sequence, Tuple, Union

import torch

__all__ = [
    "as_real",
    "check_bool",
    "check_choice",
    "check_int",
    "check_max_delay",
    "check_module",
    "check_nonneg_float",
    "check_tensor",
    "check_finite",
    "check_same_device",
    "has_data",
    "is_compiling",
    "is_functorch_wrapped",
    "reads_values",
    "set_validation",
    "validation_mode",
]

#: ``True``: value checks everywhere; ``False``: nowhere; ``"auto"``: on CPU tensors only.
_VALIDATE_VALUES: Union[bool, str] = "auto"


def set_validation(enabled: Union[bool, str]) -> None:
    """Choose where the data-dependent input checks (NaN and infinity in inputs and delays) run.

    Parameters
    ----------
    enabled : bool or {"auto"}
        ``"auto"`` (the default): check CPU tensors, skip the checks on CUDA and other
        accelerators (there, reading the answer back would make the host wait for the device at
        every call, every time step in step mode). ``True``: check on every device (a debugging
        mode on CUDA: one host-device synchronisation per check). ``False``: never check (saves
        one pass over the input on CPU too).

    Notes
    -----
    Shapes, dtypes and devices are checked whatever this says. Where value checks are skipped,
    a NaN input gives NaN outputs, as in PyTorch's own layers.

    Examples
    --------
    >>> import snn_delays_ext
    >>> snn_delays_ext.set_validation(True)      # also on CUDA (synchronises)
    >>> snn_delays_ext.set_validation("auto")    # the default
    """
    global _VALIDATE_VALUES
    if isinstance(enabled, str):
        if enabled != "auto":
            raise ValueError(f"enabled: expected True, False or 'auto', got {enabled!r}")
    else:
        enabled = check_bool("enabled", enabled)
    _VALIDATE_VALUES = enabled


def validation_mode() -> Union[bool, str]:
    """Return where value checks run: ``True``, ``False`` or ``"auto"`` (see :func:`set_validation`)."""
    return _VALIDATE_VALUES


def has_data(x: torch.Tensor) -> bool:
    """Whether ``x`` holds values that can be read: ``False`` for ``meta`` and fake tensors
    (shape propagation, ``torch.compile`` tracing) and ``torch.func`` wrappers."""
    if x.device.type == "meta" or is_compiling() or is_functorch_wrapped(x):
        return False
    fake = getattr(getattr(torch, "_subclasses", None), "FakeTensor", None)
    return not (fake is not None and isinstance(x, fake))


def reads_values(x: torch.Tensor) -> bool:
    """Whether the value checks of :func:`set_validation` run for ``x`` (its device, the mode,
    and :func:`has_data`)."""
    mode = _VALIDATE_VALUES
    if mode is False or (mode == "auto" and x.device.type != "cpu"):
        return False
    return has_data(x)


def is_compiling() -> bool:
    """Return ``True`` while ``torch.compile`` / dynamo traces the calling code."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and hasattr(compiler, "is_compiling"):
        return bool(compiler.is_compiling())
    return False  # pragma: no cover - torch < 2.3


def is_functorch_wrapped(x: torch.Tensor) -> bool:
    """Whether ``x`` is a ``torch.func`` (functorch) wrapper, batched (``vmap``) or
    gradient-tracking (``grad``, ``jacrev``); never while ``torch.compile`` traces."""
    if is_compiling():
        return False
    fn = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(fn(x)) if fn is not None else False


def _is_bool(value: object) -> bool:
    """``True`` for Python and NumPy booleans (neither counts as a number here)."""
    if isinstance(value, bool):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.bool_)


def check_int(name: str, value: object, minimum: Optional[int] = None) -> int:
    """Check that ``value`` is an integer (not a bool) no smaller than ``minimum``.

    Anything :func:`operator.index` accepts passes (Python ints, NumPy integer scalars such as
    ``np.int64``, one-element integer tensors); the value is returned as a Python ``int``.
    """
    if _is_bool(value):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r})")
    if isinstance(value, torch.Tensor) and (value.numel() != 1 or value.is_floating_point()
                                            or value.dtype == torch.bool):
        raise TypeError(f"{name}: expected an int, got a tensor of shape {tuple(value.shape)} "
                        f"and dtype {value.dtype}")
    try:
        value = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} ({value!r})") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


#: The largest delay range a layer takes (lags are 32-bit in the kernels; a buffer of this many
#: steps could not be held anyway).
MAX_DELAY_LIMIT = 2**30


def check_max_delay(value: object, name: str = "max_delay", minimum: int = 1) -> int:
    """Check a delay range: an int in ``[minimum, 2**30)`` (``MAX_DELAY_LIMIT``).

    >>> check_max_delay(25)
    25
    >>> try:
    ...     check_max_delay(2**64)
    ... except ValueError as e:
    ...     print(e)
    max_delay: expected an int in [1, 2**30), got 18446744073709551616
    """
    value = check_int(name, value, minimum=minimum)
    if value >= MAX_DELAY_LIMIT:
        raise ValueError(f"{name}: expected an int in [{minimum}, 2**30), got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Check that ``value`` is a Python ``bool`` (not an int such as ``1``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} ({value!r})")
    return value


def check_module(name: str, value: object) -> "torch.nn.Module":
    """Check that ``value`` is a :class:`torch.nn.Module`."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name}: expected a torch.nn.Module, got {type(value).__name__}")
    return value


def as_real(name: str, value: object, expected: str) -> float:
    """``value`` as a ``float`` if it is a real number (Python, NumPy; not a bool), else a
    :class:`TypeError` ``"{name}: expected {expected}, got ..."``. Range checks are the caller's."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__} ({value!r})")
    return float(value)


def _check_real(name: str, value: object, positive: bool) -> float:
    bound = "> 0" if positive else ">= 0"
    value = as_real(name, value, f"a float {bound}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: expected a finite float {bound}, got {value}")
    return value


def check_nonneg_float(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number >= 0 and return it as a float."""
    return _check_real(name, value, positive=False)


def check_positive_float(name: str, value: object) -> float:
    """Check that ``value`` is a finite real number > 0 and return it as a float."""
    return _check_real(name, value, positive=True)


def check_fraction(name: str, value: object, what: str = "a number") -> float:
    """Check that ``value`` is a finite real number in ``[0, 1)`` (a dropout probability, a
    relative change) and return it as a float; ``what`` names it in the error."""
    value = check_nonneg_float(name, value)
    if value >= 1.0:
        raise ValueError(f"{name}: expected {what} in [0, 1), got {value}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_tensor(
    name: str,
    x: object,
    *,
    ranks: Iterable[int],
    last_dim: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Check type, rank, size of the last dimension, floating dtype and device of ``x``.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    x : object
        The value to check.
    ranks : iterable of int
        Accepted numbers of dimensions.
    last_dim : int, optional
        Expected size of the last (feature) dimension.
    dtype : torch.dtype, optional
        Expected dtype (the dtype of the layer's parameters).
    device : torch.device, optional
        Expected device (the device of the layer's parameters).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    ranks = tuple(ranks)
    if x.dim() not in ranks:
        shapes = " or ".join(_rank_words(r) for r in ranks)
        raise ValueError(
            f"{name}: expected a tensor of rank {' or '.join(map(str, ranks))} ({shapes}), "
            f"got rank {x.dim()} with shape {tuple(x.shape)}"
        )
    if last_dim is not None and x.shape[-1] != last_dim:
        raise ValueError(
            f"{name}: expected {last_dim} features in the last dimension, got {x.shape[-1]} "
            f"(shape {tuple(x.shape)})"
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor, got dtype {x.dtype} "
            "(convert spikes with .float() or .to(dtype))"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(
            f"{name}: expected dtype {dtype} (the layer's parameter dtype), got {x.dtype}; "
            "convert the input or the layer with .to()"
        )
    if device is not None and x.device != device:
        raise ValueError(
            f"{name}: expected a tensor on device {device} (where the layer's parameters are), "
            f"got one on {x.device}; move the input or the layer with .to()"
        )
    return x


def check_operand(name: str, t: object, shape: Tuple[Optional[int], ...], x: torch.Tensor,
                   what: str) -> None:
    """``t`` is a tensor of ``shape`` (``None``: any size) with the dtype and device of ``x``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) or any(e is not None and e != g for e, g in zip(shape, t.shape)):
        dims = ", ".join("*" if e is None else str(e) for e in shape)
        want = f"({dims},)" if len(shape) == 1 else f"({dims})"
        raise ValueError(f"{name}: expected shape {want} ({what}), got {tuple(t.shape)}")
    if t.dtype != x.dtype:
        raise TypeError(f"{name}: expected dtype {x.dtype} (the dtype of x), got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} (the device of x), got one on {t.device}")


def _rank_words(rank: int) -> str:
    return {1: "(F,)", 2: "(B, F) for one step", 3: "(T, B, F) for a sequence"}.get(
        rank, f"{rank}-d"
    )


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise :class:`ValueError` if ``x`` holds NaN or infinity.

    Runs where :func:`reads_values` says so: by default on CPU tensors only (never on
    ``meta``/fake tensors, while compiling or inside ``torch.func`` transforms).
    """
    if not reads_values(x):
        return
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(
            f"{name}: expected finite values, got {n_nan} NaN and {n_inf} infinite "
            f"entries out of {x.numel()}"
        )


def check_same_device(reference_name: str, reference: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Raise :class:`ValueError` if any of ``tensors`` lives on another device than ``reference``."""
    for name, t in tensors.items():
        if t is not None and t.device != reference.device:
            raise ValueError(
                f"{name}: expected a tensor on device {reference.device} (the device of "
                f"{reference_name}), got one on {t.device}"
            )
