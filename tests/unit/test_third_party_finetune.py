"""Full fine-tuning of tiny Chronos-Bolt and Chronos-2 checkpoints (tsfm_core.third_party.finetune)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.third_party_checkpoints import bolt, chronos2
from tsfm_core import third_party
from tsfm_core.finetune import FinetuneConfig, LoraConfig
from tsfm_core.series import Series


@pytest.fixture(params=["chronos-bolt", "chronos-2"])
def base(request, tmp_path):
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    import torch

    torch.manual_seed(0)
    {"chronos-bolt": bolt, "chronos-2": chronos2}[request.param](tmp_path / "base")
    return third_party.load(tmp_path / "base")


def _weights(forecaster) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in forecaster.pipeline.inner_model.parameters()])


def test_finetuned_copy_trains_saves_and_reloads(base, tmp_path):
    from tsfm_core.third_party import finetune

    rng = np.random.default_rng(0)
    series = [np.sin(np.arange(n) / 4) * 10 + rng.normal(0, 0.5, n) for n in (90, 40)]
    before = _weights(base)
    tuned, points = finetune.finetuned_copy(base, series, FinetuneConfig(steps=3, learning_rate=1e-3, batch_size=8))
    assert points == 130
    np.testing.assert_array_equal(_weights(base), before)  # the served base is left alone
    assert not np.allclose(_weights(tuned), before)
    cfg = FinetuneConfig(steps=3, learning_rate=1e-3, batch_size=8)
    finetune.save(tuned, tmp_path / "tuned", "amazon/x", cfg, {"organization": "o"})
    record = json.loads((tmp_path / "tuned" / finetune.FINETUNE_FILE).read_text())
    assert record["base_model"] == "amazon/x" and record["finetune"]["steps"] == 3 and record["organization"] == "o"
    reloaded = third_party.load(tmp_path / "tuned", family=base.family)
    probe = [Series(series[0][:50]), Series(series[1])]
    for a, b in zip(tuned.forecast(probe, 6, [0.1, 0.5, 0.9]), reloaded.forecast(probe, 6, [0.1, 0.5, 0.9])):
        assert np.isfinite(a.quantiles).all()
        np.testing.assert_allclose(a.quantiles, b.quantiles, rtol=1e-5, atol=1e-5)


def test_refuses_what_it_cannot_tune(base):
    from tsfm_core.third_party import finetune

    with pytest.raises(ValueError, match="LoRA"):
        finetune.finetuned_copy(base, [np.arange(30.0)], FinetuneConfig(steps=1, lora=LoraConfig()))
    with pytest.raises(ValueError, match="at least two observed"):
        finetune.finetuned_copy(base, [np.array([1.0, np.nan])], FinetuneConfig(steps=1))
    same, points = finetune.finetuned_copy(base, [np.arange(30.0)], FinetuneConfig(steps=0))
    assert points == 0 and same.pipeline is base.pipeline


def test_serving_adapter_finetunes_into_a_loadable_directory(base, tmp_path):
    from serve_apps.models import third_party as adapter

    assert adapter.finetunable(base)
    points = adapter.finetune(base, [np.arange(60.0) % 7], FinetuneConfig(steps=1, batch_size=4),
                              tmp_path / "ft", "amazon/x")
    assert points == 60
    assert third_party.detect_family(tmp_path / "ft") == base.family
    assert adapter.load(tmp_path / "ft").forecast([Series(np.arange(20.0))], 4, [0.5])[0].median.shape == (4, 1)
