import torch

from tsfm_core.model import SIZES, ModelConfig, PatchTransformer, init_weights


def _model():
    torch.manual_seed(0)
    m = PatchTransformer(SIZES["tiny"])
    init_weights(m, seed=1)
    return m.eval()


def test_output_shape_is_quantiles_by_output_patch():
    m = _model()
    cfg = m.config
    out = m(torch.randn(3, 5, cfg.patch_len), torch.ones(3, 5, cfg.patch_len))
    assert out.shape == (3, 5, len(cfg.quantiles), cfg.output_patch_len)


def test_attention_is_causal():
    m = _model()
    p, mask = torch.randn(1, 6, 16), torch.ones(1, 6, 16)
    changed = p.clone()
    changed[0, 5] += 10.0
    a, b = m(p, mask), m(changed, mask)
    assert torch.allclose(a[0, :5], b[0, :5], atol=1e-5)
    assert not torch.allclose(a[0, 5], b[0, 5])


def test_padding_patches_do_not_change_the_forecast():
    m = _model()
    p, mask = torch.randn(1, 4, 16), torch.ones(1, 4, 16)
    padded_p = torch.cat([torch.zeros(1, 3, 16), p], dim=1)
    padded_mask = torch.cat([torch.zeros(1, 3, 16), mask], dim=1)
    assert torch.allclose(m(p, mask)[0, -1], m(padded_p, padded_mask)[0, -1], atol=1e-5)


def test_config_rejects_inconsistent_sizes():
    import pytest

    with pytest.raises(ValueError):
        ModelConfig(patch_len=16, output_patch_len=20)
    with pytest.raises(ValueError):
        ModelConfig(quantiles=(0.1, 0.9))
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()
