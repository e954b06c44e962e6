"""A ring buffer of a signal's last steps, for the step mode of the layers.

Step by step, a delayed layer needs the last ``K`` rows of its delayed side (``K`` about
``max_delay``). Keeping them as a ``(K, B, F)`` tensor and concatenating each new row copies
the whole history every step, and autograd keeps every copy: the cost of a step grows with
``max_delay``. :class:`DelayLine` writes each row once into a ring of ``L >= K + 1`` rows and
reads only the band of lags each delay needs (``W = 2 ceil(s)`` per delay), so a step costs
``O(B F W)`` (per-channel delays) or ``O(B out in W)`` (per-connection delays) whatever
``max_delay`` is.

Gradients. A read at step ``t`` depends on rows pushed up to ``K`` steps earlier, which the ring
has overwritten by the time the backward pass runs, so autograd cannot see that dependency
directly. Each read saves the values it gathered (for the gradient of its taps) and, in the
backward pass, adds the gradient of every row it read into a ring of pending row gradients;
the push of step ``s`` returns, as its row's gradient, what the reads of steps ``s .. s + K``
left there. A zero-size *token* output by every push and read and consumed by the next one
chains the steps, so the backward pass runs them in reverse order and a push always runs after
the reads that depend on it. The numbers are those of the plain history buffer (same gathers,
same sums); the gradient is exact. It cannot be differentiated again (double backward raises;
the layers keep the history-buffer step for short histories, where it costs nothing extra).

Truncated BPTT: :meth:`DelayLine.cut` starts a new graph segment; reads after it still see the
old rows' values but send them no gradient.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, Optional, Tuple

import torch

__all__ = ["DelayLine", "line_pays"]

_NO_DOUBLE_BACKWARD = (
    "snn_delays_ext: double backward (create_graph=True differentiated again) through a layer's "
    "step mode with a long delay history (the ring buffer) is not supported; run the sequence "
    "(T, B, F) in one call, or use the functional step (snn_delays_ext.functional."
    "delayed_linear / recurrent_leaky_step with an explicit past), which autograd "
    "differentiates to any order."
)


#: ``True`` / ``False``: every layer step uses the ring / the history buffer, whatever
#: :func:`line_pays` says (for tests and ``benchmarks/step_mode.py``); ``None``: the rule.
FORCE: Optional[bool] = None


def line_pays(history: int, band: int, *, recurrent: bool = False, connection_outputs: int = 0) -> bool:
    """Whether a :class:`DelayLine` beats the history buffer in a layer's step mode.

    Measured with ``benchmarks/step_mode.py`` (CPU, batch 32, 64 features, 200 steps, forward
    and backward): the ring wins from about ``24 W`` steps of history for per-channel
    feed-forward delays (``W`` taps per delay: ``band``), at any history for per-channel
    recurrent delays (the history buffer also gathers the whole spike history every step),
    and from about ``out W / 2`` steps for per-connection delays (``connection_outputs = out``:
    the ring's read gathers and saves ``out * in * W`` values per step, work the buffer's
    step shares with its copy of the history).
    """
    if FORCE is not None:
        return FORCE
    n = history + 1
    if connection_outputs:
        return 2 * n >= connection_outputs * band and (recurrent or n >= 24 * band)
    return recurrent or n >= 24 * band


class DelayLine:
    """The last rows ``(B, F)`` of a signal in a ring buffer, with banded reads and exact
    gradients (see the module docstring).

    Parameters
    ----------
    history : int
        ``K``: the largest lag a read may ask for.
    row : torch.Tensor
        A ``(B, F)`` tensor giving the batch, features, dtype and device of the rows.
    """

    def __init__(self, history: int, row: torch.Tensor) -> None:
        self.K = int(history)
        self.L = self.K + 1
        B, n = row.shape
        self.batch, self.features = B, n
        # rows stored feature-major, (L, F, B): a gathered (lag, feature) pair is one B-row
        self.values = row.new_zeros((self.L, n, B))
        self.grads: Optional[torch.Tensor] = None  # pending row gradients, same layout
        self._bwd_last: Optional[int] = None  # the step of the last read run backward
        self._route_from: Optional[int] = None  # first step of the segment whose row needs a gradient
        self.t = 0  # steps pushed so far
        self.segment = 0  # first step of the current graph segment
        self.token: Optional[torch.Tensor] = None
        self.graph = False  # a row of this segment (or a read) is in an autograd graph
        self.recent: Deque[torch.Tensor] = deque(maxlen=self.K)  # the last K rows as pushed

    # -- writing -------------------------------------------------------------------------------
    def push(self, row: torch.Tensor) -> None:
        """Append the row of the next step (``(B, F)``)."""
        step = self.t
        if torch.is_grad_enabled() and (row.requires_grad or self.graph):
            self.graph = True
            if row.requires_grad and self._route_from is None:
                self._route_from = step
            self.token = _Push.apply(row, self._token_in(), self, step)
        else:
            with torch.no_grad():
                self.values[step % self.L].copy_(row.t())
        self.recent.append(row)
        self.t += 1

    def cut(self) -> None:
        """Start a new graph segment (truncated BPTT): earlier rows receive no gradient."""
        self.segment = self.t
        self.token = None
        self.graph = False
        self._route_from = None
        self.recent = deque((r.detach() for r in self.recent), maxlen=self.K)

    def history(self) -> torch.Tensor:
        """The last ``K`` rows as a ``(K, B, F)`` tensor, oldest first (zeros before the
        first step), with their autograd graph: what the history-buffer step would hold."""
        rows = list(self.recent)
        missing = self.K - len(rows)
        if missing:
            pad = self.values.new_zeros((missing, self.batch, self.features))
            return torch.cat([pad, torch.stack(rows)]) if rows else pad
        return torch.stack(rows)

    # -- reading -------------------------------------------------------------------------------
    def read_channels(self, start: torch.Tensor, vals: torch.Tensor, lag_offset: int) -> torch.Tensor:
        """``y[b, c] = sum_w vals[c, w] row_{t - lag}[b, c]`` with ``lag = start[c] + w`` and
        ``t`` the step of the last row pushed plus ``lag_offset`` (0: the last row is lag 0;
        1: the next step, which reads lags >= 1 before its row is pushed). Returns ``(B, C)``."""
        return self._read(start, vals, lag_offset, False)

    def read_connections(self, start: torch.Tensor, coef: torch.Tensor, lag_offset: int) -> torch.Tensor:
        """``y[b, o] = sum_{i, w} coef[o, i, w] row_{t - lag}[b, i]`` with
        ``lag = start[o, i] + w``. Returns ``(B, out)``."""
        return self._read(start, coef, lag_offset, True)

    def _read(self, start: torch.Tensor, vals: torch.Tensor, lag_offset: int, connections: bool) -> torch.Tensor:
        now = self.t - 1 + lag_offset
        with torch.no_grad():
            lags = start.unsqueeze(-1) + torch.arange(vals.shape[-1], device=start.device)
            steps = now - lags  # the step each tap reads
            valid = (lags >= 0) & (lags <= self.K) & (steps >= 0) & (steps < self.t)
            feature = (torch.arange(self.features, device=start.device).view(1, -1, 1) if connections
                       else torch.arange(self.features, device=start.device).view(-1, 1))
            flat = (steps % self.L) * self.features + feature  # rows of values.view(L F, B)
            routed = valid & (steps >= self._route_from) if self._route_from is not None else None
        if torch.is_grad_enabled() and (vals.requires_grad or self.graph):
            self.graph = True
            y, self.token = _Read.apply(vals, self._token_in(), self, flat, valid, now, routed, connections)
            return y
        with torch.no_grad():
            return _gather_and_sum(self, flat, valid, vals, connections)[0]

    def _token_in(self) -> torch.Tensor:
        return self.token if self.token is not None else self.values.new_zeros(0)

    # -- the pending row gradients (backward) -------------------------------------------------
    def _add_grad(self, now: int, flat: torch.Tensor, contrib: torch.Tensor, routed: torch.Tensor) -> None:
        """Add the gradient of the rows the read of step ``now`` gathered (``contrib[k]``, a
        ``(B,)`` row for the ring row ``flat[k]``, where ``routed[k]``).

        The backward pass runs the reads in reverse step order, and each push takes (and
        clears) its row's pending gradient before the read of the step before runs, so a ring
        slot is clean when a read first adds to it: the read of step ``now`` is the first to
        touch the oldest step it reads, ``now - K``, whose slot it clears; the first read of a
        backward pass clears the whole ring. No host synchronisation (masks, not indexing)."""
        L, n, B = self.L, self.features, self.batch
        if self.grads is None:
            self.grads = self.values.new_zeros((L, n, B))
        if self._bwd_last != now + 1:  # the first read of this backward pass
            self.grads.zero_()
        else:
            self.grads[(now - self.K) % L].zero_()
        self._bwd_last = now
        contrib = contrib.reshape(-1, B) * routed.reshape(-1, 1).to(contrib.dtype)
        self.grads.view(L * n, B).index_add_(0, flat.reshape(-1), contrib)

    def _take_grad(self, step: int) -> torch.Tensor:
        """The pending gradient of the row of ``step`` (``(B, F)``), and clear it."""
        if self.grads is None:
            return self.values.new_zeros((self.batch, self.features))
        row = self.grads[step % self.L]
        g = row.t().clone()
        row.zero_()
        return g


def _gather_and_sum(line: DelayLine, flat: torch.Tensor, valid: torch.Tensor, vals: torch.Tensor,
                    connections: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The read's output and the gathered rows ``G`` (taps outside the valid range zeroed)."""
    B = line.batch
    rows = line.values.view(line.L * line.features, B)
    g = rows.index_select(0, flat.reshape(-1)).view(tuple(flat.shape) + (B,))
    g = g * valid.unsqueeze(-1).to(g.dtype)
    if connections:  # g (O, I, W, B), vals (O, I, W)
        n_out = vals.shape[0]
        y = torch.bmm(vals.reshape(n_out, 1, -1), g.view(n_out, -1, B)).view(n_out, B).t()
    else:  # g (C, W, B), vals (C, W)
        y = (g * vals.unsqueeze(-1)).sum(1).t()
    return y, g


