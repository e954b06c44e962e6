"""The surrogate models' reset options (``reset_mechanism``, ``reset_delay``): snnTorch's
resets, and NIR's (to 0 in the step of the spike), which makes the exported graph exact."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch

from snn_delays_ext.train import FeedForwardSNN, RecurrentSNN, build_model, make_config, train
from snn_delays_ext.train.cli import build_parser

from _train_helpers import QUICK


def _spikes(reset_mechanism, reset_delay, steps=7):
    # one neuron, no leak (beta 1), input 0.7 at every step, threshold 1
    net = FeedForwardSNN(1, [1], 1, max_delay=1, delays=False, beta=1.0, reset_mechanism=reset_mechanism,
                         reset_delay=reset_delay)
    with torch.no_grad():
        net.linears[0].weight.fill_(0.7)
        net.linears[0].bias.zero_()
    return net(torch.ones(steps, 1, 1), record=True)[1][0].flatten().tolist()


@pytest.mark.parametrize("mechanism, delay, expect", [
    # subtract one step later (snnTorch's default): 0.7, 1.4 (spike), 1.1 (spike), 0.8, 1.5 (spike), 1.2 (spike), 0.9
    ("subtract", True, [0, 1, 1, 0, 1, 1, 0]),
    # zero in the spike's step (NIR's LIF): 0.7, 1.4 (spike) -> 0, 0.7, 1.4 (spike) -> 0, ...
    ("zero", False, [0, 1, 0, 1, 0, 1, 0]),
    # zero one step later (the decayed membrane is dropped, the new input kept): 0.7, 1.4 (spike), 0.7, ...
    ("zero", True, [0, 1, 0, 1, 0, 1, 0]),
    # subtract in the spike's step: 0.7, 1.4 (spike) -> 0.4, 1.1 (spike) -> 0.1, 0.8, 1.5 (spike) -> 0.5, 1.2, 0.9
    ("subtract", False, [0, 1, 1, 0, 1, 1, 0]),
    # no reset: 0.7, 1.4, 2.1, ... above the threshold from step 1 on
    ("none", True, [0, 1, 1, 1, 1, 1, 1]),
])
def test_hand_computed_reset_sequences(mechanism, delay, expect):
    assert _spikes(mechanism, delay) == expect


def test_options_reach_the_neurons_and_bad_values_are_refused():
    cfg = make_config("braille", None, {"reset_mechanism": "zero", "reset_delay": False, "hidden": [4]})
    net = build_model(cfg.model.name, 24, 27, cfg)
    assert (net.lifs[0].reset_mechanism, net.lifs[0].reset_delay) == ("zero", False)
    rec = RecurrentSNN(3, [5], 2, max_delay=4, reset_mechanism="zero", reset_delay=False)
    assert (rec.recs[0].reset_mechanism, rec.recs[0].reset_delay) == ("zero", False)
    cfg = make_config("shd-delrec", None, {"reset_mechanism": "zero"})
    assert build_model(cfg.model.name, 140, 20, cfg).recs[0].reset_mechanism == "zero"
    with pytest.raises(ValueError, match="reset_mechanism"):
        make_config("braille", None, {"reset_mechanism": "reset"})
    with pytest.raises(TypeError, match="reset_delay"):
        make_config("braille", None, {"reset_delay": "no"})
    with pytest.raises(ValueError, match="reset_mechanism: expected one of"):
        FeedForwardSNN(2, [3], 2, reset_mechanism="reset")
    cfg = make_config("braille-eventprop", None, {"reset_delay": False})
    with pytest.raises(ValueError, match="surrogate.reset_delay: the EventProp models .* reset to 0"):
        build_model(cfg.model.name, 24, 27, cfg)
    cfg = make_config("braille-eventprop", None, {"detach_reset": False})
    with pytest.raises(ValueError, match="surrogate.detach_reset: the EventProp models .* exact gradients"):
        build_model(cfg.model.name, 24, 27, cfg)
    rec = {"hidden": [4], "first_layer_recurrent": True}  # the preset's first layer is not recurrent
    cfg = make_config("shd-delrec", None, {"reset_mechanism": "zero", "reset_delay": False, **rec})
    assert build_model(cfg.model.name, 140, 20, cfg).recs[0].detach_reset is True
    cfg = make_config("shd-delrec", None, {"reset_mechanism": "zero", "reset_delay": False, "detach_reset": False,
                                           **rec})
    assert build_model(cfg.model.name, 140, 20, cfg).recs[0].detach_reset is False
    cfg = make_config("shd-delrec", None, {"reset_mechanism": "subtract", "reset_delay": True,
                                           "reset_convention": "snntorch", **rec})
    assert build_model(cfg.model.name, 140, 20, cfg).recs[0].detach_reset is False  # subtract one step later
    with pytest.raises(TypeError, match="detach_reset"):
        RecurrentSNN(3, [5], 2, detach_reset=None)
    with pytest.raises(TypeError, match="detach_reset"):
        make_config("braille", None, {"detach_reset": 1})
    with pytest.raises(TypeError, match="detach_reset"):
        FeedForwardSNN(2, [3], 2, detach_reset="yes")
    args = build_parser().parse_args(["train", "--set", "surrogate.reset_mechanism=zero", "--set",
                                      "surrogate.reset_delay=false"])
    assert args.settings == [("surrogate.reset_mechanism", "zero"), ("surrogate.reset_delay", False)]


def test_zero_reset_run_exports_to_a_graph_nir_semantics_runs_exactly(tmp_path):
    nir = pytest.importorskip("nir")
    import snn_delays_ext as sde
    from snn_delays_ext.train import export_run, load_run_model, make_datasets

    from _nir_sim import NirSim

    run = tmp_path / "run"
    cfg = make_config(None, None, dict(QUICK, hidden=[8], readout="li_mean", beta_out=0.8, learn_beta=True,
                                       reset_mechanism="zero", reset_delay=False, epochs=2))
    train(cfg, run_dir=run, verbose=False)
    import warnings

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        path, graph = export_run(run)
    assert not [str(w.message) for w in record if str(w.message).startswith("export:")]
    assert int(graph.metadata["nir_semantics_exact"]) == 1
    model, cfg, _ = load_run_model(run)
    sde.quantize_delays(model)
    _, _, test, _, _ = make_datasets(cfg)
    x = torch.stack([test[i][0] for i in range(40)], 1)
    with torch.no_grad():
        want, spikes = model(x, record=True)
    assert float(spikes[0].sum()) > 0
    # the graph ends at the readout voltage (an LI node), reduced over time by its mean
    assert graph.metadata["output_reduction"] == "mean"
    v = torch.from_numpy(NirSim.run(nir.read(str(path)), float(graph.metadata["dt"]), x))
    got = v.mean(0).float()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_detached_zero_reset_hand_computed_gradient():
    # beta 0.5, inputs 1.5, 0.3, 0.5: spike at step 0 (reset to 0), then 0.3, 0.15 + 0.5 = 0.65.
    # d spk_2 / d I_0 flows only through the reset of step 0: mem_0' = mem_0 (1 - s_0).
    # Detached: d mem_0' / d mem_0 = 1 - s_0 = 0, so the gradient is exactly 0. snnTorch's
    # (--no-detach-reset): 1 - s_0 - mem_0 s'(mem_0 - 1) = -1.5 s'(0.5), times 0.5 per step, the
    # reset factor of step 1 (no spike: 1 - 0.3 s'(0.3 - 1)) and s'(0.65 - 1) at step 2 (s' the
    # atan surrogate's derivative). Step 1's input: 0.5 s'(-0.35) detached.
    from snntorch import surrogate

    def grad_of_input(detach):
        net = FeedForwardSNN(1, [1], 1, max_delay=1, delays=False, beta=0.5, reset_mechanism="zero",
                             reset_delay=False, detach_reset=detach)
        with torch.no_grad():
            net.linears[0].weight.fill_(1.0)
            net.linears[0].bias.zero_()
        x = torch.tensor([1.5, 0.3, 0.5]).view(3, 1, 1).requires_grad_(True)
        spikes = net(x, record=True)[1][0]
        assert spikes.flatten().tolist() == [1.0, 0.0, 0.0]
        spikes[2].sum().backward()
        return x.grad.flatten()

    def ds(u):
        v = torch.tensor(u, requires_grad=True)
        surrogate.atan()(v).backward()
        return float(v.grad)

    g = grad_of_input(True)
    assert float(g[0]) == 0.0
    assert float(g[1]) == pytest.approx(0.5 * ds(-0.35), rel=1e-6)
    assert float(g[2]) == pytest.approx(ds(-0.35), rel=1e-6)
    g = grad_of_input(False)
    step1 = 1.0 - 0.3 * ds(-0.7)
    assert float(g[0]) == pytest.approx(ds(-0.35) * 0.5 * step1 * 0.5 * (-1.5 * ds(0.5)), rel=1e-5)
    assert float(g[1]) == pytest.approx(ds(-0.35) * 0.5 * step1, rel=1e-5)
    assert float(g[2]) == pytest.approx(ds(-0.35), rel=1e-6)


def test_detached_zero_reset_has_snntorchs_values():
    torch.manual_seed(0)
    a = FeedForwardSNN(5, [16, 8], 3, max_delay=4, learn_beta=True, reset_mechanism="zero", reset_delay=False)
    b = FeedForwardSNN(5, [16, 8], 3, max_delay=4, learn_beta=True, reset_mechanism="zero", reset_delay=False,
                       detach_reset=False)
    b.load_state_dict(a.state_dict())
    assert type(b.lifs[0]) is snn.Leaky and isinstance(a.lifs[0], snn.Leaky)
    x = (torch.rand(30, 4, 5) < 0.4).float() * 2
    (la, sa), (lb, sb) = a(x, record=True), b(x, record=True)
    assert float(sa[0].sum()) > 20 and float(sa[1].sum()) > 5
    assert torch.equal(la, lb) and all(torch.equal(p, q) for p, q in zip(sa, sb))
    la.sum().backward()
    lb.sum().backward()
    assert not torch.allclose(a.linears[0].weight.grad, b.linears[0].weight.grad)
