import copy

import numpy as np
import pytest
import torch

from tests.conftest import seasonal_series
from tsfm_core.checkpoint import load_model, save_finetuned, save_model
from tsfm_core.finetune import (
    FinetuneConfig,
    LoraConfig,
    apply_lora,
    finetuned_copy,
    prepare_for_finetune,
    select_depth,
)
from tsfm_core.model import SIZES, PatchTransformer, init_weights
from tsfm_core.predict import Forecaster


def _model(size="tiny"):
    m = PatchTransformer(SIZES[size])
    init_weights(m, seed=3)
    return m.eval()


def _trainable(m):
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_depth_unfreezes_progressively_more():
    counts = []
    for depth in range(1, 6):
        m = _model("base")
        select_depth(m, depth)
        counts.append(_trainable(m))
    assert counts == sorted(counts) and len(set(counts)) == 5
    assert counts[-1] == _model("base").n_parameters()
    m = _model("base")
    select_depth(m, 1)
    assert all(not p.requires_grad for p in m.blocks.parameters())
    assert all(p.requires_grad for p in m.head.parameters())


@pytest.mark.parametrize("targets,expected", [("QV", 2), ("QKVO", 4), ("QKVO_FFN", 6)])
def test_lora_wraps_the_targets_and_starts_at_the_base(targets, expected):
    m = _model()
    p, mask = torch.randn(2, 4, 16), torch.ones(2, 4, 16)
    before = m(p, mask)
    apply_lora(m, LoraConfig(rank=4, alpha=8, targets=targets))
    names = [n for n, q in m.named_parameters() if q.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert len(names) == 2 * expected * len(m.blocks)
    assert torch.allclose(before, m(p, mask), atol=1e-6)  # B = 0 at init


def test_finetuning_reduces_the_loss_and_leaves_the_original_untouched():
    m = _model()
    original = copy.deepcopy(m.state_dict())
    series = [seasonal_series(300, seed=i) for i in range(4)]
    cfg = FinetuneConfig(steps=60, depth=5, loss="mae", learning_rate=3e-3, batch_size=16)
    tuned, points = finetuned_copy(m, series, cfg)
    assert points > 0
    for k, v in m.state_dict().items():
        assert torch.equal(v, original[k])
    ctx = [s[:-32] for s in series]
    actual = np.stack([s[-32:] for s in series])
    err_before = np.abs(Forecaster(m).predict_quantiles(ctx, 32)[:, m.config.median_index] - actual).mean()
    err_after = np.abs(Forecaster(tuned).predict_quantiles(ctx, 32)[:, m.config.median_index] - actual).mean()
    assert err_after < err_before


def test_early_stopping_ends_training_before_the_step_budget():
    m = _model()
    cfg = FinetuneConfig(steps=200, depth=1, learning_rate=0.0, early_stopping_patience=2, eval_every=5)
    prepare_for_finetune(m, cfg)
    from tsfm_core.finetune import run_finetune

    steps = [r.step for r in run_finetune(m, [seasonal_series(100)], cfg)]
    assert steps[-1] < 200


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=2, targets="QKVO_FFN")])
def test_finetuned_checkpoint_roundtrip_stores_only_trained_tensors(tmp_path, lora):
    base = _model()
    base_dir = save_model(base, tmp_path / "base-x", {"id": "base-x"})
    cfg = FinetuneConfig(steps=5, depth=2, lora=lora, batch_size=8)
    tuned, _ = finetuned_copy(base, [seasonal_series(200)], cfg)
    out = save_finetuned(tuned, tmp_path / "ft", "base-x", base_dir, cfg)
    assert (out / "model.safetensors").stat().st_size < (base_dir / "model.safetensors").stat().st_size
    loaded = load_model(out, resolve_base=lambda _id: base_dir)
    p, mask = torch.randn(1, 3, 16), torch.ones(1, 3, 16)
    assert torch.allclose(loaded(p, mask), tuned(p, mask), atol=1e-5)


def test_finetuned_model_refuses_a_changed_base(tmp_path):
    from tsfm_core.checkpoint import CheckpointError

    base = _model()
    base_dir = save_model(base, tmp_path / "b", {})
    cfg = FinetuneConfig(steps=1, batch_size=4)
    tuned, _ = finetuned_copy(base, [seasonal_series(100)], cfg)
    out = save_finetuned(tuned, tmp_path / "ft", "b", base_dir, cfg)
    init_weights(base, seed=99)
    save_model(base, base_dir, {})
    with pytest.raises(CheckpointError):
        load_model(out, resolve_base=lambda _id: base_dir)


def test_invalid_finetune_settings_are_rejected():
    with pytest.raises(ValueError):
        FinetuneConfig(depth=6)
    with pytest.raises(ValueError):
        FinetuneConfig(loss="huber")
    with pytest.raises(ValueError):
        LoraConfig(targets="ALL")
