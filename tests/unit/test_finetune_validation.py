"""Validated fine-tuning (tsfm_core only, no Ray): the split, scoring, early stopping on validation,
best-checkpoint selection and seed reproducibility."""

import numpy as np
import pytest
import torch

from tests.conftest import seasonal_series
from tsfm_core import model_selection
from tsfm_core.finetune import (
    FinetuneConfig,
    LoraConfig,
    finetune,
    prepare_for_finetune,
    trainable_state,
)
from tsfm_core.metrics import mae
from tsfm_core.model import SIZES, PatchTransformer, init_weights
from tsfm_core.predict import Forecaster
from tsfm_core.validation import (
    ValidationScores,
    build_batch,
    holdout_split,
    score,
    split_for_validation,
    validation_windows,
)


def _model(seed=3):
    m = PatchTransformer(SIZES["tiny"])
    init_weights(m, seed=seed)
    return m.eval()


def test_holdout_split_keeps_the_last_windows_out_of_training():
    series = [np.arange(200, dtype=np.float32), np.arange(10, dtype=np.float32)]
    train, windows = holdout_split(series, horizon=24, n_windows=2)
    assert len(train[0]) == 200 - 48 and train[0][-1] == 151  # training ends before both windows
    np.testing.assert_array_equal(train[1], series[1])  # too short to spare a window: trains whole
    assert [(len(w.context), len(w.future)) for w in windows] == [(152, 24), (176, 24)]
    assert windows[0].future[0] == 152 and windows[1].context[-1] == 175  # later window sees the earlier in context


def test_short_series_hold_out_a_shorter_window():
    train, windows = holdout_split([np.ones(36, dtype=np.float32)], horizon=32, n_windows=1)
    assert len(windows[0].future) == 12 and len(train[0]) == 24


def test_validation_series_continue_training_series_of_the_same_id():
    training = {"a": np.arange(100, dtype=np.float32)}
    validation = {"a": np.arange(100, 140, dtype=np.float32), "other": np.arange(60, dtype=np.float32)}
    windows = validation_windows(validation, training, horizon=32)
    cont = [w for w in windows if len(w.context) >= 100]
    assert [(len(w.context), len(w.future)) for w in cont] == [(100, 32), (132, 8)]
    assert cont[1].context[-1] == 131 and cont[0].future[0] == 100
    own = [w for w in windows if len(w.context) < 100]
    assert len(own) == 1 and own[0].future[-1] == 59  # another id: scored on its own last window
    # With validation series, training keeps every point of its series.
    train, _ = split_for_validation(training, 32, 1, validation)
    assert len(train[0]) == 100


def test_validation_scores_match_the_forecaster():
    m = _model()
    series = [seasonal_series(150, seed=i) for i in range(3)] + [seasonal_series(300, seed=9)]
    _, windows = holdout_split(series, horizon=20)
    scores = score(m, build_batch(windows, m.config), "default")
    fc = Forecaster(m)
    expected = []
    for w in windows:
        median = fc.predict_quantiles([w.context], len(w.future))[0, m.config.median_index]
        expected.append(mae(w.future, median) / np.mean(np.abs(np.diff(w.context))))
    assert scores.mase == pytest.approx(np.mean(expected), rel=1e-4)
    assert scores.loss > 0


def _scripted(monkeypatch, losses, mases=None):
    """Makes validation return the given scores in turn (base first), to test decisions exactly."""
    mases = mases or [1.0] * len(losses)
    queue = [ValidationScores(loss, mase) for loss, mase in zip(losses, mases)]
    monkeypatch.setattr(model_selection, "score", lambda *args: queue.pop(0))


def _snapshots_at_evaluations(monkeypatch) -> dict:
    """step -> the trained tensors as validation saw them, filled in as the fine-tune runs."""
    snapshots = {}

    class Spy(model_selection.ValidationTracker):
        def evaluate(self, model, step):
            snapshots[step] = trainable_state(model)
            return super().evaluate(model, step)

    monkeypatch.setattr("tsfm_core.finetune.ValidationTracker", Spy)
    return snapshots


def test_early_stopping_watches_validation_and_keeps_the_best_step(monkeypatch):
    m = _model()
    series = [seasonal_series(200, seed=i) for i in range(2)]
    # Evaluations every 5 steps: base 1.0, step 5: 0.8 (best), then no improvement for 3 evaluations.
    _scripted(monkeypatch, [1.0, 0.8, 0.85, 0.9, 0.95, 0.1])
    snapshots = _snapshots_at_evaluations(monkeypatch)
    cfg = FinetuneConfig(steps=100, depth=2, learning_rate=1e-2, batch_size=4, eval_every=5,
                         early_stopping_patience=3, weight_blend=1.0)
    result = finetune(m, series, cfg)
    assert result.history[-1].step == 20  # stopped by validation at the third evaluation without progress
    assert result.validation["selected_step"] == 5 and result.validation["improved"]
    assert result.validation["base"] == {"loss": 1.0, "mase": 1.0}
    assert result.validation["finetuned"] == {"loss": 0.8, "mase": 1.0}
    kept = trainable_state(result.model)
    assert all(torch.equal(kept[k], snapshots[5][k]) for k in kept)
    assert not all(torch.equal(kept[k], snapshots[20][k]) for k in kept)


def test_a_lower_loss_with_a_worse_mase_than_the_base_is_not_kept(monkeypatch):
    _scripted(monkeypatch, [1.0, 0.5, 0.9], [1.0, 1.2, 0.99])
    cfg = FinetuneConfig(steps=10, depth=1, batch_size=4, eval_every=5, weight_blend=1.0)
    result = finetune(_model(), [seasonal_series(200)], cfg)
    assert result.validation["selected_step"] == 10


