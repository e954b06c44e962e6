"""Training tasks with EventProp and delays."""

from __future__ import annotations

import torch

from snn_delays_ext.eventprop import LeakyIntegrator, max_voltage_ce

T, GAP = 60, 10


def _sequence_batch(B, g):
    """Two input neurons fire GAP steps apart; the class is which one fires first."""
    y = torch.randint(0, 2, (B,), generator=g)
    t0 = torch.randint(2, 12, (B,), generator=g)
    x = torch.zeros(T, B, 2)
    x[t0, torch.arange(B), y] = 1.0
    x[t0 + GAP, torch.arange(B), 1 - y] = 1.0
    return x, y


def test_sequence_detection_from_worst_case_delays_reaches_100_percent():
    # 2 inputs -> 2 leaky-integrator outputs; output k must delay the input that fires first
    # in class k by GAP steps. Start from the worst case: delays aligned with the wrong class.
    g = torch.Generator().manual_seed(0)
    ro = LeakyIntegrator(2, 2, max_delay=20, tau_syn=5.0, tau_mem=20.0, backward="eventprop",
                         delay_init=torch.tensor([[0.0, float(GAP)], [float(GAP), 0.0]]))
    with torch.no_grad():
        ro.weight.fill_(1.0)
    xt, yt = _sequence_batch(256, g)
    with torch.no_grad():
        acc0 = float((ro(xt).max(0).values.argmax(1) == yt).float().mean())
    assert acc0 == 0.0  # worst case indeed
    opt = torch.optim.Adam([{"params": [ro.delays], "lr": 0.5}, {"params": [ro.weight], "lr": 0.01}])
    for _ in range(40):
        x, y = _sequence_batch(32, g)
        loss = max_voltage_ce(5.0 * ro(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ro.clamp_delays_()
    ro.quantize_delays()  # report with integer delays, as hardware runs them
    with torch.no_grad():
        acc = float((ro(xt).max(0).values.argmax(1) == yt).float().mean())
    assert acc == 1.0
    d = ro.delays.detach()
    assert d[0, 0] > d[0, 1] and d[1, 1] > d[1, 0]  # the first-firing input is delayed
