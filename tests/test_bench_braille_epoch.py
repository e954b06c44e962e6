"""``benchmarks/braille_epoch.py`` runs at a tiny size and reports every way and every part."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import braille_epoch  # noqa: E402


def test_braille_epoch_benchmark_runs(tmp_path):
    out = tmp_path / "r.json"
    args = ["--batch", "3", "--steps", "6", "--hidden", "5", "4", "--max-delay", "3", "--repeats", "1",
            "--json", str(out)]
    assert braille_epoch.main(args) == 0
    res = json.loads(out.read_text())
    assert res["shape"] == "B3 T6 24-5-4-27 D3"
    assert set(res["step_ms"]) == {"snntorch_loop", "fused", "no_delay"}
    assert all(v > 0 for v in res["step_ms"].values())
    # two hidden layers on their real inputs, and the last one on synthetic input events
    assert [r["layer"] for r in res["layers"]] == ["24->5", "5->4", "5->4 on 0.05 input events"]
    parts = [f"{p}_{d}" for p in ("delayed_linear", "linear", "neurons_fused", "neurons_snntorch")
             for d in ("fwd", "bwd")]
    for r in res["layers"]:
        assert all(r[p] > 0 for p in parts)
    assert len(res["delayed_layer_over_linear_layer"]) == 3
    assert set(res["other_ms"]) == {"readout_loss_fwd_bwd", "optimizer_step", "dropout_fwd_bwd"}


def test_the_snntorch_loop_is_the_model(tmp_path):
    """The old path written out in the benchmark computes what the model computes."""
    net = braille_epoch.build(True, [6, 5], 4, 1.0, "cpu")
    x = (torch.rand(8, 3, braille_epoch.N_IN) < 0.2).float()
    torch.manual_seed(5)
    a = braille_epoch.forward_snntorch_loop(net, x)
    torch.manual_seed(5)
    b = braille_epoch.forward_model(net, x)
    torch.testing.assert_close(a, b)
    braille_epoch.check_same_gradients(net, x, torch.tensor([0, 3, 26]))


@pytest.mark.parametrize("bad", [["--density", "0"], ["--density", "1.5"], ["--repeats", "0"], ["--batch", "x"]])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(SystemExit):
        braille_epoch.main(bad)
