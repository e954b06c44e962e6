"""Tap weights of the interpolation triangle, the round mode and the width schedule."""

import math

import pytest
import torch

from snn_delays_ext.functional import delay_taps, delrec_sigma, round_half_up, tap_range


def test_linear_interpolation_hand_case():
    # s = 1: l = 2.25 -> 0.75 on lag 2, 0.25 on lag 3
    h = delay_taps(torch.tensor([2.25]), max_delay=5)
    expected = torch.tensor([[0, 0, 0.75, 0.25, 0, 0]])
    assert torch.allclose(h, expected)


def test_wide_triangle_hand_case():
    # s = 2 (sigma 1), l = 3: weights (2 - |k - 3|) / 4 on k = 2, 3, 4
    h = delay_taps(torch.tensor([3.0]), max_delay=5, sigma=1.0)
    k0, k1 = tap_range(5, 1.0)
    assert (k0, k1) == (0, 6)
    expected = torch.zeros(7)
    expected[2], expected[3], expected[4] = 0.25, 0.5, 0.25
    assert torch.allclose(h[0], expected)


@pytest.mark.parametrize("sigma", [0.0, 1.0, 3.0])
def test_taps_sum_to_one_for_integer_width(sigma):
    d = torch.rand(50, dtype=torch.float64) * 10 + 5  # away from the clamped ends
    h = delay_taps(d, max_delay=20, sigma=sigma)
    assert torch.allclose(h.sum(-1), torch.ones(50, dtype=torch.float64))


def test_recurrent_range_starts_at_one_and_clamps():
    h = delay_taps(torch.tensor([0.2, 7.0]), max_delay=4, min_delay=1)
    # lags 1..4; 0.2 is clamped to 1, 7 to 4
    assert torch.equal(h, torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))


def test_triangle_gradient_matches_finite_differences():
    d = torch.tensor([2.3, 4.6, 7.2], dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 13, dtype=torch.float64)

    def f(dd):
        return (delay_taps(dd, max_delay=10, sigma=1.5) * w).sum()

    assert torch.autograd.gradcheck(f, (d,))
    # slope sign(k - l) / s^2 inside the triangle, by hand for one lag
    (g,) = torch.autograd.grad(delay_taps(d, 10, 1.5)[0, 3], d)
    assert g[0].item() == pytest.approx(1 / 2.5**2)


def test_round_half_up_never_truncates():
    x = torch.tensor([0.49, 0.5, 1.5, 2.5, 2.51, 3.99])
    assert torch.equal(round_half_up(x), torch.tensor([0.0, 1, 2, 3, 3, 4]))


def test_round_mode_forward_is_one_hot_at_rounded_lag():
    h = delay_taps(torch.tensor([2.5, 2.49]), max_delay=5, interpolation="round")
    assert torch.equal(h.argmax(-1), torch.tensor([3, 2]))
    assert torch.equal(h.sum(-1), torch.ones(2))


def test_round_mode_gradient_is_central_difference_for_unit_width():
    # forward at the integer lag r; gradient of sum_k h_k x_k is (x_{r+1} - x_{r-1}) / 2
    x = torch.randn(8, dtype=torch.float64)
    d = torch.tensor([3.3], dtype=torch.float64, requires_grad=True)
    (delay_taps(d, 7, interpolation="round")[0] * x).sum().backward()
    assert d.grad.item() == pytest.approx((x[4] - x[2]).item() / 2)


def test_bad_interpolation_name():
    with pytest.raises(ValueError, match="interpolation"):
        delay_taps(torch.tensor([1.0]), 3, interpolation="gauss")


def test_delrec_schedule_formula():
    assert delrec_sigma(0, 100) == 10.0
    assert delrec_sigma(37, 50, sigma0=4.0) == pytest.approx(4.0 * 0.95 ** (100 * 37 / 50))
    assert delrec_sigma(100, 100) == pytest.approx(10 * math.exp(100 * math.log(0.95)))
    with pytest.raises(ValueError, match="epochs"):
        delrec_sigma(0, 0)


def test_whole_step_delay_gets_the_right_segment_slope():
    # at l = 2 exactly, autograd's abs/relu would give slope 0 on every tap; the layer must
    # still learn: the slope is that of linear interpolation on [2, 3]
    x = torch.tensor([0.0, 5.0, 1.0, 3.0, 0.0], dtype=torch.float64)
    d = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    (delay_taps(d, 4)[0] * x).sum().backward()
    assert d.grad.item() == pytest.approx(x[3].item() - x[2].item())
    # and it is the one-sided finite difference
    eps = 1e-6
    f = lambda v: float((delay_taps(torch.tensor([v], dtype=torch.float64), 4)[0] * x).sum())
    assert d.grad.item() == pytest.approx((f(2.0 + eps) - f(2.0)) / eps, rel=1e-5)
