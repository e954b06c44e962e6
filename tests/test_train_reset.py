"""The surrogate models' reset options (``reset_mechanism``, ``reset_delay``): snnTorch's
resets, and NIR's (to 0 in the step of the spike), which makes the exported graph exact."""

from __future__ import annotations

import numpy as np
import pytest
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
    net = build_model(cfg.model, 24, 27, cfg)
    assert (net.lifs[0].reset_mechanism, net.lifs[0].reset_delay) == ("zero", False)
    rec = RecurrentSNN(3, [5], 2, max_delay=4, reset_mechanism="zero", reset_delay=False)
    assert (rec.recs[0].reset_mechanism, rec.recs[0].reset_delay) == ("zero", False)
    cfg = make_config("shd-delrec", None, {"reset_mechanism": "zero"})
    assert build_model(cfg.model, 140, 20, cfg).recs[0].reset_mechanism == "zero"
    with pytest.raises(ValueError, match="reset_mechanism"):
        make_config("braille", None, {"reset_mechanism": "reset"})
    with pytest.raises(TypeError, match="reset_delay"):
        make_config("braille", None, {"reset_delay": "no"})
    with pytest.raises(ValueError, match="reset_mechanism, reset_delay.*alif"):
        make_config("braille", None, {"neuron": "alif", "reset_mechanism": "zero"})
    with pytest.raises(ValueError, match="reset_mechanism, reset_delay.*alif"):
        FeedForwardSNN(2, [3], 2, neuron="alif", reset_delay=False)
    cfg = make_config("braille-eventprop", None, {"reset_delay": False})
    with pytest.raises(ValueError, match="reset_delay: the EventProp neurons reset to 0"):
        build_model(cfg.model, 24, 27, cfg)
    args = build_parser().parse_args(["train", "--reset-mechanism", "zero", "--no-reset-delay"])
    assert (args.reset_mechanism, args.reset_delay) == ("zero", False)


def test_zero_reset_run_exports_to_a_graph_nir_semantics_runs_exactly(tmp_path):
    nir = pytest.importorskip("nir")
    import snn_delays_ext as sde
    from snn_delays_ext.train import export_run, load_run_model, make_datasets
    from snn_delays_ext.train.models import readout_logits

    from _nir_sim import NirSim

    run = tmp_path / "run"
    cfg = make_config(None, None, dict(QUICK, hidden=[8], readout="li_mean", beta_out=0.8, learn_beta=True,
                                       reset_mechanism="zero", reset_delay=False, epochs=2))
    train(cfg, run_dir=run, verbose=False)
    import warnings

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        path, graph = export_run(run)
    assert not [w for w in record if str(w.message).startswith("export")]
    assert int(graph.metadata["nir_semantics_exact"]) == 1
    model, cfg, _ = load_run_model(run)
    sde.quantize_delays(model)
    _, _, test, _, _ = make_datasets(cfg)
    x = torch.stack([test[i][0] for i in range(40)], 1)
    with torch.no_grad():
        want, spikes = model(x, record=True)
    assert float(spikes[0].sum()) > 0
    cur = torch.from_numpy(NirSim.run(nir.read(str(path)), float(graph.metadata["dt"]), x))
    got = readout_logits(cur, "li_mean", 0.8).float()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)
