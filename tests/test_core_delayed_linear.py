"""DelayedLinear against a loop-by-loop implementation of the formula, step vs sequence,
gradients, state handling and bad input."""

import copy

import pytest
import torch
from torch import nn

import snn_delays_ext as sde

KINDS = ["synaptic", "axonal", "dendritic"]


def triangle(k, l, s):
    return max(0.0, s - abs(k - l)) / (s * s)


def naive_delayed_linear(x, w, b, d, kind, max_delay, sigma):
    """y_o(t) = b_o + sum_i w_oi sum_k h_k(l_oi) x_i(t - k), written as plain loops."""
    T, B, n_in = x.shape
    n_out = w.shape[0]
    s = 1.0 + sigma
    y = torch.zeros(T, B, n_out, dtype=x.dtype)
    kmax = max_delay + int(torch.tensor(s).ceil()) - 1
    for o in range(n_out):
        for i in range(n_in):
            if kind == "synaptic":
                l = float(d[o, i])
            elif kind == "axonal":
                l = float(d[i])
            else:
                l = float(d[o])
            l = min(max(l, 0.0), max_delay)
            for k in range(0, kmax + 1):
                h = triangle(k, l, s)
                if h == 0.0:
                    continue
                for t in range(k, T):
                    y[t, :, o] += w[o, i] * h * x[t - k, :, i]
    if b is not None:
        y += b
    return y


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sigma", [0.0, 1.7])
def test_matches_naive_formula(kind, sigma):
    layer = sde.DelayedLinear(3, 4, max_delay=6, delay_type=kind, sigma=sigma).double()
    x = torch.rand(15, 2, 3, dtype=torch.float64)
    y = layer(x)
    ref = naive_delayed_linear(x, layer.weight.detach(), layer.bias.detach(), layer.delays.detach(), kind, 6, sigma)
    assert torch.allclose(y, ref, atol=1e-12)


def test_impulse_is_delayed_by_integer_and_split_by_fraction():
    layer = sde.DelayedLinear(1, 2, max_delay=8, bias=False, delay_init=torch.tensor([[3.0], [5.25]]))
    with torch.no_grad():
        layer.weight.fill_(1.0)
    x = torch.zeros(10, 1, 1)
    x[1] = 1.0
    y = layer(x)[:, 0]
    assert torch.nonzero(y[:, 0]).flatten().tolist() == [4]
    assert y[6, 1].item() == pytest.approx(0.75) and y[7, 1].item() == pytest.approx(0.25)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("interpolation", ["triangle", "round"])
def test_step_loop_equals_sequence(kind, interpolation):
    layer = sde.DelayedLinear(5, 3, max_delay=7, delay_type=kind, sigma=2.2, interpolation=interpolation)
    x = torch.rand(20, 4, 5)
    seq = layer(x)
    layer.reset_state()
    steps = torch.stack([layer(x[t]) for t in range(20)])
    assert torch.allclose(seq, steps, atol=1e-6)
    # and the gradients agree too
    g_seq = torch.autograd.grad(seq.square().sum(), [layer.weight, layer.delays])
    layer.reset_state()
    steps = torch.stack([layer(x[t]) for t in range(20)])
    g_steps = torch.autograd.grad(steps.square().sum(), [layer.weight, layer.delays])
    for a, b in zip(g_seq, g_steps):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(kind):
    layer = sde.DelayedLinear(3, 2, max_delay=5, delay_type=kind, sigma=0.5).double()
    with torch.no_grad():  # keep delays away from the triangle's kinks
        layer.delays.copy_(torch.rand_like(layer.delays) * 0.3 + torch.tensor(1.1).double())
    x = torch.rand(9, 2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, w, b, d):
        y, _ = sde.functional.delayed_linear(x, w, b, d, 5, kind, 0.5, backend="reference")
        return y

    assert torch.autograd.gradcheck(f, (x, layer.weight, layer.bias, layer.delays))


def test_round_mode_gradient_is_central_difference():
    layer = sde.DelayedLinear(2, 2, max_delay=6, interpolation="round").double()
    with torch.no_grad():
        layer.delays.copy_(torch.tensor([[2.2, 3.9], [1.4, 5.1]]))
    x = torch.rand(12, 3, 2, dtype=torch.float64)
    target = torch.rand(12, 3, 2, dtype=torch.float64)

    def loss(d):
        probe = copy.deepcopy(layer)
        with torch.no_grad():
            probe.delays.copy_(d)
        return (probe(x) * target).sum()  # linear in y: the difference is exact

    (layer(x) * target).sum().backward()
    r = torch.floor(layer.delays.detach() + 0.5)
    for o in range(2):
        for i in range(2):
            e = torch.zeros(2, 2, dtype=torch.float64)
            e[o, i] = 1.0
            fd = (loss(r + e) - loss(r - e)) / 2  # central difference over whole steps
            assert layer.delays.grad[o, i].item() == pytest.approx(fd.item(), rel=1e-9, abs=1e-9)


