"""Raw compiled ops and the functions that call them refuse inconsistent arguments.

The cases are built in ``tests/_op_fuzz.py`` and run in a subprocess, so a crash (a kernel
reading outside a tensor) fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from snn_delays_ext import ops

FUZZ = Path(__file__).with_name("_op_fuzz.py")
pytestmark = pytest.mark.skipif(not ops.AVAILABLE, reason="compiled ops not built")


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(FUZZ), *args], capture_output=True, text=True, timeout=timeout)


def test_every_inconsistent_call_raises_a_named_error_and_none_crashes():
    proc = _run("report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = lines[-1]["summary"]
    records = lines[:-1]
    bad = [r for r in records if r["outcome"] != "raise"]
    assert not bad, "\n".join(f"{r['op']} / {r['label']}: {r['outcome']} {r['message']}" for r in bad[:20])
    # every op and wrapper was exercised, with several hundred raw-op calls
    assert {r["op"] for r in records} >= {"delay_channels", "synaptic_delay_backward", "recurrent_lif_backward[synaptic]",
                                          "eventprop_lif_backward[rec]", "recurrent_leaky_sequence[axonal]",
                                          "leaky_sequence_backward", "synaptic_sequence_backward"}
    assert summary["raw_total"] >= 500


def test_random_inconsistent_calls_raise_on_cpu_and_in_the_fake_kernels():
    # hypothesis: random sizes, dtype and mutation; the valid call runs, the mutated one raises
    # ValueError/TypeError naming an argument, and the meta (fake) implementation says the same
    proc = _run("hypothesis", "25")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("inconsistent calls raised") >= 19


# ---- the cases of the issue, one by one (in-process: they raise now) -----------------------
K = torch.ops.snn_delays_ext if ops.AVAILABLE else None


def _taps(c: int, w: int = 2):
    return torch.zeros(c, dtype=torch.long), torch.rand(c, w)


def test_empty_gradient_of_delay_channels_backward_is_refused():
    x = torch.rand(5, 2, 3)
    start, vals = _taps(3)
    with pytest.raises(ValueError, match=r"delay_channels_backward: grad_y: expected shape \[5, 2, 3\]"):
        K.delay_channels_backward(torch.rand(0), x, start, vals)


def test_gradient_of_the_wrong_width_is_refused():
    x, w = torch.rand(5, 2, 3), torch.rand(4, 3)
    start, vals = torch.zeros(4, 3, dtype=torch.long), torch.rand(4, 3, 2)
    with pytest.raises(ValueError, match=r"synaptic_delay_backward: grad_y: expected shape \[5, 2, 4\]"):
        K.synaptic_delay_backward(torch.rand(5, 2, 5), x, w, start, vals)


@pytest.mark.parametrize("lag", [-(2**63), 2**63 - 1, 2**31, -(2**31) - 1])
def test_start_lags_out_of_range_are_refused(lag):
    x = torch.rand(5, 2, 3)
    start, vals = _taps(3)
    start[1] = lag
    with pytest.raises(ValueError, match=r"delay_channels: start: expected lags in \[-2\^31, 2\^31\)"):
        K.delay_channels(x, start, vals)


def test_start_lags_at_the_limits_run_and_read_nothing():
    # the extreme valid lags read outside the sequence: zero output, no overflow
    x = torch.rand(5, 2, 3)
    start, vals = _taps(3)
    start[0], start[2] = -(2**31), 2**31 - 1
    y = K.delay_channels(x, start, vals)
    assert torch.equal(y[..., 0], torch.zeros(5, 2)) and torch.equal(y[..., 2], torch.zeros(5, 2))


def test_recurrent_bias_of_the_wrong_size_is_refused():
    n = 4
    x, w = torch.rand(6, 2, n), torch.rand(n, n)
    start, vals = _taps(n)
    with pytest.raises(ValueError, match=r"recurrent_lif: bias: expected shape \[4\]"):
        K.recurrent_lif(x, w, torch.rand(3), start, vals, torch.rand(n), torch.ones(n), 0, 0, 2.0, False)


@pytest.mark.parametrize("arg, value, pattern", [
    ("reset", 5, r"reset: expected 0 \(subtract\), 1 \(zero\), 2 \(none\), 3 \(subtract once\) or 4 "
                 r"\(zero once\), got 5"),
    ("reset", 3, r"reset: codes 3 and 4 \(reset once, in the spike's step\) need reset_delay=False"),
    ("surrogate", 7, r"surrogate: expected a surrogate code in \[0, 6\], got 7"),
    ("surrogate_param", float("nan"), r"surrogate_param: expected a finite float"),
])
def test_recurrent_backward_checks_its_codes(arg, value, pattern):
    n, T, B = 3, 4, 2
    mem = torch.rand(T, B, n)
    kw = dict(reset=0, surrogate=0, surrogate_param=2.0)
    kw[arg] = value
    start, vals = _taps(n)
    with pytest.raises(ValueError, match="recurrent_lif_backward: " + pattern):
        K.recurrent_lif_backward(torch.rand(T, B, n), torch.rand(T, B, n), torch.rand(n, n), start, vals,
                                 torch.rand(n), torch.ones(n), mem, torch.zeros(T, B, n, dtype=torch.uint8),
                                 torch.empty(0), kw["reset"], kw["surrogate"], kw["surrogate_param"], False)


def test_eventprop_backward_refuses_delays_beyond_max_delay():
    # the ring buffers hold max_delay + 1 steps: a larger delay would wrap around silently
    T, B, F, N, D = 4, 1, 2, 2, 3
    args = (torch.rand(T, B, N), torch.rand(T, B, N), torch.tensor([0], dtype=torch.int32),
            torch.tensor([1], dtype=torch.int32), torch.ones(1), torch.rand(N, F),
            torch.full((N, F), D + 1, dtype=torch.int16), None, None, T, B, D, 0.9, 0.8, 1.0, 1.0, 1e-6, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"eventprop_lif_backward: d_ff: expected delays in \[0, 3\]"):
        K.eventprop_lif_backward(*args)


def test_eventprop_forward_refuses_non_binary_spikes():
    x = torch.zeros(4, 1, 2)
    x[1, 0, 0] = 0.5
    with pytest.raises(ValueError, match=r"eventprop_lif_forward: x: expected binary spikes"):
        K.eventprop_lif_forward(x, torch.rand(2, 2), torch.rand(2, 2), None, None, 3, 0.9, 0.8, 1.0, 1.0, 1e-6,
                                0.0, 0.0, -1, True)


def test_fake_kernels_check_under_fake_tensor_mode():
    # torch.compile traces with fake tensors: the registered fake kernel raises the same error
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        x, start, vals = torch.rand(5, 2, 3), torch.zeros(3, dtype=torch.long), torch.rand(2, 2)
        with pytest.raises(ValueError, match=r"delay_channels: vals: expected shape \[3\] \+ \(W,\)"):
            K.delay_channels(x, start, vals)


def test_functional_recurrent_sequence_checks_its_arguments():
    import snntorch as snn

    from snn_delays_ext.functional import RecurrentLeakyParameters, recurrent_leaky_sequence

    x = torch.rand(5, 2, 3)
    good = RecurrentLeakyParameters(torch.tensor(0.9), torch.ones(3), snn.surrogate.atan())
    with pytest.raises(ValueError, match=r"params.beta: expected a scalar or a \(3,\) tensor"):
        recurrent_leaky_sequence(x, None, torch.rand(3, 3), None, torch.ones(3),
                                 good._replace(beta=torch.rand(2)), 4)
    with pytest.raises(ValueError, match=r"params.threshold: expected finite values"):
        recurrent_leaky_sequence(x, None, torch.rand(3, 3), None, torch.ones(3),
                                 good._replace(threshold=torch.tensor(float("nan"))), 4)
    with pytest.raises(TypeError, match=r"delays: expected dtype torch.float32"):
        recurrent_leaky_sequence(x, None, torch.rand(3, 3), None, torch.ones(3, dtype=torch.float64), good, 4)
    with pytest.raises(ValueError, match=r"state.past: expected shape \(4, 2, 3\)"):
        from snn_delays_ext.functional import RecurrentLeakyState

        recurrent_leaky_sequence(x, RecurrentLeakyState(torch.zeros(2, 3), torch.zeros(3, 2, 3)),
                                 torch.rand(3, 3), None, torch.ones(3), good, 4)
