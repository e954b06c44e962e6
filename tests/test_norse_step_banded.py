"""Norse recurrent modules read only the band of non-zero taps.

``DelayedLIFRecurrentCell`` and ``DelayedLIFRecurrent`` used to build the full tap tensor
(``(N, K)`` axonal, ``(N, N, K)`` weighted synaptic) once per call and contract it with the
whole ``K``-step spike history every step. They now read the ``2 ceil(1 + sigma)`` non-zero
taps of each delay (:func:`snn_delays_ext.functional.banded_taps`). The full-tap formula is
written out here as the reference: values and every gradient (inputs, weights, delays, the
passed state) must agree to float rounding, and autograd must keep no ``(N, N, K)`` tensor.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("norse")
from norse.torch import LIFParameters  # noqa: E402
from norse.torch.functional.threshold import threshold  # noqa: E402

from snn_delays_ext.functional import delay_taps  # noqa: E402
from snn_delays_ext.functional.recurrent_leaky import recurrent_history_length  # noqa: E402
from snn_delays_ext.norse import (  # noqa: E402
    DelayedLIFRecurrent,
    DelayedLIFRecurrentCell,
    DelayedLIFState,
)

DT = torch.float64


# ----------------------------------------------------------------------------------------------
# the reference: the modules' former full-tap step, written out
# ----------------------------------------------------------------------------------------------
def _fit(past, K):
    if past.shape[0] >= K:
        return past[past.shape[0] - K:]
    return torch.cat([past.new_zeros((K - past.shape[0],) + tuple(past.shape[1:])), past], 0)


def _full_tap_step(mod, x, state, taps, w_rec):
    """One step of the former module code (``_step_with_taps``): the delayed recurrent current
    summed over all lags ``1..K`` of the full taps, then Norse's ``lif_step`` update."""
    K = taps.shape[-1]
    past = _fit(state.past, K)
    by_lag = past.flip(0)  # by_lag[k - 1] = spikes k steps ago
    if mod.delay_type == "axonal":
        r = F.linear(torch.einsum("jk,kbj->bj", taps, by_lag).contiguous(), w_rec)
    else:
        r = torch.einsum("ijk,kbj->bi", w_rec.unsqueeze(-1) * taps, by_lag)
    p, dt = mod.p, mod.dt
    i_jump = state.i + F.linear(x, mod.input_weights) + r
    v_decayed = state.v + dt * p.tau_mem_inv * ((p.v_leak - state.v) + i_jump)
    i_decayed = i_jump - dt * p.tau_syn_inv * i_jump
    z = threshold(v_decayed - p.v_th, p.method, p.alpha)
    v = (1 - z.detach()) * v_decayed + z.detach() * p.v_reset
    return z, DelayedLIFState(z, v, i_decayed, torch.cat([past[1:], z.unsqueeze(0)], 0))


def _full_tap_forward(mod, x, state):
    """The former ``forward``: taps once per call, the full-tap step per time step."""
    taps = delay_taps(mod.delays, mod.max_delay, mod._sigma, 1, mod.interpolation)
    w_rec = mod.effective_recurrent_weights()
    if isinstance(mod, DelayedLIFRecurrentCell):
        return _full_tap_step(mod, x, state, taps, w_rec)
    out = []
    for t in range(x.shape[0]):
        z, state = _full_tap_step(mod, x[t], state, taps, w_rec)
        out.append(z)
    return torch.stack(out), state


# ----------------------------------------------------------------------------------------------
def _make(cls, kind, interp, sigma, autapses, max_delay, N=6, I=3, seed=0):
    torch.manual_seed(seed)
    shape = (N,) if kind == "axonal" else (N, N)
    # delays across and beyond [1, max_delay] (clamped), non-integer so the delays get gradients
    d = torch.empty(shape, dtype=DT).uniform_(0.3, max_delay + 0.8)
    mod = cls(I, N, max_delay=max_delay, p=LIFParameters(v_th=torch.as_tensor(0.25, dtype=DT)),
              delay_type=kind, autapses=autapses, sigma=sigma, interpolation=interp,
              input_weights=torch.randn(N, I, dtype=DT) * 1.5,
              recurrent_weights=torch.randn(N, N, dtype=DT) * 0.8, delay_init=d)
    return mod


def _state(mod, B, K_given, seed):
    """A non-trivial passed state (leaves, so its gradients are compared too); the history may
    be shorter or longer than the layer's ``K`` (zero-padded / trimmed)."""
    g = torch.Generator().manual_seed(seed)
    N = mod.hidden_size
    past = (torch.rand(K_given, B, N, generator=g) < 0.4).to(DT)
    leaves = dict(
        z=past[-1].clone() if K_given else torch.zeros(B, N, dtype=DT),
        v=torch.rand(B, N, generator=g).to(DT) * 0.2,
        i=torch.randn(B, N, generator=g).to(DT) * 0.5,
        past=past,
    )
    return {k: t.requires_grad_() for k, t in leaves.items()}