def test_quantize_and_effective_delays():
    layer = sde.DelayedLinear(2, 1, max_delay=5, sigma=3.0)
    with torch.no_grad():  # an optimiser step can push a delay out of range
        layer.delays.copy_(torch.tensor([[2.5, 7.0]]))
    assert torch.equal(layer.effective_delays(), torch.tensor([[2.5, 5.0]]))
    with pytest.raises(ValueError, match="max_hardware_delay"):
        layer.quantize_delays(max_hardware_delay=4)
    assert torch.equal(layer.delays.detach(), torch.tensor([[2.5, 7.0]]))  # unchanged on error
    q = layer.quantize_delays()
    assert torch.equal(q, torch.tensor([[3.0, 5.0]])) and layer.sigma == 0.0


def test_state_dict_round_trip_is_exact():
    a = sde.DelayedLinear(4, 3, max_delay=9, delay_type="axonal", sigma=1.3)
    b = sde.DelayedLinear(4, 3, max_delay=9, delay_type="axonal")
    b.load_state_dict(a.state_dict())
    x = torch.rand(12, 2, 4)
    assert b.sigma == 1.3
    assert torch.equal(a(x), b(x))


def test_parameter_split_and_optimiser_groups():
    net = nn.Sequential(sde.DelayedLinear(3, 4, 5), nn.Linear(4, 2), sde.DelayedLinear(2, 2, 5, delay_type="dendritic"))
    d = sde.delay_parameters(net)
    w = sde.weight_parameters(net)
    assert len(d) == 2 and len(w) == 6
    assert {id(p) for p in d}.isdisjoint(id(p) for p in w)
    assert len(d) + len(w) == len(list(net.parameters()))


def test_reset_helpers_clear_step_buffer():
    net = nn.Sequential(nn.Sequential(sde.DelayedLinear(2, 2, max_delay=4, delay_init=2.0)))
    x = torch.rand(5, 3, 2)
    first = torch.stack([net(x[t]) for t in range(5)])
    sde.reset(net)
    again = torch.stack([net(x[t]) for t in range(5)])
    assert torch.equal(first, again)
    sde.DelayedLinear.reset_hidden()
    assert torch.equal(net(x[0]), first[0])


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (torch.rand(3), ValueError, "input_.*rank"),
        (torch.rand(2, 3, 4, 5), ValueError, "input_.*rank"),
        (torch.rand(4, 2, 7), ValueError, "input_.*3 features"),
        (torch.ones(4, 2, 3, dtype=torch.int64), TypeError, "input_.*floating"),
        (torch.rand(4, 2, 3, dtype=torch.float64), TypeError, "input_.*dtype"),
        (torch.full((4, 2, 3), float("nan")), ValueError, "input_.*finite"),
    ],
)
def test_bad_input(bad, exc, match):
    layer = sde.DelayedLinear(3, 2, max_delay=4)
    with pytest.raises(exc, match=match):
        layer(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="max_delay"):
        sde.DelayedLinear(3, 2, max_delay=0)
    with pytest.raises(TypeError, match="max_delay"):
        sde.DelayedLinear(3, 2, max_delay=2.5)
    with pytest.raises(ValueError, match="delay_type"):
        sde.DelayedLinear(3, 2, 4, delay_type="somatic")
    with pytest.raises(ValueError, match="sigma"):
        sde.DelayedLinear(3, 2, 4, sigma=-1.0)
    with pytest.raises(ValueError, match="delay_init"):
        sde.DelayedLinear(3, 2, 4, delay_init=torch.zeros(3))
    with pytest.raises(ValueError, match="delay_init"):
        sde.DelayedLinear(3, 2, 4, delay_init=float("nan"))


def test_nan_delays_are_refused_and_batch_change_needs_reset():
    layer = sde.DelayedLinear(3, 2, max_delay=4)
    with torch.no_grad():
        layer.delays[0, 0] = float("inf")
    with pytest.raises(ValueError, match="delays.*finite"):
        layer(torch.rand(4, 2, 3))
    layer = sde.DelayedLinear(3, 2, max_delay=4)
    layer(torch.rand(2, 3))
    with pytest.raises(ValueError, match="batch size"):
        layer(torch.rand(5, 3))
    layer.reset_state()
    assert layer(torch.rand(5, 3)).shape == (5, 2)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    layer = sde.DelayedLinear(6, 5, max_delay=10, sigma=1.5)
    x = torch.rand(30, 4, 6)
    y = layer(x)
    y.sum().backward()
    g = layer.delays.grad.clone()
    cl = copy.deepcopy(layer).cuda()
    cl.zero_grad()
    yc = cl(x.cuda())
    yc.sum().backward()
    assert torch.allclose(yc.cpu(), y, atol=1e-5)
    assert torch.allclose(cl.delays.grad.cpu(), g, atol=1e-4)
    with pytest.raises(ValueError, match="device"):
        cl(x)


