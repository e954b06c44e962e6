"""``snn-delays export RUN_DIR``: a trained run's selected model as an NIR file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

import snn_delays_ext as sde  # noqa: E402
from snn_delays_ext.train import export_run, load_run_model, make_config, make_datasets, train  # noqa: E402
from snn_delays_ext.train.cli import main  # noqa: E402

from _nir_sim import NirSim  # noqa: E402
from _train_helpers import QUICK  # noqa: E402


def _reduce(v: torch.Tensor, how: str) -> torch.Tensor:
    """Class scores from a graph's output ``(T, B, C)``, as ``metadata["output_reduction"]`` documents
    (written out here, not taken from the training code)."""
    T = v.shape[0]
    if how == "mean":
        return v.sum(0) / T
    if how == "max":
        return v.max(0).values
    if how == "sum":
        return v.sum(0)
    if how == "shaped_mean":
        return sum(np.exp(-t / T) * v[t] for t in range(T)) / T
    raise AssertionError(f"unknown reduction {how!r}")


def _test_batch(cfg, n=40):
    _, _, test, _, _ = make_datasets(cfg)
    xs = [test[i][0] for i in range(n)]
    return torch.stack(xs, 1)


@pytest.fixture(scope="module")
def ff_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ff")
    cfg = make_config(None, None, dict(QUICK, hidden=[8], readout="li_mean", beta_out=0.8, learn_beta=True,
                                       interpolation="triangle", epochs=2))
    train(cfg, run_dir=run, verbose=False)
    return run


def test_export_cli_writes_the_network_the_run_tested(ff_run, capsys):
    assert main(["export", str(ff_run)]) == 0
    path = ff_run / "model.nir"
    out = capsys.readouterr()
    assert path.is_file() and f"wrote {path}" in out.out
    # snnTorch's default reset (subtract, one step later) is not NIR's: the export says so
    assert "--set surrogate.reset_mechanism=zero --set surrogate.reset_delay=false" in out.err
    graph = nir.read(str(path))
    assert graph.metadata["readout"] == "li_mean" and int(graph.metadata["n_classes"]) == 2
    assert graph.metadata["output_reduction"] == "mean"
    assert int(graph.metadata["nir_semantics_exact"]) == 0
    assert float(graph.metadata["beta_out"]) == pytest.approx(0.8)
    # the readout's leaky integrator v = 0.8 v + I is the graph's last node: with 1 ms steps,
    # tau = 1 ms / (1 - 0.8) = 5 ms and r = tau / dt = 5 (so (dt / tau) r = 1)
    (last,) = [a for a, b in graph.edges if b == "output"]
    li = graph.nodes[last]
    assert isinstance(li, nir.LI)
    np.testing.assert_allclose(li.tau, [5e-3, 5e-3], rtol=1e-6)
    np.testing.assert_allclose(li.r, [5.0, 5.0], rtol=1e-6)
    np.testing.assert_array_equal(li.v_leak, [0.0, 0.0])
    model, cfg, info = load_run_model(ff_run)
    assert info == {"n_inputs": 2, "n_classes": 2}
    x = _test_batch(cfg)
    sde.quantize_delays(model)  # the exported network is the rounded one the run tested
    with torch.no_grad():
        want = model(x)
        net = sde.import_from_nir(graph)
        assert isinstance(net[-1], sde.LeakyReadout)
        sde.reset(net)
        v = torch.stack([net(x[t]) for t in range(x.shape[0])])
    torch.testing.assert_close(_reduce(v, "mean"), want)
    # the rounded test accuracy the run reported is this network's
    results = json.loads((ff_run / "results.json").read_text())
    assert results["n_inputs"] == 2 and results["n_classes"] == 2


def test_export_options_and_errors(ff_run, tmp_path, capsys):
    out = tmp_path / "sub" / "net.nir"
    assert main(["export", str(ff_run), "--out", str(out), "--dt", "0.002"]) == 0
    graph = nir.read(str(out))
    assert float(graph.metadata["dt"]) == 0.002  # the sequence task has no bin width: --dt wins
    _, g_default = export_run(ff_run, tmp_path / "d.nir")
    assert float(g_default.metadata["dt"]) == 1e-3  # else 1 ms per step
    capsys.readouterr()
    assert main(["export", str(tmp_path / "nothing")]) == 2
    assert "model_best.pt" in capsys.readouterr().err
    assert main(["export", str(ff_run), "--dt", "-1"]) == 2
    assert "dt" in capsys.readouterr().err
    # a hardware limit below the longest rounded delay is refused, at it accepted
    model = load_run_model(ff_run)[0]
    longest = max(int(d.max()) for d in sde.quantize_delays(model).values())
    assert longest >= 1
    assert main(["export", str(ff_run), "--max-hardware-delay", str(longest - 1)]) == 2
    assert "max_hardware_delay" in capsys.readouterr().err
    assert main(["export", str(ff_run), "--max-hardware-delay", str(longest)]) == 0


def test_export_of_an_eventprop_run_is_simulated_exactly_by_nir_semantics(tmp_path):
    # the EventProp neurons reset to 0 in the step of the spike, as NIR's CubaLIF: an
    # independent NIR interpreter gives the network's readout voltage
    run = tmp_path / "ep"
    cfg = make_config("sequence-eventprop", None, dict(epochs=1, train_limit=100, eval_limit=50, progress=False,
                                                       tensorboard=False, hidden=[6], weight_mean=30.0, weight_std=5.0))
    train(cfg, run_dir=run, verbose=False)
    path, graph = export_run(run)
    assert graph.metadata["readout"] == "li_max" and "beta_out" not in graph.metadata
    assert graph.metadata["output_reduction"] == "max"
    # the EventProp readout is its own CubaLI node: no LI is added
    assert not any(isinstance(n, nir.LI) for n in graph.nodes.values())
    assert int(graph.metadata["nir_semantics_exact"]) == 1
    model, cfg, _ = load_run_model(run)
    sde.quantize_delays(model)
    x = _test_batch(cfg, n=20)
    with torch.no_grad():
        h = model.layers[0](x)[0]
        assert float(h.sum()) > 0
        v = model.out(h)
        np.testing.assert_allclose(NirSim.run(nir.read(str(path)), float(graph.metadata["dt"]), x),
                                   v.double().numpy(), rtol=1e-5, atol=1e-5)
        assert torch.equal(sde.import_from_nir(graph)(x), v)


def test_sizes_of_runs_saved_before_they_were_recorded(ff_run, tmp_path):
    saved = torch.load(ff_run / "model_best.pt", weights_only=True)
    del saved["n_inputs"], saved["n_classes"]
    old = tmp_path / "old"
    old.mkdir()
    torch.save(saved, old / "model_best.pt")
    assert load_run_model(old)[2] == {"n_inputs": 2, "n_classes": 2}


def test_braille_run_with_nirs_reset_exports_exactly(shared_data, tmp_path):
    # real data: a short Braille run with NIR's reset; the independent interpreter of NIR's
    # equations gives the trained model's logits on real test samples
    if not (shared_data / "braille").is_dir():
        pytest.skip("no Braille data in the shared folder")
    run = tmp_path / "br"
    cfg = make_config("braille", None, dict(data_dir=str(shared_data / "braille"), hidden=[24, 24], max_delay=6,
                                            epochs=1, train_limit=256, eval_limit=64, progress=False,
                                            tensorboard=False, reset_mechanism="zero", reset_delay=False))
    train(cfg, run_dir=run, verbose=False)
    path, graph = export_run(run)
    assert int(graph.metadata["nir_semantics_exact"]) == 1 and float(graph.metadata["dt"]) == 0.02
    model, cfg, _ = load_run_model(run)
    sde.quantize_delays(model)
    x = _test_batch(cfg, n=32)
    with torch.no_grad():
        want, spikes = model(x, record=True)
    assert all(float(s.sum()) > 0 for s in spikes)
    v = torch.from_numpy(NirSim.run(nir.read(str(path)), 0.02, x))
    got = _reduce(v, graph.metadata["output_reduction"]).float()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("readout", ["sum", "li_mean", "li_max", "li_shaped"])
def test_every_readout_is_the_graph_output_reduced_as_recorded(readout, tmp_path):
    # NIR's reset, so that the independent interpreter runs the trained network; its output
    # reduced over time as metadata["output_reduction"] says gives the model's logits
    run = tmp_path / readout
    cfg = make_config(None, None, dict(QUICK, hidden=[8], readout=readout, beta_out=0.7, epochs=1,
                                       interpolation="round", reset_mechanism="zero", reset_delay=False))
    train(cfg, run_dir=run, verbose=False)
    path, graph = export_run(run)
    has_li = any(isinstance(n, nir.LI) for n in graph.nodes.values())
    assert has_li == (readout != "sum")  # "sum" adds up the readout current itself
    model, cfg, _ = load_run_model(run)
    sde.quantize_delays(model)
    x = _test_batch(cfg, n=30)
    with torch.no_grad():
        want, spikes = model(x, record=True)
    assert float(spikes[0].sum()) > 0
    v = torch.from_numpy(NirSim.run(nir.read(str(path)), float(graph.metadata["dt"]), x))
    got = _reduce(v, graph.metadata["output_reduction"]).float()
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-4)


def test_recurrent_run_with_an_li_readout_imports_to_its_logits(tmp_path):
    # DelRec-style recurrent model, li_mean readout: the import ends with the LeakyReadout, and
    # the mean over time of its voltage is the model's logits (recurrent delays included)
    run = tmp_path / "rec"
    cfg = make_config(None, None, dict(QUICK, model="delrec", hidden=[6], max_delay=4, readout="li_mean",
                                       beta_out=0.9, epochs=1))
    train(cfg, run_dir=run, verbose=False)
    with pytest.warns(UserWarning, match="reset"):
        _, graph = export_run(run)
    assert graph.metadata["output_reduction"] == "mean"
    model, cfg, _ = load_run_model(run)
    sde.quantize_delays(model)
    x = _test_batch(cfg, n=20)
    net = sde.import_from_nir(graph)
    assert isinstance(net[-1], sde.LeakyReadout) and net[-1].beta.item() == pytest.approx(0.9)
    with torch.no_grad():
        want, spikes = model(x, record=True)
        sde.reset(net)
        v = torch.stack([net(x[t]) for t in range(x.shape[0])])
    assert float(spikes[0].sum()) > 0
    torch.testing.assert_close(_reduce(v, "mean"), want, rtol=1e-5, atol=1e-5)