def _compare(mod, x, leaves):
    """Run the module and the full-tap reference from the same state; compare spikes, state
    and all gradients."""
    params = [mod.input_weights, mod.recurrent_weights, mod.delays]
    grads = []
    outs = []
    for run in (mod, lambda xx, st: _full_tap_forward(mod, xx, st)):
        st = DelayedLIFState(leaves["z"], leaves["v"], leaves["i"], leaves["past"])
        z, st = run(x, st)
        w = torch.linspace(0.5, 2.0, z.numel(), dtype=DT).view(z.shape)
        w_past = torch.linspace(-1, 1, st.past.numel(), dtype=DT).view(st.past.shape)
        loss = (z * w).sum() + st.v.pow(2).sum() + (st.i * 0.3).sum() + (st.past * w_past).sum()
        ins = [x] + params + [leaves[k] for k in ("z", "v", "i", "past")]
        grads.append(torch.autograd.grad(loss, ins, allow_unused=True))
        outs.append((z, st))
    (z, st), (z_ref, st_ref) = outs
    assert float(z.detach().sum()) > 0, "the comparison must include spikes"
    assert torch.equal(z, z_ref)
    assert torch.equal(st.past, st_ref.past) and st.past.shape[0] == recurrent_history_length(
        mod.max_delay, mod._sigma)
    torch.testing.assert_close(st.v, st_ref.v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(st.i, st_ref.i, rtol=1e-12, atol=1e-12)
    names = ["x", "input_weights", "recurrent_weights", "delays", "z", "v", "i", "past"]
    for name, g, g_ref in zip(names, *grads):
        if g_ref is None:  # state.z is not read (past[-1] is): unused by both
            assert g is None, name
            continue
        assert g is not None, name
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
    assert float(grads[1][3].abs().sum()) > 0, "the delays must get a gradient"
    if not mod.autapses:
        assert torch.equal(torch.diagonal(grads[0][2]), torch.zeros(mod.hidden_size, dtype=DT))


CASES = [("triangle", 0.0), ("triangle", 1.5), ("round", 0.0), ("round", 0.7)]


@pytest.mark.parametrize("autapses", [False, True])
@pytest.mark.parametrize("interp,sigma", CASES)
@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_cell_equals_full_taps(kind, interp, sigma, autapses):
    mod = _make(DelayedLIFRecurrentCell, kind, interp, sigma, autapses, max_delay=5, seed=1)
    K = recurrent_history_length(5, sigma)
    for K_given, seed in ((K, 2), (K - 2, 3), (K + 3, 4)):
        leaves = _state(mod, 3, K_given, seed)
        x = (torch.rand(3, 3, generator=torch.Generator().manual_seed(seed)) < 0.7).to(DT) * 2
        x.requires_grad_()
        _compare(mod, x, leaves)


@pytest.mark.parametrize("autapses", [False, True])
@pytest.mark.parametrize("interp,sigma", CASES)
@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
# synaptic, batch 3: max_delay 4 takes the dense kernel built once per sequence, 30 the band
# gathered per step; T = 1 with N = 6 > T B the dense kernel rebuilt per step
@pytest.mark.parametrize("max_delay,T", [(4, 12), (30, 12), (4, 1)])
def test_sequence_equals_full_taps(kind, interp, sigma, autapses, max_delay, T):
    mod = _make(DelayedLIFRecurrent, kind, interp, sigma, autapses, max_delay, seed=5)
    K = recurrent_history_length(max_delay, sigma)
    for K_given, seed in ((K, 6), (max(K - 3, 0), 7)):
        leaves = _state(mod, 3, K_given, seed)
        x = (torch.rand(T, 3, 3, generator=torch.Generator().manual_seed(seed)) < 0.5).to(DT) * 2
        x.requires_grad_()
        _compare(mod, x, leaves)


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_sequence_equals_cell_loop_bitwise(kind):
    """The sequence module and the cell run step by step give the same spikes and state."""
    for max_delay in (3, 40):  # synaptic: the per-sequence dense kernel, then the gathered band
        seq = _make(DelayedLIFRecurrent, kind, "triangle", 0.5, False, max_delay, N=8, seed=8)
        cell = _make(DelayedLIFRecurrentCell, kind, "triangle", 0.5, False, max_delay, N=8, seed=8)
        cell.load_state_dict(seq.state_dict())
        x = (torch.rand(20, 2, 3, generator=torch.Generator().manual_seed(9)) < 0.5).to(DT) * 2
        z_seq, s_seq = seq(x)
        s, out = None, []
        for t in range(x.shape[0]):
            z, s = cell(x[t], s)
            out.append(z)
        assert z_seq.sum() > 0
        assert torch.equal(z_seq, torch.stack(out)) and torch.equal(s_seq.past, s.past)
        torch.testing.assert_close(s_seq.v, s.v, rtol=1e-13, atol=1e-13)


def _saved_numels(fn):
    """Run ``fn`` under saved-tensor hooks; return ``(numel, storage pointer)`` of every tensor
    autograd saves."""
    seen = []

    def pack(t):
        seen.append((t.numel(), t.untyped_storage().data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return seen


@pytest.mark.parametrize("kind", ["axonal", "synaptic"])
def test_no_full_tap_tensor_is_saved(kind):
    N, B, max_delay = 16, 2, 30
    K = recurrent_history_length(max_delay, 0.0)
    big = N * N * K  # an (N, N, K) tensor, whatever its layout

    def run(mod, T, reference=False):
        x = (torch.rand(T, B, 3, generator=torch.Generator().manual_seed(0)) < 0.5).to(DT)
        if isinstance(mod, DelayedLIFRecurrentCell):
            def fn():
                s = None
                for t in range(T):
                    _, s = (_full_tap_forward(mod, x[t], s or mod.initial_state(x[t])) if reference
                            else mod(x[t], s))
        else:
            def fn():
                (_full_tap_forward(mod, x, mod.initial_state(x)) if reference else mod(x))
        return _saved_numels(fn)

    for cls in (DelayedLIFRecurrentCell, DelayedLIFRecurrent):
        mod = _make(cls, kind, "triangle", 0.0, False, max_delay, N=N)
        saved = run(mod, 8)
        assert saved and max(n for n, _ in saved) < big
        # the reference does save them (one per step, synaptic), so the hook would see them
        if kind == "synaptic":
            assert sum(n >= big for n, _ in run(mod, 8, reference=True)) >= 8


def test_sequence_dense_kernel_is_one_per_sequence():
    """Short synaptic delays and a batch large enough for a matrix product: the sequence module
    builds the band's dense kernel once; autograd keeps that one tensor for all steps (its
    count does not grow with T) and no full-tap product."""
    N, B, max_delay = 16, 4, 3  # 3 B W = 24 > K = 3, and N <= T B
    K = recurrent_history_length(max_delay, 0.0)
    mod = _make(DelayedLIFRecurrent, "synaptic", "triangle", 0.0, False, max_delay, N=N)
    for T in (5, 20):
        x = (torch.rand(T, B, 3, generator=torch.Generator().manual_seed(1)) < 0.5).to(DT)
        saved = _saved_numels(lambda: mod(x))
        kernels = {ptr for n, ptr in saved if n >= N * N * K}
        assert len(kernels) == 1


@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_feed_forward_cell_step_loop_equals_the_sequence_module(kind, sigma):
    """``DelayedLIFCell`` reads only the band of non-zero taps per step (``DelayedLinear``'s
    step path); a loop of it equals ``DelayedLIF`` (one convolution over the whole sequence)
    in spikes, states and every gradient, fractional delays and wide triangles included."""
    from snn_delays_ext.norse import DelayedLIF, DelayedLIFCell

    torch.manual_seed(11)
    p = LIFParameters(v_th=torch.tensor(0.3, dtype=DT))
    kw = dict(max_delay=9, p=p, delay_type=kind, bias=True, sigma=sigma)
    seq = DelayedLIF(5, 6, **kw).double()
    cell = DelayedLIFCell(5, 6, **kw).double()
    with torch.no_grad():
        seq.weight.mul_(3.0)
        seq.delays.uniform_(0.0, 9.0)
    cell.load_state_dict(seq.state_dict())
    x = (torch.rand(25, 3, 5, dtype=DT) < 0.4).to(DT).requires_grad_()
    z_seq, s_seq = seq(x)
    out, s = [], None
    for t in range(x.shape[0]):
        z, s = cell(x[t], s)
        out.append(z)
    z_cell = torch.stack(out)
    assert 0 < float(z_seq.detach().mean()) < 1
    assert torch.equal(z_cell, z_seq)
    torch.testing.assert_close(s.v, s_seq.v, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s.i, s_seq.i, rtol=1e-12, atol=1e-12)
    target = torch.rand_like(s.v)

    def grads(module, z, state):
        return torch.autograd.grad(z.sum() + ((state.v - target) ** 2).sum(),
                                   [x, module.weight, module.bias, module.delays])

    for name, a, b in zip(("x", "weight", "bias", "delays"), grads(cell, z_cell, s), grads(seq, z_seq, s_seq)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