class _Push(torch.autograd.Function):
    @staticmethod
    def forward(ctx, row, token, line, step):  # type: ignore[override]
        line.values[step % line.L].copy_(row.t())
        ctx.line, ctx.step = line, step
        return row.new_zeros(0)

    @staticmethod
    def backward(ctx, grad_token):  # type: ignore[override]
        with torch.no_grad():
            grad_row = ctx.line._take_grad(ctx.step) if ctx.needs_input_grad[0] else None
        return _first_order(grad_row, grad_token), grad_token, None, None


class _Read(torch.autograd.Function):
    @staticmethod
    def forward(ctx, vals, token, line, flat, valid, now, routed, connections):  # type: ignore[override]
        y, g = _gather_and_sum(line, flat, valid, vals, connections)
        ctx.save_for_backward(vals, g)
        ctx.line, ctx.flat, ctx.now, ctx.routed, ctx.connections = line, flat, now, routed, connections
        return y, vals.new_zeros(0)

    @staticmethod
    def backward(ctx, grad_y, grad_token):  # type: ignore[override]
        with torch.no_grad():
            grad_vals = _Read._backward(ctx, grad_y)
        return _first_order(grad_vals, grad_y), grad_token, None, None, None, None, None, None

    @staticmethod
    def _backward(ctx, grad_y: torch.Tensor) -> Optional[torch.Tensor]:
        vals, g = ctx.saved_tensors
        gy = grad_y.t()  # (C or O, B)
        B = gy.shape[-1]
        if ctx.connections:
            n_out = vals.shape[0]
            grad_vals = torch.bmm(g.view(n_out, -1, B), gy.unsqueeze(-1)).view(vals.shape) \
                if ctx.needs_input_grad[0] else None
        else:
            grad_vals = (g * gy.unsqueeze(1)).sum(-1) if ctx.needs_input_grad[0] else None
        if ctx.routed is not None:  # rows that need a gradient were read
            contrib = (vals.unsqueeze(-1) * gy.view(vals.shape[0], 1, 1, B) if ctx.connections
                       else vals.unsqueeze(-1) * gy.unsqueeze(1))  # (O, I, W, B) / (C, W, B)
            ctx.line._add_grad(ctx.now, ctx.flat, contrib, ctx.routed)
        return grad_vals


class _NoDoubleBackward(torch.autograd.Function):
    """Identity whose backward raises: a first-order gradient taken with ``create_graph=True``
    is right, differentiating it again is refused."""

    @staticmethod
    def forward(ctx, t, incoming):  # type: ignore[override]
        return t.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        raise RuntimeError(_NO_DOUBLE_BACKWARD)


def _first_order(t: Optional[torch.Tensor], incoming: torch.Tensor) -> Optional[torch.Tensor]:
    """``t``, marked as not differentiable again when the backward records a graph
    (``incoming``: the gradient the backward received, through which the graph would run)."""
    if t is None or not torch.is_grad_enabled() or not incoming.requires_grad:
        return t
    return _NoDoubleBackward.apply(t, incoming)
