"""Small hardening cases: empty batches, delay ranges no buffer can hold, options a backward does
not use, models that save whole, 16-bit delays, a missing plotting package, what the sdist holds."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import pytest
import torch

import snn_delays_ext as sde
from snn_delays_ext import functional as Fn
from snn_delays_ext.eventprop import DelayedRecurrentSynaptic
from snn_delays_ext.surrogate import surrogate_spec, triangle

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["synaptic", "axonal", "dendritic"])
def test_an_empty_batch_steps_and_runs_in_every_mode(kind):
    layer = sde.DelayedLinear(3, 2, max_delay=4, delay_type=kind)
    assert layer(torch.zeros(0, 3)).shape == (0, 2)
    layer.reset_state()
    assert layer(torch.zeros(6, 0, 3)).shape == (6, 0, 2)


@pytest.mark.parametrize("make", [
    lambda d: sde.DelayedLinear(3, 2, max_delay=d),
    lambda d: sde.DelayedRecurrentLeaky(0.9, 3, max_delay=d),
    lambda d: DelayedRecurrentSynaptic(3, 2, max_delay=d),
    lambda d: Fn.tap_range(d, 0.0),
])
@pytest.mark.parametrize("bad", [2**30, 2**64])
def test_a_delay_range_no_buffer_can_hold_is_refused_naming_it(make, bad):
    with pytest.raises(ValueError, match=r"max_delay: expected an int in \[1, 2\*\*30\)"):
        make(bad)


def test_max_spikes_belongs_to_the_eventprop_backward():
    with pytest.raises(ValueError, match="max_spikes: the spike buffer of the EventProp backward"):
        DelayedRecurrentSynaptic(3, 2, 4, backward="surrogate", max_spikes=5)
    assert DelayedRecurrentSynaptic(3, 2, 4, backward="eventprop", max_spikes=5).max_spikes == 5


def test_a_model_with_the_triangle_surrogate_saves_whole():
    lif = sde.DelayedRecurrentLeaky(0.9, 4, max_delay=5, spike_grad=triangle(0.7))
    buf = io.BytesIO()
    torch.save(lif, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert surrogate_spec(again.spike_grad).param == pytest.approx(0.7)
    x = torch.rand(12, 2, 4) * 2
    for a, b in zip(lif(x), again(x)):
        assert torch.equal(a, b)


def test_sixteen_bit_delays_warn_when_they_move():
    layer = sde.DelayedLinear(3, 2, max_delay=20)
    with torch.no_grad():
        layer.delays.fill_(17.37)
    with pytest.warns(UserWarning, match=r"delays: converting the delays to torch.bfloat16 moved them by up to"):
        layer.to(torch.bfloat16)
    whole = sde.DelayedLinear(3, 2, max_delay=20, delay_init=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole.half()  # whole steps are exact in float16: nothing to say


def test_plot_without_matplotlib_names_the_package(tmp_path, monkeypatch):
    from snn_delays_ext.train import plot_run

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    (tmp_path / "metrics.csv").write_text("epoch\n")
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plot_run(tmp_path)


@pytest.mark.slow
def test_the_sdist_holds_the_license_examples_presets_and_sources(tmp_path):
    res = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                            "SNN_DELAYS_CPU": "0"})
    assert res.returncode == 0, res.stderr[-2000:]
    (sdist,) = tmp_path.glob("*.tar.gz")
    names = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
    for need in ("LICENSE", "README.md", "examples/sequence_detection.py",
                 "snn_delays_ext/train/presets/braille.toml", "snn_delays_ext/csrc/cuda/eventprop_cuda_ops.cpp",
                 "snn_delays_ext/csrc/cuda/eventprop_launch.h"):
        assert need in names, need
