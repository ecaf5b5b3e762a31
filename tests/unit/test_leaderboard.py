"""The evaluation harness's model-agnostic part (train_jobs.leaderboard, train_jobs.eval_data); no Ray."""

import numpy as np
import pytest

from train_jobs import leaderboard
from train_jobs.eval_data import load_dataset
from tsfm_core import metrics


def test_wheel_datasets_load_with_their_competition_horizons():
    m3 = load_dataset("m3/quarterly", limit=4)
    assert (m3.horizon, m3.season, len(m3.train)) == (8, 4, 4)
    assert all(len(t) == 8 for t in m3.test)
    tourism = load_dataset("tourism/monthly", limit=2)
    assert (tourism.horizon, tourism.season) == (24, 12)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("m3/hourly")


def test_rows_score_what_the_named_model_forecast():
    data = load_dataset("m3/yearly", limit=6)
    pred = leaderboard.predict("SeasonalNaive", data, n_jobs=1)
    # Yearly seasonal naive repeats the last value.
    for x, p in zip(data.train, pred.median):
        np.testing.assert_allclose(p, x[-1])
    row = leaderboard.score(data, pred)
    expected = np.mean([metrics.mase(x, y, p, 1) for x, y, p in zip(data.train, data.test, pred.median)])
    assert row["MASE"] == pytest.approx(expected)
    assert 0 <= row["coverage_80"] <= 1 and pred.answered_by == {"SeasonalNaive": 6}
    table = leaderboard.markdown([{"dataset": data.name, "model": "SeasonalNaive", **row}])
    assert "| m3/yearly | SeasonalNaive |" in table
    with pytest.raises(ValueError, match="unknown model"):
        leaderboard.predict("no-such-model", data)
