import numpy as np
import torch

from tsfm_core.tokenizer import SCALED_CLIP, fit_scaler, left_pad, patchify


def test_robust_scaler_ignores_outliers():
    x = torch.tensor([[10.0] * 50 + [1e6]])
    clean = torch.tensor([[10.0] * 51])
    assert torch.allclose(fit_scaler(x).loc, fit_scaler(clean).loc)
    scaled = fit_scaler(x).transform(x)
    assert scaled.abs().max() <= SCALED_CLIP


def test_constant_and_all_missing_series_get_finite_scale():
    x = torch.tensor([[5.0] * 20, [float("nan")] * 20, [0.0] * 20])
    s = fit_scaler(x)
    assert torch.isfinite(s.scale).all() and (s.scale > 0).all()
    assert torch.isfinite(s.loc).all()
    y = s.transform(x)
    assert torch.allclose(s.inverse(y)[0], x[0])


def test_inverse_roundtrip_with_missing_values():
    x = torch.tensor([[1.0, 2.0, float("nan"), 4.0, 8.0]])
    s = fit_scaler(x)
    back = s.inverse(s.transform(x))
    assert torch.allclose(back[~torch.isnan(x)], x[~torch.isnan(x)])


def test_left_pad_keeps_most_recent_points():
    out = left_pad([np.arange(5.0), np.arange(20.0)], 8)
    assert torch.isnan(out[0, :3]).all() and out[0, 3:].tolist() == [0, 1, 2, 3, 4]
    assert out[1].tolist() == list(range(12, 20))


def test_patchify_pads_on_the_left_and_masks_missing():
    x = torch.tensor([[1.0, float("nan"), 3.0, 4.0, 5.0]])
    patches, mask = patchify(x, 4)
    assert patches.shape == (1, 2, 4)
    assert mask[0, 0].tolist() == [0, 0, 0, 1]
    assert mask[0, 1].tolist() == [0, 1, 1, 1]
    assert patches[0, 1, 0] == 0  # the NaN became 0, flagged by the mask
    assert not torch.isnan(patches).any()