@pytest.mark.parametrize("blend_scores, kept", [((0.9, 1.0), "blend"), ((0.995, 1.0), "best"), ((0.7, 1.1), "best")])
def test_the_kept_weights_blend_base_and_best_when_the_blend_still_beats_the_base(monkeypatch, blend_scores, kept):
    # base 1.0, step 5: 0.8 (best), step 10: 0.85, then the halfway blend of base and step 5.
    _scripted(monkeypatch, [1.0, 0.8, 0.85, blend_scores[0]], [1.0, 1.0, 1.0, blend_scores[1]])
    snapshots = _snapshots_at_evaluations(monkeypatch)
    cfg = FinetuneConfig(steps=10, depth=1, learning_rate=1e-2, batch_size=4, eval_every=5, weight_blend=0.5)
    result = finetune(_model(), [seasonal_series(200)], cfg)
    v = result.validation
    assert v["selected_step"] == 5
    got = trainable_state(result.model)
    if kept == "blend":
        assert v["blend"] == 0.5 and v["finetuned"] == {"loss": 0.9, "mase": 1.0}
        assert all(torch.allclose(got[k], (snapshots[0][k] + snapshots[5][k]) / 2) for k in got)
    else:  # the blend is not clearly better than the base (loss) or is worse (MASE): the best as is
        assert v["blend"] is None and v["finetuned"] == {"loss": 0.8, "mase": 1.0}
        assert all(torch.equal(got[k], snapshots[5][k]) for k in got)


def test_a_diverging_finetune_returns_the_base_weights():
    base = _model()
    series = [seasonal_series(200, seed=i) for i in range(3)]
    cfg = FinetuneConfig(steps=20, depth=5, batch_size=8, eval_every=5)
    cfg.learning_rate = 5.0  # past the documented bound on purpose: a run that only makes validation worse
    result = finetune(base, series, cfg)
    v = result.validation
    assert v["selected_step"] == 0 and not v["improved"] and not v["worse_than_base"]
    assert v["finetuned"] == v["base"]
    for k, t in base.state_dict().items():
        assert torch.equal(result.model.state_dict()[k], t)


def test_a_real_finetune_is_never_worse_than_its_base_on_validation():
    base = _model()
    series = [seasonal_series(260, seed=i) for i in range(4)]
    result = finetune(base, series, FinetuneConfig(steps=30, depth=5, learning_rate=3e-3, batch_size=8))
    v = result.validation
    assert v["windows"] == 4 and v["finetuned"]["loss"] <= v["base"]["loss"]
    assert v["finetuned"]["mase"] <= v["base"]["mase"]
    assert v["selected_step"] > 0  # a random base model is easy to improve on
    _, windows = holdout_split(series, 32)
    rescored = score(result.model, build_batch(windows, base.config), "default")
    assert rescored.loss == pytest.approx(v["finetuned"]["loss"], rel=1e-5)


def test_validation_off_trains_on_everything_and_keeps_the_last_step():
    result = finetune(_model(), [seasonal_series(200)], FinetuneConfig(steps=5, batch_size=4, validation_windows=0))
    assert result.validation == {"windows": 0, "reason": "disabled"}
    assert len(result.history) == 5


@pytest.mark.parametrize("lora", [None, LoraConfig(rank=2, targets="QKVO")])
def test_the_same_seed_gives_identical_weights(lora):
    series = [seasonal_series(220, seed=i) for i in range(3)]

    def run(seed):
        cfg = FinetuneConfig(steps=8, depth=3, lora=lora, learning_rate=1e-2, batch_size=8, seed=seed)
        result = finetune(_model(), series, cfg)
        return trainable_state(result.model), result.points

    (a, pa), (b, pb), (c, _) = run(7), run(7), run(8)
    assert pa == pb and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_lora_initialisation_follows_the_seed():
    def init(seed):
        m = _model()
        prepare_for_finetune(m, FinetuneConfig(lora=LoraConfig(rank=2), seed=seed))
        return trainable_state(m)

    assert all(torch.equal(x, y) for x, y in zip(init(1).values(), init(1).values()))
    assert not all(torch.equal(x, y) for x, y in zip(init(1).values(), init(2).values()))


def test_a_gain_within_the_margin_keeps_the_base(monkeypatch):
    _scripted(monkeypatch, [1.0, 0.995, 0.97])
    cfg = FinetuneConfig(steps=10, depth=1, batch_size=4, eval_every=5, min_validation_gain=0.01, weight_blend=1.0)
    assert finetune(_model(), [seasonal_series(200)], cfg).validation["selected_step"] == 10
    _scripted(monkeypatch, [1.0, 0.995])
    cfg = FinetuneConfig(steps=5, depth=1, batch_size=4, eval_every=5, min_validation_gain=0.01)
    assert finetune(_model(), [seasonal_series(200)], cfg).validation["selected_step"] == 0


def test_refit_trains_again_on_every_point_for_the_chosen_step_count(monkeypatch):
    _scripted(monkeypatch, [1.0, 0.5, 0.9])
    series = [seasonal_series(200, seed=i) for i in range(2)]
    cfg = FinetuneConfig(steps=10, depth=2, batch_size=4, eval_every=5, refit=True)
    result = finetune(_model(), series, cfg)
    assert result.validation["selected_step"] == 5 and result.validation["refit_steps"] == 5
    # The same as a plain 5-step fine-tune on all the data with the same seed.
    plain = finetune(_model(), series, FinetuneConfig(steps=5, depth=2, batch_size=4, validation_windows=0))
    kept, expected = trainable_state(result.model), trainable_state(plain.model)
    assert all(torch.equal(kept[k], expected[k]) for k in kept)
    assert result.points == sum(r.points for r in result.history) + plain.points
