"""Count the bytes autograd keeps for the backward pass of any forward computation.

Every tensor an autograd node saves (``ctx.save_for_backward`` in a custom function or a
``torch.library.register_autograd`` setup, and the inputs/outputs the built-in operators keep)
goes through the pack hook of :func:`torch.autograd.graph.saved_tensors_hooks`. The hook here
records each saved tensor's *storage* (address, size in bytes, dtype) and returns the tensor
unchanged, so the forward computes exactly what it would without the hook.

Several saved tensors may share one storage (views, an output saved by two nodes, a parameter
used at every step): each storage is counted once. A saved tensor is kept alive by the graph
until the backward runs, so two different saved storages can never have the same address
during one forward, which makes the address a sound key. Parameters and the input are counted
too when an operator saves them (they are part of what the backward holds on to); the
``exclude`` argument removes given tensors (e.g. the parameters, which exist anyway) from the
count.

What this does *not* count: temporary buffers inside a backward, the gradients themselves, and
memory held by objects that are not tensors saved through autograd (a custom function that
stores a tensor as ``ctx.foo = t`` instead of ``ctx.save_for_backward(t)`` escapes the count,
which is why the project's ops save through ``save_for_backward``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, Set

import torch

__all__ = ["SavedBytes", "SavedTensorCounter", "saved_tensor_bytes"]


@dataclass
class SavedBytes:
    """What a :class:`SavedTensorCounter` saw.

    Attributes
    ----------
    total_bytes : int
        Bytes of the distinct storages saved for backward (minus excluded ones).
    n_tensors : int
        Number of pack-hook calls (saved tensors, shared storages counted each time).
    n_storages : int
        Number of distinct storages counted in ``total_bytes``.
    by_dtype : dict
        ``total_bytes`` split by dtype name (``"float32"``, ``"uint8"``, ...).
    result : Any
        The return value of the forward callable (for :func:`saved_tensor_bytes`).
    """

    total_bytes: int = 0
    n_tensors: int = 0
    n_storages: int = 0
    by_dtype: Dict[str, int] = field(default_factory=dict)
    result: Any = None

    @property
    def megabytes(self) -> float:
        """``total_bytes`` in MiB."""
        return self.total_bytes / 2**20


def _storage_key(t: torch.Tensor):
    st = t.untyped_storage()
    return (t.device.type, t.device.index, st.data_ptr()), st.nbytes()


class SavedTensorCounter:
    """Context manager counting the storages saved for backward inside its ``with`` block.

    Parameters
    ----------
    exclude : iterable of torch.Tensor, optional
        Tensors whose storages are not counted (e.g. ``model.parameters()``).

    Examples
    --------
    >>> import torch
    >>> w = torch.ones(3, requires_grad=True)
    >>> x = torch.ones(1000)
    >>> with SavedTensorCounter() as c:
    ...     y = (x * w.repeat(1000 // 3 + 1)[:1000]).sum()
    >>> c.stats.total_bytes >= 1000 * 4      # x is saved for the gradient of the product
    True
    >>> with SavedTensorCounter(exclude=[x]) as c2:
    ...     y = (x * w.repeat(1000 // 3 + 1)[:1000]).sum()
    >>> c2.stats.total_bytes < c.stats.total_bytes
    True
    """

    def __init__(self, exclude: Optional[Iterable[torch.Tensor]] = None) -> None:
        self._excluded: Set = set()
        for t in exclude or ():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"exclude: expected tensors, got {type(t).__name__}")
            self._excluded.add(_storage_key(t)[0])
        self._seen: Set = set()
        self.stats = SavedBytes()
        self._ctx: Optional[torch.autograd.graph.saved_tensors_hooks] = None

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.stats.n_tensors += 1
        key, nbytes = _storage_key(t)
        if key[2] == 0 or key in self._seen or key in self._excluded:
            return t
        self._seen.add(key)
        self.stats.n_storages += 1
        self.stats.total_bytes += nbytes
        name = str(t.dtype).replace("torch.", "")
        self.stats.by_dtype[name] = self.stats.by_dtype.get(name, 0) + nbytes
        return t

    @staticmethod
    def _unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    def __enter__(self) -> "SavedTensorCounter":
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        assert self._ctx is not None
        self._ctx.__exit__(*exc)
        self._ctx = None


def saved_tensor_bytes(
    fn: Callable[..., Any],
    *args: Any,
    exclude: Optional[Iterable[torch.Tensor]] = None,
    **kwargs: Any,
) -> SavedBytes:
    """Run ``fn(*args, **kwargs)`` and count the bytes it saves for backward.

    Parameters
    ----------
    fn : callable
        The forward computation (e.g. a model's forward, or forward + loss). It must run with
        gradients enabled for anything to be saved.
    *args, **kwargs
        Passed to ``fn``.
    exclude : iterable of torch.Tensor, optional
        Tensors not to count (e.g. the parameters).

    Returns
    -------
    SavedBytes
        The counts; ``.result`` holds ``fn``'s return value, so the caller can run the backward
        on it afterwards (the saved tensors stay alive in its graph until then).

    Examples
    --------
    >>> import torch
    >>> lin = torch.nn.Linear(100, 10, bias=False)
    >>> x = torch.randn(32, 100)
    >>> s = saved_tensor_bytes(lin, x, exclude=lin.parameters())
    >>> s.total_bytes == 32 * 100 * 4    # the input, saved for the weight gradient
    True
    >>> s.result.shape
    torch.Size([32, 10])
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable, got {type(fn).__name__}")
    with SavedTensorCounter(exclude=exclude) as counter:
        result = fn(*args, **kwargs)
    counter.stats.result = result
    return counter.stats
