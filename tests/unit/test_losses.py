import pytest
import torch

from tsfm_core.losses import LOSSES, forecast_loss, pinball

Q = torch.tensor([0.1, 0.5, 0.9])


def _case(perfect: bool):
    target = torch.rand(2, 3, 8) + 1.0
    pred = target.unsqueeze(2).repeat(1, 1, 3, 1) if perfect else torch.zeros(2, 3, 3, 8)
    mask = torch.ones_like(target)
    loc, scale = torch.full((2, 1), 10.0), torch.full((2, 1), 2.0)
    return pred, target, mask, loc, scale


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_is_finite_and_lower_for_a_perfect_forecast(name):
    good = forecast_loss(name, *_case(True)[:3], Q, 1, *_case(True)[3:])
    bad = forecast_loss(name, *_case(False)[:3], Q, 1, *_case(False)[3:])
    assert torch.isfinite(good) and torch.isfinite(bad)
    assert good < bad


@pytest.mark.parametrize("name", LOSSES)
def test_masked_points_do_not_count(name):
    pred, target, mask, loc, scale = _case(False)
    mask[..., 4:] = 0
    garbage = target.clone()
    garbage[..., 4:] = 1e6
    a = forecast_loss(name, pred, target, mask, Q, 1, loc, scale)
    b = forecast_loss(name, pred, garbage, mask, Q, 1, loc, scale)
    assert torch.allclose(a, b)


def test_median_pinball_equals_mae():
    target = torch.randn(4, 10)
    pred = torch.randn(4, 1, 10)
    loss = pinball(pred, target, torch.ones_like(target), torch.tensor([0.5]))
    assert torch.allclose(loss, (pred[:, 0] - target).abs().mean())


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError):
        forecast_loss("huber", *_case(True)[:3], Q, 1, *_case(True)[3:])
