"""Delayed current-based LIF over a whole sequence: forward, EventProp backward, BPTT reference.

Model (mlGeNN's discrete version of the EventProp neuron, Mészáros, Knight & Nowotny 2025;
Wunderlich & Pehle 2021), per neuron and time step ``t``:

.. math::

    S_t &= \\alpha S_{t-1} + a_t, \\qquad a_t = \\sum_i w_i\\, x_i(t - d_i)
           + \\sum_n r_n\\, z_n(t - e_n) \\\\
    I_t &= c\\, S_t, \\qquad c = \\frac{\\tau_s}{\\Delta t}(1 - \\alpha) \\\\
    U_t &= \\beta V_{t-1} + (1 - \\beta) I_t \\\\
    z_t &= [U_t \\ge \\vartheta], \\qquad V_t = U_t (1 - z_t)

with ``beta = exp(-dt / tau_mem)`` (membrane) and ``alpha = exp(-dt / tau_syn)`` (synapse), named as
in snnTorch's ``Synaptic`` (the paper writes them the other way round),
integer delays ``d`` (feed-forward, ``[0, max_delay]``) and ``e`` (recurrent,
``[1, max_delay]``), obtained by rounding the real-valued delays (halves up). ``S`` is
mlGeNN's ``inSyn``.

Backward (``eventprop_lif``)
----------------------------
The forward pass keeps only the spikes as flat integer indices and, per spike, the voltage rise
of its step ``U_t - V_{t-1} = (1 - beta)(I_t - V_{t-1})`` (the ``I - V`` of the paper, in
per-step units). The backward pass runs the adjoint in reverse time. Its variables are the
sensitivities ``g_U = dL/dU_t`` and ``g_S = dL/dS_t``, i.e. the adjoints ``lambda_V`` and
``lambda_I`` of the paper up to the constant factors ``-tau_m`` and ``-tau_s``; between events
they follow the exact transpose of the discrete forward map

.. math:: g_{V,t} = \\beta g_{U,t+1} + \\partial l / \\partial V_t, \\quad
          g_{S,t} = (1 - \\beta) c\\, g_{U,t} + \\alpha g_{S,t+1},

so between spikes the gradient is exactly the discrete one. At a spike the loss depends on the
spike *time*: with ``dU`` the stored rise, the time shifts by ``-delta U_t / dU``, so

.. math:: g_{U,t} = -\\frac{1}{dU}\\Big[\\frac{\\partial L}{\\partial t_k}
          + \\sum_m r_{mn} G_m(t + e_{mn}) + \\vartheta\\, \\frac{\\partial l}{\\partial V_t}
          - (dU + (1-\\beta)\\vartheta)\\, g_{V,t}\\Big]

(the paper's jump ``lambda_V^- = lambda_V^+ + [theta lambda_V^+ + dl_p/dt_k + sum_m w_mn
(lambda_V - lambda_I)_m(t_k + d_mn) + l_V^- - l_V^+] / (tau_m dV/dt^-)``). The term
``theta dl/dV_t`` is ``l_V^- - l_V^+`` for a loss on the returned membrane: ``V`` drops from
the threshold to 0 at the spike, so a later spike leaves ``V`` at ``theta`` for longer.
``G_m(t) = g_{S,m,t+1} - g_{S,m,t} = (1 - alpha) g_{S,m,t+1} - (1 - beta) c\\, g_{U,m,t}``
is the sensitivity of the loss to the *arrival time* of a unit weight at neuron ``m``: the
change of the loss when the arrival at step ``t`` moves to ``t + 1`` (exact for the discrete
forward to first order in the weight, and exactly the one-step difference for a loss linear in
the membranes of a non-spiking layer; the paper's ``(lambda_I - lambda_V)`` as ``dt -> 0``).
A per-neuron history of ``g_S`` and ``G`` of ``max_delay + 1`` steps is kept and sampled at
``t_k + d`` for every presynaptic spike ``t_k``:

.. math:: \\frac{dL}{dw_{ji}} = \\sum_k g_{S,j}(t_k + d_{ji}), \\quad
          \\frac{dL}{dd_{ji}} = w_{ji} \\sum_k G_j(t_k + d_{ji}), \\quad
          \\frac{dL}{dt_k} = \\sum_j w_{ji} G_j(t_k + d_{ji}).

The last one is returned as the gradient of the input spike tensor (at each input spike, the
sensitivity of the loss to its time in steps; zero elsewhere), so layers chain: an upstream
EventProp layer takes it as ``dL/dt_k`` of its own spikes. In the same convention the
gradient arriving at the output spike tensor is read as ``dL/dt_k`` (see
:func:`~snn_delays_ext.eventprop.first_spike_times`). Delay gradients are in loss per time step.
Memory is ``O(B N (max_delay + 1))`` plus the spikes, independent of ``T``.

Implementations
---------------
``_EventPropLIF`` below is the plain-PyTorch reference (a Python loop over the time
steps). Where the extension is built, :func:`eventprop_lif` runs the compiled ops
``torch.ops.snn_delays_ext.eventprop_lif_forward`` / ``eventprop_lif_backward`` instead
(``snn_delays_ext/csrc/eventprop.cpp``, ``csrc/cuda/eventprop_cuda*``; the choice is
:func:`snn_delays_ext.dispatch.eventprop_backend`'s): the same arithmetic event by event, each
batch element's time loop in native code, the same spikes, gradients and saved tensors. Pass
``backend="reference"`` to force this module's version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from .._checks import (check_max_delay, as_real, check_bool, check_finite, check_int, check_nonneg_float, check_positive_float,
                       has_data)
from ..dispatch import eventprop_backend
from ..functional.delayed_linear import run_delayed_linear
from ..functional.interpolation import delay_taps, round_half_up

__all__ = [
    "EventPropConfig",
    "decays_from_taus",
    "eventprop_lif",
    "lif_sequence_surrogate",
    "rounded_delays",
    "spike_count_planes",
    "synaptic_scale",
]


def spike_count_planes(x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """Split a spike-count sequence into binary planes: ``x = sum_k planes[..., k]``.

    EventProp's event-based forward takes binary spikes; a bin that holds ``c`` spikes is
    ``c`` spikes at the same step, i.e. ones in planes ``1..c``. The planes are concatenated
    along the feature axis (plane ``k`` at features ``k F .. (k+1) F - 1``), so a layer with
    its weights and delays repeated ``K`` times computes exactly the same current.

    Parameters
    ----------
    x : torch.Tensor
        Non-negative integer spike counts ``(T, B, F)`` (floating point).

    Returns
    -------
    planes, K : torch.Tensor, int
        ``(T, B, K F)`` binary spikes and the number of planes ``K = max(1, max count)``.

    Examples
    --------
    >>> x = torch.tensor([[[0.0, 2.0]], [[1.0, 0.0]]])   # (T=2, B=1, F=2)
    >>> planes, K = spike_count_planes(x)
    >>> K, planes[:, 0].tolist()
    (2, [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"input_: expected a floating-point spike tensor, got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    if x.numel() == 0 or not has_data(x):  # no values to read (meta/fake): one plane
        return x, 1
    # the number of planes is data, so the range is read from the device anyway: the value
    # checks (negative, fractional or non-finite counts) come with that one read, on every device
    lo, hi = torch.aminmax(x)
    lo, hi, frac = torch.stack([lo, hi, torch.frac(x).abs().amax()]).tolist()
    finite = math.isfinite(lo) and math.isfinite(hi)
    if not finite:
        check_finite("input_", x)  # says how many NaN / inf (where value checks run)
    if not finite or lo < 0 or frac != 0:
        raise ValueError(
            "input_: EventProp layers take spikes or spike counts per step (non-negative integers); "
            "got other values (e.g. analog intensities such as PS-MNIST pixels: use a surrogate-gradient "
            "model such as 'ff-delays' or 'delrec' for those)"
        )
    K = max(1, int(hi))
    if K == 1:
        return x, 1
    return torch.cat([(x >= k).to(x.dtype) for k in range(1, K + 1)], dim=2), K


def decays_from_taus(tau_syn: float, tau_mem: float, dt: float) -> Tuple[float, float]:
    """Per-step decays ``(alpha, beta) = (exp(-dt/tau_syn), exp(-dt/tau_mem))`` (snnTorch order:
    ``alpha`` synaptic, ``beta`` membrane).

    Examples
    --------
    >>> a, b = decays_from_taus(5.0, 20.0, 1.0)
    >>> round(a, 4), round(b, 4)
    (0.8187, 0.9512)
    """
    for name, v in (("tau_syn", tau_syn), ("tau_mem", tau_mem), ("dt", dt)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name}: expected a finite float > 0, got {v!r}")
    return math.exp(-dt / tau_syn), math.exp(-dt / tau_mem)


def check_decay(name: str, value: object) -> float:
    """A per-step decay: a real number in the open interval ``(0, 1)``."""
    value = as_real(name, value, "a float in (0, 1)")
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name}: expected a decay in (0, 1) (exclusive), got {value}")
    return value


def synaptic_scale(alpha: float) -> float:
    """mlGeNN's current scale ``c = (tau_syn / dt)(1 - alpha)`` for a synaptic decay ``alpha``.

    With it a weight ``w`` injects the same charge ``w tau_syn`` as in continuous time and
    ``c -> 1`` for fine ``dt``.

    Examples
    --------
    >>> round(synaptic_scale(0.8187307530779818), 4)   # tau_syn = 5, dt = 1
    0.9063
    """
    alpha = check_decay("alpha", alpha)
    return (1.0 - alpha) / (-math.log(alpha))


@dataclass(frozen=True)
class EventPropConfig:
    """Constants of a current-based LIF layer (see the module docstring).

    Attributes
    ----------
    alpha : float
        Synaptic decay per step in ``(0, 1)`` (snnTorch ``Synaptic`` naming).
    beta : float
        Membrane decay per step in ``(0, 1)``.
    threshold : float
        Firing threshold; ``math.inf`` gives a non-spiking leaky integrator.
    max_delay : int
        Largest delay in steps.
    syn_scale : float
        Current scale ``c`` (default :func:`synaptic_scale` of ``alpha``).
    min_denominator : float
        Guard for the spike-time jump: the per-step rise ``dU`` at a spike is floored at this
        value (grazing crossings otherwise give huge jumps).
    reg_strength, reg_target : float
        Spike-count regulariser: at each spike of neuron ``i`` in the backward pass
        ``g_U += reg_strength (sum_b n_ib - reg_target B) / B**2`` (the paper's
        ``lambda_V -= k_reg (...)``, ``nu = reg_target`` spikes per example).
    max_spikes : int or None
        Capacity of the compact spike store (spikes per call); exceeding it raises
        ``RuntimeError`` instead of silently dropping spikes.
    record_mem : bool
        Return the membrane sequence (otherwise an empty tensor; saves ``T B N`` floats).
    """

    alpha: float
    beta: float
    threshold: float = 1.0
    max_delay: int = 1
    syn_scale: float = 1.0
    min_denominator: float = 1e-6
    reg_strength: float = 0.0
    reg_target: float = 0.0
    max_spikes: Optional[int] = None
    record_mem: bool = True

    def __post_init__(self) -> None:
        # validate (ValueError/TypeError naming the field) and normalise to Python numbers
        def put(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        put("alpha", check_decay("alpha", self.alpha))
        put("beta", check_decay("beta", self.beta))
        th = as_real("threshold", self.threshold, "a float > 0 (or math.inf)")
        if not th > 0:  # also rejects NaN
            raise ValueError(f"threshold: expected a float > 0 (or math.inf for no spikes), got {th}")
        put("threshold", th)
        put("max_delay", check_max_delay(self.max_delay))
        put("syn_scale", check_positive_float("syn_scale", self.syn_scale))
        put("min_denominator", check_positive_float("min_denominator", self.min_denominator))
        put("reg_strength", check_nonneg_float("reg_strength", self.reg_strength))
        put("reg_target", check_nonneg_float("reg_target", self.reg_target))
        if self.max_spikes is not None:
            put("max_spikes", check_int("max_spikes", self.max_spikes, minimum=1))
        check_bool("record_mem", self.record_mem)

    @property
    def spiking(self) -> bool:
        return math.isfinite(self.threshold)


def rounded_delays(delays: torch.Tensor, max_delay: int, min_delay: int) -> torch.Tensor:
    """Clamp to ``[min_delay, max_delay]`` and round halves up; returns ``int64`` lags.

    Examples
    --------
    >>> rounded_delays(torch.tensor([-1.0, 0.5, 2.49, 7.0]), 5, 0)
    tensor([0, 1, 2, 5])
    """
    if not isinstance(delays, torch.Tensor):
        raise TypeError(f"delays: expected a torch.Tensor, got {type(delays).__name__}")
    max_delay = check_int("max_delay", max_delay, minimum=0)
    min_delay = check_int("min_delay", min_delay, minimum=0)
    if min_delay > max_delay:
        raise ValueError(f"min_delay: expected at most max_delay={max_delay}, got {min_delay}")
    return round_half_up(delays.detach().clamp(float(min_delay), float(max_delay))).long()


def _index_dtype(n: int) -> torch.dtype:
    return torch.int32 if n < 2**31 - 1 else torch.int64


def _group_offsets(steps: torch.Tensor, T: int) -> List[int]:
    counts = torch.bincount(steps, minlength=T) if steps.numel() else torch.zeros(T, dtype=torch.long)
    return [0] + torch.cumsum(counts, 0).tolist()


class _EventPropLIF(torch.autograd.Function):
    """Whole-sequence delayed current-based LIF with the EventProp backward."""

    @staticmethod
    def forward(ctx, x, weight, delays, rec_weight, rec_delays, cfg: EventPropConfig):  # type: ignore[override]
        T, B, F = x.shape
        N = weight.shape[0]
        K = cfg.max_delay + 1
        dev, dt = x.device, x.dtype
        # a: membrane decay (snnTorch beta), b: synaptic decay (snnTorch alpha)
        a, b, c, theta = cfg.beta, cfg.alpha, cfg.syn_scale, cfg.threshold
        recurrent = rec_weight is not None

        d_ff = rounded_delays(delays, cfg.max_delay, 0)
        w_t = weight.detach().t().contiguous()  # (F, N): row i = outgoing weights of input i
        d_t = d_ff.t().contiguous()
        if recurrent:
            d_rec = rounded_delays(rec_delays, cfg.max_delay, 1)
            r_t = rec_weight.detach().t().contiguous()
            e_t = d_rec.t().contiguous()

        # input events (t, b, i), in time order
        ev = x.detach().nonzero()
        in_t, in_b, in_i = ev[:, 0], ev[:, 1], ev[:, 2]
        in_off = _group_offsets(in_t, T)
        col = torch.arange(N, device=dev)

        ring = torch.zeros(K * B * N, dtype=dt, device=dev)  # arrivals, slot (t mod K)
        S = torch.zeros(B, N, dtype=dt, device=dev)
        V = torch.zeros(B, N, dtype=dt, device=dev)
        spk_out = torch.zeros(T, B, N, dtype=dt, device=dev)
        mem_out = torch.zeros(T, B, N, dtype=dt, device=dev) if cfg.record_mem else x.new_zeros(0)
        spike_idx: List[torch.Tensor] = []
        spike_rise: List[torch.Tensor] = []
        n_spikes = 0

        BN, KBN = B * N, K * B * N
        # flat ring offset of (lag, target) per source; slot of step t + lag is (t + lag) mod K
        base_ff = d_t * BN + col
        if recurrent:
            base_rec = e_t * BN + col

        def scatter(t: int, bb: torch.Tensor, src: torch.Tensor, base: torch.Tensor, w_rows: torch.Tensor) -> None:
            flat = (base[src] + (t * BN + bb * N).unsqueeze(1)) % KBN  # (E, N)
            ring.scatter_add_(0, flat.reshape(-1), w_rows[src].reshape(-1))

        for t in range(T):
            e0, e1 = in_off[t], in_off[t + 1]
            if e1 > e0:
                scatter(t, in_b[e0:e1], in_i[e0:e1], base_ff, w_t)
            slot = ring[(t % K) * B * N:(t % K + 1) * B * N].view(B, N)
            S = b * S + slot
            slot.zero_()
            U = a * V + (1.0 - a) * c * S
            if cfg.spiking:
                z = U >= theta
                nz = z.nonzero()
                if nz.numel():
                    n_spikes += nz.shape[0]
                    if cfg.max_spikes is not None and n_spikes > cfg.max_spikes:
                        raise RuntimeError(
                            f"spike buffer overflow: more than max_spikes={cfg.max_spikes} spikes "
                            f"by step {t} of {T}; raise max_spikes (the EventProp gradient would be "
                            "wrong with dropped spikes)"
                        )
                    sb, sn = nz[:, 0], nz[:, 1]
                    spike_idx.append((t * B + sb) * N + sn)
                    spike_rise.append((U - V)[sb, sn])
                    spk_out[t] = z.to(dt)
                    V = torch.where(z, torch.zeros_like(U), U)
                    if recurrent:
                        scatter(t, sb, sn, base_rec, r_t)
                else:
                    V = U
            else:
                V = U
            if cfg.record_mem:
                mem_out[t] = V

        total = T * B * max(N, F)
        idt = _index_dtype(total)
        s_idx = (torch.cat(spike_idx) if spike_idx else torch.zeros(0, dtype=torch.long, device=dev)).to(idt)
        s_rise = torch.cat(spike_rise) if spike_rise else x.new_zeros(0)
        x_idx = ((in_t * B + in_b) * F + in_i).to(idt)
        ctx.cfg = cfg
        ctx.shape = (T, B, F, N)
        ctx.recurrent = recurrent
        # everything the backward needs is saved here (and so counted by saved_tensors_hooks):
        # compact spike indices, the rise per spike, weights and the rounded delays (int16)
        ddt = torch.int16 if cfg.max_delay < 2**15 else torch.int32
        saved = [x_idx, s_idx, s_rise, weight.detach(), d_ff.to(ddt)]
        if recurrent:
            saved += [rec_weight.detach(), d_rec.to(ddt)]
        ctx.save_for_backward(*saved)
        return spk_out, mem_out

    @staticmethod
    def backward(ctx, grad_spk, grad_mem):  # type: ignore[override]
        cfg: EventPropConfig = ctx.cfg
        T, B, F, N = ctx.shape
        K = cfg.max_delay + 1
        saved = ctx.saved_tensors
        x_idx, s_idx, s_rise, weight, d_ff = saved[:5]
        recurrent = ctx.recurrent
        dev, dt = weight.device, weight.dtype
        # a: membrane decay (snnTorch beta), b: synaptic decay (snnTorch alpha)
        a, b, c, theta = cfg.beta, cfg.alpha, cfg.syn_scale, cfg.threshold
        col = torch.arange(N, device=dev)

        x_idx = x_idx.long()
        s_idx = s_idx.long()
        in_i = x_idx % F
        in_b = (x_idx // F) % B
        in_t = x_idx // (F * B)
        sn = s_idx % N
        sb = (s_idx // N) % B
        st = s_idx // (N * B)
        in_off = _group_offsets(in_t, T)
        s_off = _group_offsets(st, T)

        w_t = weight.t().contiguous()
        d_t = d_ff.long().t().contiguous()
        gw_t = torch.zeros(F, N, dtype=dt, device=dev)
        gd_t = torch.zeros(F, N, dtype=dt, device=dev)
        if recurrent:
            rec_weight, d_rec = saved[5], saved[6]
            r_t = rec_weight.t().contiguous()
            e_t = d_rec.long().t().contiguous()
            gr_t = torch.zeros(N, N, dtype=dt, device=dev)
            ge_t = torch.zeros(N, N, dtype=dt, device=dev)
        need_x = ctx.needs_input_grad[0]
        grad_x = torch.zeros(T, B, F, dtype=dt, device=dev) if need_x else None
        has_gs = grad_spk is not None and grad_spk.numel() > 0
        has_gm = grad_mem is not None and grad_mem.numel() > 0

        reg = None
        if cfg.spiking and cfg.reg_strength != 0.0 and s_idx.numel():
            counts = torch.bincount(sn, minlength=N).to(dt)
            reg = cfg.reg_strength * (counts - cfg.reg_target * B) / (B * B)

        hist_gs = torch.zeros(K * B * N, dtype=dt, device=dev)
        hist_G = torch.zeros(K * B * N, dtype=dt, device=dev)
        gU_next = torch.zeros(B, N, dtype=dt, device=dev)
        gS_next = torch.zeros(B, N, dtype=dt, device=dev)
        one_a_c = (1.0 - a) * c

        BN, KBN = B * N, K * B * N
        base_ff = d_t * BN + col
        if recurrent:
            base_rec = e_t * BN + col

        def sample(t: int, bb: torch.Tensor, src: torch.Tensor, base: torch.Tensor):
            flat = ((base[src] + (t * BN + bb * N).unsqueeze(1)) % KBN).reshape(-1)
            E = src.shape[0]
            return hist_gs[flat].view(E, N), hist_G[flat].view(E, N)

        for t in range(T - 1, -1, -1):
            gV = a * gU_next
            if has_gm:
                gV = gV + grad_mem[t]
            gU = gV
            e0, e1 = s_off[t], s_off[t + 1]
            if e1 > e0:
                bb, nn_ = sb[e0:e1], sn[e0:e1]
                tsens = grad_spk[t, bb, nn_] if has_gs else torch.zeros(e1 - e0, dtype=dt, device=dev)
                if recurrent:
                    gs_s, G_s = sample(t, bb, nn_, base_rec)
                    wG = r_t[nn_] * G_s
                    tsens = tsens + wG.sum(1)
                    gr_t.index_add_(0, nn_, gs_s)
                    ge_t.index_add_(0, nn_, wG)
                rise = s_rise[e0:e1]
                gv_s = gV[bb, nn_]
                if has_gm:  # the loss on V jumps with the reset: (l_V^- - l_V^+) = theta dL/dV_t
                    tsens = tsens + theta * grad_mem[t, bb, nn_]
                tsens = tsens - (rise + (1.0 - a) * theta) * gv_s
                jump = -tsens / rise.clamp_min(cfg.min_denominator)
                if reg is not None:
                    jump = jump + reg[nn_]
                gU = gV.clone()
                gU[bb, nn_] = jump
            gS = one_a_c * gU + b * gS_next
            # arrival one step later: dL = w (g_S,t+1 - g_S,t) = w ((1-alpha) g_S,t+1 - (1-beta) c g_U,t)
            G = gS_next - gS
            sl = slice((t % K) * B * N, (t % K + 1) * B * N)
            hist_gs[sl] = gS.reshape(-1)
            hist_G[sl] = G.reshape(-1)
            e0, e1 = in_off[t], in_off[t + 1]
            if e1 > e0:
                bb, ii = in_b[e0:e1], in_i[e0:e1]
                gs_s, G_s = sample(t, bb, ii, base_ff)
                wG = w_t[ii] * G_s
                gw_t.index_add_(0, ii, gs_s)
                gd_t.index_add_(0, ii, wG)
                if need_x:
                    grad_x[t, bb, ii] = wG.sum(1)
            gU_next, gS_next = gU, gS

        gw = gw_t.t() if ctx.needs_input_grad[1] else None
        gd = gd_t.t() if ctx.needs_input_grad[2] else None
        gr = ge = None
        if recurrent:
            gr = gr_t.t() if ctx.needs_input_grad[3] else None
            ge = ge_t.t() if ctx.needs_input_grad[4] else None
        return grad_x, gw, gd, gr, ge, None


def _check_config(config: object) -> None:
    if not isinstance(config, EventPropConfig):
        raise TypeError(f"config: expected an EventPropConfig, got {type(config).__name__}")


def _check_inputs(x, weight, delays, rec_weight, rec_delays, max_delay) -> None:
    for name, t in (("x", x), ("weight", weight), ("delays", delays), ("rec_weight", rec_weight),
                    ("rec_delays", rec_delays)):
        if not isinstance(t, torch.Tensor) and not (t is None and name.startswith("rec_")):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if x.dim() != 3:
        raise ValueError(f"x: expected a (T, B, F) spike sequence of rank 3, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point spike tensor, got dtype {x.dtype}")
    if weight.dim() != 2 or weight.shape[1] != x.shape[2]:
        raise ValueError(
            f"weight: expected shape (N, {x.shape[2]}) matching x's {x.shape[2]} features, "
            f"got {tuple(weight.shape)}"
        )
    if tuple(delays.shape) != tuple(weight.shape):
        raise ValueError(f"delays: expected shape {tuple(weight.shape)} (one per synapse), got {tuple(delays.shape)}")
    if (rec_weight is None) != (rec_delays is None):
        raise ValueError("rec_weight, rec_delays: expected both or neither")
    N = weight.shape[0]
    if rec_weight is not None:
        if tuple(rec_weight.shape) != (N, N):
            raise ValueError(f"rec_weight: expected shape ({N}, {N}), got {tuple(rec_weight.shape)}")
        if tuple(rec_delays.shape) != (N, N):
            raise ValueError(f"rec_delays: expected shape ({N}, {N}), got {tuple(rec_delays.shape)}")
    for name, t in (("weight", weight), ("delays", delays), ("rec_weight", rec_weight), ("rec_delays", rec_delays)):
        if t is None:
            continue
        if t.device != x.device:
            raise ValueError(f"{name}: expected a tensor on device {x.device} (the device of x), got {t.device}")
        if t.dtype != x.dtype:
            raise TypeError(f"{name}: expected dtype {x.dtype} (the dtype of x), got {t.dtype}")
        check_finite(name, t)
    if isinstance(max_delay, bool) or not isinstance(max_delay, int) or max_delay < 1:
        raise ValueError(f"max_delay: expected an int >= 1, got {max_delay!r}")


def eventprop_lif(
    x: torch.Tensor,
    weight: torch.Tensor,
    delays: torch.Tensor,
    rec_weight: Optional[torch.Tensor] = None,
    rec_delays: Optional[torch.Tensor] = None,
    *,
    config: EventPropConfig,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Run a delayed current-based LIF layer over a sequence with the EventProp backward.

    Parameters
    ----------
    x : torch.Tensor
        Binary input spikes ``(T, B, F)`` (0 or 1).
    weight, delays : torch.Tensor
        Feed-forward weights and real-valued delays (steps), both ``(N, F)``.
    rec_weight, rec_delays : torch.Tensor, optional
        Recurrent weights and delays ``(N, N)`` (row: postsynaptic neuron); delays clamped to
        ``[1, max_delay]``.
    config : EventPropConfig
        Decays, threshold (``inf``: leaky integrator), ``max_delay`` and backward options.
    backend : {"auto", "compiled", "reference"}
        ``"compiled"``: the C++/CUDA ops ``eventprop_lif_forward`` / ``eventprop_lif_backward``
        (time loops in native code, same outputs and gradients); ``"reference"``: the plain-PyTorch
        implementation in this module (a Python loop over time steps; slow for long
        sequences); ``"auto"`` (default): compiled where a kernel exists for the device and
        dtype (float32/float64) of ``x``, else the reference (with a one-time warning if the
        extension is not built at all).

    Returns
    -------
    spk, mem : torch.Tensor
        Spikes and (post-reset) membranes ``(T, B, N)`` (``mem`` empty if
        ``config.record_mem`` is ``False``). The gradient flowing into ``spk`` is read as
        ``dL/dt`` of each spike (steps), the one into ``mem`` as ``dL/dV_t``; at a spike step
        the latter also moves the spike time (``V`` jumps from the threshold to 0 there, adding
        ``threshold * dL/dV_t`` to ``dL/dt``, the ``l_V^- - l_V^+`` of Wunderlich & Pehle).

    Examples
    --------
    >>> cfg = EventPropConfig(alpha=0.9, beta=0.8, threshold=1.0, max_delay=3, syn_scale=1.0)
    >>> x = torch.zeros(10, 1, 1); x[0] = 1.0
    >>> w = torch.tensor([[3.0]], requires_grad=True); d = torch.tensor([[2.0]], requires_grad=True)
    >>> spk, mem = eventprop_lif(x, w, d, config=cfg)
    >>> spk[:, 0, 0].nonzero().flatten().tolist()      # arrives at step 2, fires at steps 3, 6
    [3, 6]
    >>> mem[:, 0, 0].sum().backward()
    >>> w.grad.shape, d.grad.shape
    (torch.Size([1, 1]), torch.Size([1, 1]))
    """
    if backend not in ("auto", "compiled", "reference"):
        raise ValueError(f"backend: expected 'auto', 'compiled' or 'reference', got {backend!r}")
    _check_config(config)
    _check_inputs(x, weight, delays, rec_weight, rec_delays, config.max_delay)
    check_finite("x", x)
    if x.numel() and not bool(((x == 0) | (x == 1)).all()):
        raise ValueError("x: expected binary spikes (0 or 1) for the event-based forward, got other values")
    return eventprop_lif_binary(x, weight, delays, rec_weight, rec_delays, config, backend)


def eventprop_lif_binary(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor,
                          rec_weight: Optional[torch.Tensor], rec_delays: Optional[torch.Tensor],
                          config: EventPropConfig, backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`eventprop_lif` for a ``x`` already known to be binary (the planes of
    :func:`spike_count_planes`): the shape checks, not the value checks, which cost as much as
    a tenth of the layer's forward."""
    _check_config(config)
    _check_inputs(x, weight, delays, rec_weight, rec_delays, config.max_delay)
    if eventprop_backend(x, backend).backend == "compiled":
        return _eventprop_lif_compiled(x, weight, delays, rec_weight, rec_delays, config)
    return _EventPropLIF.apply(x, weight, delays, rec_weight, rec_delays, config)


def _eventprop_lif_compiled(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor,
                            rec_weight: Optional[torch.Tensor], rec_delays: Optional[torch.Tensor],
                            c: EventPropConfig) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`eventprop_lif` on the compiled ops (``eventprop_lif_forward`` and, through its
    registered autograd formula, ``eventprop_lif_backward``); ``x`` binary, arguments checked."""
    from .. import ops  # noqa: F401  (registers the ops)

    out = torch.ops.snn_delays_ext.eventprop_lif_forward(
        x.contiguous(), weight, delays, rec_weight, rec_delays, int(c.max_delay), float(c.alpha), float(c.beta),
        float(c.threshold), float(c.syn_scale), float(c.min_denominator), float(c.reg_strength),
        float(c.reg_target), -1 if c.max_spikes is None else int(c.max_spikes), bool(c.record_mem),
    )
    return out[0], out[1]


def lif_sequence_surrogate(
    x: torch.Tensor,
    weight: torch.Tensor,
    delays: torch.Tensor,
    rec_weight: Optional[torch.Tensor] = None,
    rec_delays: Optional[torch.Tensor] = None,
    *,
    config: EventPropConfig,
    spike_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The same discrete dynamics as :func:`eventprop_lif`, differentiated by BPTT.

    Feed-forward delays go through :func:`~snn_delays_ext.functional.delayed_linear`
    (``"round"`` interpolation: the integer lag forward, straight-through gradient), recurrent
    spikes through a future-current buffer; ``spike_fn(U - threshold)`` is a Heaviside with a
    surrogate derivative (default ``snntorch.surrogate.atan()``); the reset is detached as in
    snnTorch. Inputs need not be binary.

    Examples
    --------
    >>> cfg = EventPropConfig(alpha=0.9, beta=0.8, max_delay=3)
    >>> x = torch.zeros(10, 1, 1); x[0] = 1.0
    >>> spk, mem = lif_sequence_surrogate(x, torch.tensor([[3.0]]), torch.tensor([[2.0]]), config=cfg)
    >>> spk[:, 0, 0].nonzero().flatten().tolist()
    [3, 6]
    """
    _check_config(config)
    _check_inputs(x, weight, delays, rec_weight, rec_delays, config.max_delay)
    check_finite("x", x)
    if spike_fn is not None and not callable(spike_fn):
        raise TypeError(f"spike_fn: expected a callable (surrogate spike function) or None, got "
                        f"{type(spike_fn).__name__}")
    if spike_fn is None:
        from snntorch import surrogate

        spike_fn = surrogate.atan()
    T, B, _ = x.shape
    N = weight.shape[0]
    md = config.max_delay
    a, b, c, theta = config.beta, config.alpha, config.syn_scale, config.threshold  # membrane, synaptic
    arr, _ = run_delayed_linear(x, weight, None, delays, md, "synaptic", 0.0, "round")  # checked above
    recurrent = rec_weight is not None
    if recurrent:
        taps = delay_taps(rec_delays, md, 0.0, 1, "round")  # (N, N, md): lags 1..md
        wmat = (rec_weight.unsqueeze(-1) * taps).permute(1, 2, 0).reshape(N, md * N)
        fut = x.new_zeros(B, md, N)
    S = x.new_zeros(B, N)
    V = x.new_zeros(B, N)
    spks, mems = [], []
    for t in range(T):
        inp = arr[t]
        if recurrent:
            inp = inp + fut[:, 0]
            fut = torch.cat([fut[:, 1:], fut.new_zeros(B, 1, N)], 1)
        S = b * S + inp
        U = a * V + (1.0 - a) * c * S
        if config.spiking:
            z = spike_fn(U - theta).to(U.dtype)
            V = U * (1.0 - z.detach())
            if recurrent:
                fut = fut + (z @ wmat).view(B, md, N)
        else:
            z = torch.zeros_like(U)
            V = U
        spks.append(z)
        mems.append(V)
    return torch.stack(spks), torch.stack(mems)