def test_snntorch_utils_reset_resets_delayed_linear_at_any_depth():
    """``snntorch.utils.reset(net)`` resets our layers' step state too (the README promises it)."""
    import snntorch as snn
    import snntorch.utils

    torch.manual_seed(0)
    lin = sde.DelayedLinear(3, 4, max_delay=5, delay_init=2.0)
    net = nn.Sequential(nn.Sequential(lin), snn.Leaky(beta=0.5, init_hidden=True,
                                                              output=True))
    x = torch.rand(6, 2, 3)

    def run():
        return torch.stack([net(x[t])[1] for t in range(6)])  # membranes

    first = run()
    snn.Leaky.reset_hidden()  # snnTorch's neuron alone: our buffer still holds the last inputs
    assert not torch.equal(run(), first)
    snntorch.utils.reset(net)
    assert torch.equal(run(), first)
    assert getattr(snntorch.utils.reset, "_sde_wrapped", False)
    assert sde.install_snntorch_reset() and getattr(snntorch.utils.reset, "_sde_wrapped")
    assert not getattr(snntorch.utils.reset.__wrapped__, "_sde_wrapped", False)  # wrapped once


@pytest.mark.parametrize("delay_type", ["synaptic", "axonal", "dendritic"])
def test_torch_func_vmap_and_jacrev(delay_type):
    """``torch.func`` transforms run the plain-PyTorch path (the compiled ops and the finiteness
    check cannot run on functorch's wrapped tensors) and agree with plain calls and autograd."""
    from torch.func import functional_call, jacrev, vmap

    torch.manual_seed(0)
    lin = sde.DelayedLinear(3, 4, max_delay=5, delay_type=delay_type, delay_init=2.3)
    xs = torch.rand(5, 6, 2, 3)
    torch.testing.assert_close(vmap(lin)(xs), torch.stack([lin(x) for x in xs]))
    x = xs[0]
    jac = jacrev(lambda p: functional_call(lin, p, (x,)).sum(0))(dict(lin.named_parameters()))
    y = lin(x).sum(0)
    for name, p in lin.named_parameters():
        g = torch.autograd.grad(y[1, 2], p, retain_graph=True)[0]
        torch.testing.assert_close(jac[name][1, 2], g)


def test_cpu_wide_triangles_run_the_reference_with_the_same_numbers():
    """On CPU a band wider than a quarter of the lag range runs the plain-PyTorch path (faster
    there, see ``snn_delays_ext.dispatch``); narrow bands and long ranges run the kernel; both
    give the same values and gradients; ``layer.backend(x)`` says which runs."""
    from snn_delays_ext import ops
    from snn_delays_ext.functional import delayed_linear

    if not ops.AVAILABLE:
        pytest.skip("compiled extension not built")
    torch.manual_seed(0)
    x = torch.rand(30, 4, 6, dtype=torch.float64)
    for max_delay, sigma, kernel in ((20, 4.0, False), (20, 0.5, True), (60, 4.0, True), (12, 10.0, False)):
        lin = sde.DelayedLinear(6, 5, max_delay=max_delay, sigma=sigma).double()
        choice = lin.backend(x)
        assert (choice.backend == "compiled") == kernel, (max_delay, sigma, choice)
        if not kernel:
            assert "faster" in choice.reason
        y = lin(x)
        g = torch.autograd.grad(y.square().sum(), [lin.weight, lin.delays])
        args = (lin.weight, lin.bias, lin.delays, max_delay, "synaptic", sigma, "triangle")
        for backend in ("compiled", "reference"):
            y2, _ = delayed_linear(x, *args, backend=backend)
            g2 = torch.autograd.grad(y2.square().sum(), [lin.weight, lin.delays])
            torch.testing.assert_close(y, y2)
            for a, b in zip(g, g2):
                torch.testing.assert_close(a, b)
    lin = sde.DelayedLinear(6, 5, max_delay=20, sigma=4.0, delay_type="axonal").double()
    assert lin.backend(x).backend == "compiled"  # axonal delays keep their kernel
    assert lin.backend(x[0]).backend == "reference"  # one step: the plain-PyTorch step
