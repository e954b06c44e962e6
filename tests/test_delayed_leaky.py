"""``DelayedLeaky``: a delayed linear map followed by snnTorch ``Leaky`` neurons over a sequence.

The oracles: ``DelayedLinear`` followed by snnTorch's own ``snn.Leaky`` called once per step in a
Python loop (values and gradients), a hand computation of integer delays and the LIF update in
float64 (values), finite differences (``gradcheck``), and an independent NIR interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

import snn_delays_ext as sde
from snn_delays_ext import DelayedLeaky, DelayedLinear
from snn_delays_ext.ops import leaky_sequence_devices

sys.path.insert(0, str(Path(__file__).resolve().parent))

T, B, IN, OUT, D = 30, 4, 6, 5, 6


def _custom_spike(x: torch.Tensor) -> torch.Tensor:
    """A spike function the kernels do not know (Heaviside forward, sigmoid' backward)."""
    return _CustomSpike.apply(x)


class _CustomSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(4 * x)
        return g * 4 * s * (1 - s)


SURROGATES = {"atan-default": lambda: None, "fast_sigmoid": lambda: surrogate.fast_sigmoid(slope=10),
              "custom": lambda: _custom_spike}


def _spikes(shape, p=0.3, dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


def _layer(**kw) -> DelayedLeaky:
    args = dict(beta=torch.linspace(0.7, 0.95, OUT), threshold=torch.linspace(0.8, 1.2, OUT), learn_beta=True,
                learn_threshold=True, sigma=1.0)
    args.update(kw)
    layer = DelayedLeaky(IN, OUT, D, **args)
    with torch.no_grad():  # strong enough drive that every neuron fires a few times
        layer.linear.weight.mul_(3.0)
    return layer


def _composition(layer: DelayedLeaky):
    """The independent network: a DelayedLinear and snnTorch's Leaky with the same arguments and
    parameters (copies, so their gradients are separate)."""
    lin = layer.linear
    ref_lin = DelayedLinear(lin.in_features, lin.out_features, lin.max_delay, delay_type=lin.delay_type,
                            bias=lin.bias is not None, sigma=lin.sigma, interpolation=lin.interpolation,
                            dtype=lin.weight.dtype)
    ref_lin.load_state_dict(lin.state_dict())
    lif = layer.lif
    ref_lif = snn.Leaky(beta=lif.beta.detach().clone(), threshold=lif.threshold.detach().clone(),
                        spike_grad=lif.spike_grad, learn_beta=isinstance(lif.beta, nn.Parameter),
                        learn_threshold=isinstance(lif.threshold, nn.Parameter),
                        reset_mechanism=lif.reset_mechanism, reset_delay=lif.reset_delay)
    return ref_lin, ref_lif


def _run_composition(ref_lin, ref_lif, x):
    cur = ref_lin(x)
    mem = ref_lif.init_leaky()
    spks, mems = [], []
    for t in range(x.shape[0]):
        s, mem = ref_lif(cur[t], mem)
        spks.append(s)
        mems.append(mem)
    return torch.stack(spks), torch.stack(mems)


def _grads(named):
    return {n: p.grad.clone() for n, p in named if p.grad is not None}


@pytest.mark.parametrize("reset_mechanism", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
@pytest.mark.parametrize("sg", sorted(SURROGATES))
def test_matches_delayed_linear_then_snntorch_leaky(reset_mechanism, reset_delay, sg):
    layer = _layer(reset_mechanism=reset_mechanism, reset_delay=reset_delay, spike_grad=SURROGATES[sg]())
    ref_lin, ref_lif = _composition(layer)
    x = _spikes((T, B, IN)).requires_grad_()
    xr = x.detach().clone().requires_grad_()
    spk, mem = layer(x)
    spk_r, mem_r = _run_composition(ref_lin, ref_lif, xr)
    assert 0.02 < float(spk.detach().mean()) < 0.9, "the test needs neurons that fire and rest"
    assert spk.dtype == x.dtype and spk.shape == (T, B, OUT) and mem.shape == (T, B, OUT)
    assert torch.equal(spk, spk_r)
    torch.testing.assert_close(mem, mem_r, rtol=0, atol=1e-6)
    # a loss that reads spikes and membranes: every parameter gets a gradient through both
    w = torch.randn(T, B, OUT, generator=torch.Generator().manual_seed(3))
    ((spk * w).sum() + (mem * w).square().mean()).backward()
    ((spk_r * w).sum() + (mem_r * w).square().mean()).backward()
    mine = {"x": x.grad, "weight": layer.linear.weight.grad, "bias": layer.linear.bias.grad,
            "delays": layer.linear.delays.grad, "beta": layer.lif.beta.grad, "threshold": layer.lif.threshold.grad}
    ref = {"x": xr.grad, "weight": ref_lin.weight.grad, "bias": ref_lin.bias.grad, "delays": ref_lin.delays.grad,
           "beta": ref_lif.beta.grad, "threshold": ref_lif.threshold.grad}
    for name in mine:
        assert mine[name] is not None and ref[name] is not None, name
        assert mine[name].abs().sum() > 0 or ref[name].abs().sum() == 0, name
        torch.testing.assert_close(mine[name], ref[name], rtol=1e-5,
                                   atol=1e-6 * max(1.0, float(ref[name].abs().max())), msg=name)


@pytest.mark.parametrize("delay_type", ["synaptic", "axonal", "dendritic"])
@pytest.mark.parametrize("interpolation", ["triangle", "round"])
def test_delay_kinds_match_the_composition(delay_type, interpolation):
    layer = _layer(delay_type=delay_type, interpolation=interpolation, beta=0.85, threshold=1.0,
                   learn_threshold=False)
    ref_lin, ref_lif = _composition(layer)
    x = _spikes((T, B, IN), seed=5)
    spk, mem = layer(x)
    spk_r, mem_r = _run_composition(ref_lin, ref_lif, x)
    assert torch.equal(spk, spk_r)
    torch.testing.assert_close(mem, mem_r, rtol=0, atol=1e-6)
    (spk.sum() + mem.sum()).backward()
    (spk_r.sum() + mem_r.sum()).backward()
    for p, q in ((layer.linear.delays, ref_lin.delays), (layer.linear.weight, ref_lin.weight),
                 (layer.lif.beta, ref_lif.beta)):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-5)


def test_hand_computed_integer_delays_and_lif():
    """Integer synaptic delays: ``I_o(t) = b_o + sum_i w_oi x_i(t - d_oi)``; then snnTorch's
    ``Leaky`` update written out (subtract reset one step after the spike), in float64."""
    torch.manual_seed(4)
    n_in, n_out, steps = 3, 2, 12
    d = torch.tensor([[0.0, 2.0, 5.0], [1.0, 3.0, 0.0]])
    layer = DelayedLeaky(n_in, n_out, 5, beta=torch.tensor([0.8, 0.6], dtype=torch.float64), threshold=0.9,
                         delay_init=d, interpolation="round", dtype=torch.float64)
    x = _spikes((steps, 2, n_in), p=0.4, dtype=torch.float64, seed=7)
    spk, mem = layer(x)
    w, b = layer.linear.weight.detach(), layer.linear.bias.detach()
    beta = [0.8, 0.6]
    for bi in range(2):
        for o in range(n_out):
            m, prev_spk = 0.0, 0.0
            for t in range(steps):
                cur = float(b[o]) + sum(float(w[o, i]) * float(x[t - int(d[o, i]), bi, i])
                                        for i in range(n_in) if t - int(d[o, i]) >= 0)
                m = beta[o] * m + cur - prev_spk * 0.9
                s = 1.0 if m > 0.9 else 0.0
                assert float(spk[t, bi, o].detach()) == s
                assert abs(float(mem[t, bi, o].detach()) - m) < 1e-12
                prev_spk = s


@pytest.mark.parametrize("reset_mechanism", ["subtract", "zero", "none"])
def test_gradcheck_float64_membranes(reset_mechanism):
    """Finite differences of the membranes (the delayed reset carries no gradient, as in
    snnTorch, so the membranes are differentiable where no spike sits at the threshold)."""
    n_in, n_out, steps = 3, 2, 8
    d = torch.tensor([[0.3, 1.2, 2.8], [1.7, 0.8, 3.3]], dtype=torch.float64)
    layer = DelayedLeaky(n_in, n_out, 4, beta=torch.tensor([0.8, 0.7]), threshold=torch.tensor([0.5, 0.6]),
                         learn_beta=True, learn_threshold=True, delay_init=d, sigma=0.5,
                         reset_mechanism=reset_mechanism, dtype=torch.float64)
    x = torch.rand(steps, 2, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    names = ["linear.weight", "linear.bias", "linear.delays", "lif.beta", "lif.threshold"]
    params = dict(layer.named_parameters())

    def f(x, *ps):
        return torch.func.functional_call(layer, dict(zip(names, ps)), (x,))[1]

    inputs = (x.requires_grad_(),) + tuple(params[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6)
    spk = layer(x)[0]
    assert spk.sum() > 0, "the test needs spikes (resets)"


def test_meta_device_forward_backward():
    layer = DelayedLeaky(IN, OUT, D, beta=torch.full((OUT,), 0.9), learn_beta=True, device="meta")
    assert all(p.device.type == "meta" for p in layer.parameters())
    x = torch.empty(T, B, IN, device="meta", requires_grad=True)
    spk, mem = layer(x)
    assert spk.device.type == "meta" and spk.shape == (T, B, OUT) and mem.shape == (T, B, OUT)
    (spk.sum() + mem.sum()).backward()
    assert x.grad.device.type == "meta" and layer.lif.beta.grad.shape == (OUT,)
    assert layer.linear.delays.grad.device.type == "meta"


def test_float64_layer_and_dtype_follow():
    layer = DelayedLeaky(IN, OUT, D, beta=0.9, dtype=torch.float64)
    assert layer.lif.beta.dtype == torch.float64 and layer.lif.threshold.dtype == torch.float64
    spk, mem = layer(_spikes((T, B, IN), dtype=torch.float64))
    assert spk.dtype == torch.float64 and mem.dtype == torch.float64
    layer32 = layer.float()
    assert layer32(_spikes((T, B, IN)))[1].dtype == torch.float32


@pytest.mark.parametrize("kwargs, err, words", [
    ({"beta": "0.9"}, TypeError, ["beta", "str"]),
    ({"beta": torch.ones(3)}, ValueError, ["beta", f"({OUT},)", "(3,)"]),
    ({"beta": torch.ones(OUT, 1)}, ValueError, ["beta", "(5, 1)"]),
    ({"beta": float("nan")}, ValueError, ["beta", "finite"]),
    ({"beta": 0.9, "threshold": torch.tensor([1.0, float("inf"), 1.0, 1.0, 1.0])}, ValueError,
     ["threshold", "finite"]),
    ({"beta": 0.9, "threshold": True}, TypeError, ["threshold", "bool"]),
    ({"beta": 0.9, "spike_grad": "atan"}, TypeError, ["spike_grad", "str"]),
    ({"beta": 0.9, "reset_mechanism": "hard"}, ValueError, ["reset_mechanism", "subtract", "'hard'"]),
    ({"beta": 0.9, "reset_delay": 1}, TypeError, ["reset_delay", "bool", "int"]),
    ({"beta": 0.9, "learn_beta": "yes"}, TypeError, ["learn_beta", "bool"]),
    ({"beta": 0.9, "learn_threshold": None}, TypeError, ["learn_threshold", "bool"]),
    ({"beta": 0.9, "delay_type": "somatic"}, ValueError, ["delay_type", "'somatic'"]),
    ({"beta": 0.9, "interpolation": "cubic"}, ValueError, ["interpolation", "'cubic'"]),
    ({"beta": 0.9, "sigma": -1.0}, ValueError, ["sigma", ">= 0"]),
])
def test_constructor_errors_name_the_argument(kwargs, err, words):
    with pytest.raises(err) as e:
        DelayedLeaky(IN, OUT, D, **kwargs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("args, err, words", [
    ((0, OUT, D), ValueError, ["in_features", ">= 1", "0"]),
    ((IN, 0, D), ValueError, ["out_features", ">= 1"]),
    ((IN, OUT, 0), ValueError, ["max_delay", "0"]),
    ((IN, OUT, 2.5), TypeError, ["max_delay", "float"]),
])
def test_size_errors(args, err, words):
    with pytest.raises(err) as e:
        DelayedLeaky(*args, beta=0.9)
    for w in words:
        assert w in str(e.value)


def test_input_errors_name_the_argument():
    layer = DelayedLeaky(IN, OUT, D, beta=0.9)
    cases = [
        ([1.0], TypeError, ["input_", "torch.Tensor", "list"]),
        (torch.zeros(B, IN), ValueError, ["input_", "rank 3", "rank 2", f"({B}, {IN})"]),
        (torch.zeros(T, B, IN + 1), ValueError, ["input_", f"{IN} features", f"{IN + 1}"]),
        (torch.zeros(T, B, IN, dtype=torch.int64), TypeError, ["input_", "floating", "int64"]),
        (torch.zeros(T, B, IN, dtype=torch.float64), TypeError, ["input_", "float32", "float64"]),
    ]
    for x, err, words in cases:
        for call in (layer, layer.backend):
            with pytest.raises(err) as e:
                call(x)
            for w in words:
                assert w in str(e.value), (w, str(e.value))
    bad = torch.zeros(T, B, IN)
    bad[3, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="input_"):
        layer(bad)


def test_backend_says_what_runs_for_connections_and_neurons():
    x = torch.zeros(T, B, IN)
    known = DelayedLeaky(IN, OUT, D, beta=0.9, interpolation="round").backend(x)
    assert set(known) == {"connections", "neurons"}
    assert known["connections"] == DelayedLinear(IN, OUT, D, interpolation="round").backend(x)
    if "cpu" in leaky_sequence_devices():
        assert known["neurons"].backend == "compiled"
    custom = DelayedLeaky(IN, OUT, D, beta=0.9, spike_grad=_custom_spike).backend(x)["neurons"]
    assert custom.backend == "reference" and "spike_grad" in custom.reason


def test_autocast_runs_and_backend_says_what_runs():
    layer = DelayedLeaky(IN, OUT, D, beta=0.9)
    x = _spikes((T, B, IN))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spk, mem = layer(x)
        neurons = layer.backend(x)["neurons"]
    assert spk.dtype == torch.bfloat16
    # the neurons see a bfloat16 current: the kernels take float32/float64, the reference runs
    assert neurons.backend == "reference" and "bfloat16" in neurons.reason
    (spk.float().sum() + mem.float().sum()).backward()
    assert layer.weight.grad is not None and layer.weight.grad.dtype == torch.float32


def test_state_dict_round_trip_exact():
    layer = _layer(reset_mechanism="zero")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    x = _spikes((T, B, IN))
    spk, mem = layer(x)
    (spk.sum() + mem.square().mean()).backward()
    opt.step()
    sd = layer.state_dict()
    assert {"linear.weight", "linear.bias", "linear.delays", "lif.beta", "lif.threshold"} <= set(sd)
    other = _layer(reset_mechanism="zero")
    other.load_state_dict(sd)
    for k, v in other.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, sd[k]), k
    s1, m1 = layer(x)
    s2, m2 = other(x)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)
    with pytest.raises(ValueError, match="max_delay"):
        DelayedLeaky(IN, OUT, D + 1, beta=torch.full((OUT,), 0.9), threshold=torch.ones(OUT),
                     learn_beta=True, learn_threshold=True).load_state_dict(sd)


def test_utils_helpers_and_sigma_scheduler():
    net = nn.Sequential(DelayedLeaky(IN, OUT, D, beta=torch.full((OUT,), 0.9), learn_beta=True),
                        DelayedLeaky(OUT, 3, D, beta=0.8))
    assert sde.delay_layers(net) == [net[0].linear, net[1].linear]
    delays = sde.delay_parameters(net)
    assert [id(p) for p in delays] == [id(net[0].delays), id(net[1].delays)]
    weights = {id(p) for p in sde.weight_parameters(net)}
    assert id(net[0].lif.beta) in weights and id(net[0].weight) in weights and not weights & {id(p) for p in delays}
    with torch.no_grad():
        net[0].delays.fill_(D + 3.5)
        net[1].delays.fill_(-2.0)
    sde.clamp_delays_(net)
    assert float(net[0].delays.max()) == D and float(net[1].delays.min()) == 0.0
    sde.set_sigma(net, 2.5)
    assert net[0].linear.sigma == 2.5 and net[1].linear.sigma == 2.5
    sched = sde.SigmaScheduler(net, epochs=4, sigma0=3.0)
    assert net[0].linear.sigma == 3.0
    for _ in range(4):
        sched.step()
    assert net[1].linear.sigma == 0.0
    with torch.no_grad():
        net[0].delays.uniform_(0, D)
    sde.quantize_delays(net)
    assert torch.equal(net[0].delays, net[0].delays.round())
    # the width reaches the forward pass: the layer computes what its DelayedLinear does
    sde.set_sigma(net, 1.5)
    ref_lin, ref_lif = _composition(net[0])
    x = _spikes((T, B, IN))
    assert torch.equal(net[0](x)[0], _run_composition(ref_lin, ref_lif, x)[0])


def test_snntorch_reset_and_repeated_calls_are_independent():
    layer = _layer()
    x = _spikes((T, B, IN))
    a = layer(x)
    snn.utils.reset(layer)
    b = layer(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _nir_layer():
    d = torch.randint(0, D + 1, (OUT, IN)).float()
    layer = DelayedLeaky(IN, OUT, D, beta=torch.linspace(0.6, 0.9, OUT), threshold=0.8, delay_init=d,
                         interpolation="round", reset_mechanism="zero", reset_delay=False)
    with torch.no_grad():
        layer.linear.weight.mul_(3.0)
    return layer


def test_nir_export_is_a_delayed_map_and_a_lif_that_nir_simulates():
    pytest.importorskip("nir")
    from _nir_sim import NirSim
    import nir
    from snn_delays_ext.nir import export_to_nir, import_from_nir

    layer = _nir_layer()
    x = _spikes((T, B, IN))
    spk = layer(x)[0]
    assert spk.sum() > 0
    g = export_to_nir(nn.Sequential(layer), x[0], dt=1e-3)
    assert [k for k in g.nodes if k not in ("input", "output")] == ["0_linear", "0_lif"]
    assert isinstance(g.nodes["0_lif"], nir.LIF) and isinstance(g.nodes["0_linear"], nir.NIRGraph)
    # NIR's LIF resets to zero in the spike's step: the independent interpreter gives the spikes
    out = NirSim.run(g, 1e-3, x)
    assert torch.equal(torch.from_numpy(out).float(), spk)
    # imported back: DelayedLinear + snnTorch Leaky stepping, the same spikes
    net = import_from_nir(g)
    assert [type(m).__name__ for m in net] == ["DelayedLinear", "Leaky"]
    sde.reset(net)
    steps = torch.stack([net(x[t]) for t in range(T)])
    assert torch.equal(steps, spk)


def test_nir_export_of_a_module_calling_it_is_traced():
    pytest.importorskip("nir")
    from snn_delays_ext.nir import export_to_nir

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden = _nir_layer()
            self.out = nn.Linear(OUT, 2)

        def forward(self, x):
            return self.out(self.hidden(x)[0])

    g = export_to_nir(Net(), _spikes((T, B, IN)), dt=1e-3)
    assert [k for k in g.nodes if k not in ("input", "output")] == ["hidden_linear", "hidden_lif", "out"]


def test_a_feedforward_snn_hidden_layer_is_a_delayed_leaky():
    """The Braille preset's hidden layer (``FeedForwardSNN``'s ``linears.i`` and ``lifs.i``) loads
    into a ``DelayedLeaky`` key for key and computes the same spikes."""
    from snn_delays_ext.train.config import make_config
    from snn_delays_ext.train.models import build_model

    cfg = make_config("braille", overrides={"data_dir": "unused", "model.hidden": [16, 12], "model.max_delay": 6})
    net = build_model(cfg.model.name, 24, 27, cfg).eval()  # eval: no dropout between the layers
    x = _spikes((20, 3, 24), p=0.2)
    _, hidden = net(x, record=True)
    h = x
    for i, spikes in enumerate(hidden):
        lin, lif = net.linears[i], net.lifs[i]
        layer = DelayedLeaky(lin.in_features, lin.out_features, lin.max_delay, beta=torch.zeros(lin.out_features),
                             learn_beta=True, interpolation=lin.interpolation, spike_grad=lif.spike_grad)
        sd = {f"linear.{k}": v for k, v in lin.state_dict().items()}
        sd.update({f"lif.{k}": v for k, v in lif.state_dict().items()})
        layer.load_state_dict(sd)
        spk, _ = layer(h)
        assert torch.equal(spk, spikes)
        h = spk
    assert hidden[0].sum() > 0
