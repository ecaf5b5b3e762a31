"""Forecast origins for cross-validation, in-sample forecasts and anomaly detection (tsfm_core.backtest)."""

import numpy as np
import pytest

from tsfm_core import backtest
from tsfm_core.backtest import Window, WindowError
from tsfm_core.predict import ForecastResult


def test_cross_validation_windows_end_at_the_series_end():
    windows = backtest.cross_validation_windows([20, 12], h=3, n_windows=3, step_size=2)
    assert windows[:3] == [Window(0, 13, 3), Window(0, 15, 3), Window(0, 17, 3)]
    assert windows[3:] == [Window(1, 5, 3), Window(1, 7, 3), Window(1, 9, 3)]
    with pytest.raises(WindowError) as exc:
        backtest.cross_validation_windows([20, 7], h=3, n_windows=3, step_size=2)
    assert exc.value.series == 1


def test_tail_windows_cover_each_point_once_from_the_latest_origin():
    # step < h: origins every 2 points, each keeps 2 steps; step > h leaves gaps between windows.
    assert backtest.tail_windows([10], [5], h=4, step_size=2) == [Window(0, 5, 2), Window(0, 7, 2), Window(0, 9, 1)]
    assert backtest.tail_windows([10], [6], h=2, step_size=3) == [Window(0, 4, 2), Window(0, 7, 2)]
    assert backtest.tail_windows([10, 3], [0, 2], h=4, step_size=4) == [Window(1, 1, 2)]
    with pytest.raises(WindowError):
        backtest.tail_windows([10], [10], h=4, step_size=4)  # the first point has no context


def test_in_sample_spans_keep_some_context():
    assert backtest.in_sample_spans([100, 40, 2, 1], warmup=32) == [68, 20, 1, 0]


def test_refit_rounds_and_their_training_data():
    windows = backtest.cross_validation_windows([10, 8], h=2, n_windows=2, step_size=2)
    rounds = backtest.by_rank(windows)
    assert [[windows[i] for i in r] for r in rounds] == [[Window(0, 6, 2), Window(1, 4, 2)], [Window(0, 8, 2), Window(1, 6, 2)]]
    series = [np.arange(10.0), np.arange(8.0)]
    prefixes = backtest.training_prefixes(series, [windows[i] for i in rounds[1]])
    assert [len(p) for p in prefixes] == [8, 6]
    assert [len(p) for p in backtest.training_prefixes(series, windows)] == [6, 4]


def test_collect_orders_rows_series_major_in_time():
    windows = [Window(1, 4, 2), Window(0, 6, 1), Window(0, 3, 2)]
    results = []
    for w in windows:
        median = np.arange(2, dtype=float)[:, None] + 10 * w.series + w.cutoff
        results.append(ForecastResult(median=median, quantiles=np.stack([median - 1, median + 1]), levels=[0.1, 0.9]))
    bt = backtest.collect(windows, results, n_levels=2)
    assert bt.series.tolist() == [0, 0, 0, 1, 1] and bt.positions.tolist() == [3, 4, 6, 4, 5]
    assert bt.median.tolist() == [3, 4, 6, 14, 15] and bt.quantiles[1].tolist() == [4, 5, 7, 15, 16]
    assert bt.sizes(3) == [3, 2, 0]
    assert bt.actual([np.arange(10.0), np.arange(10.0) * 2]).tolist() == [3, 4, 6, 8, 10]
    assert backtest.collect([], [], n_levels=2).quantiles.shape == (2, 0)


def test_anomaly_scores_match_the_interval():
    median, lo, hi = np.zeros(4), np.full(4, -2.5758), np.full(4, 2.5758)  # a 99% interval of N(0, 1)
    actual = np.array([0.5, -3.0, 3.0, np.nan])
    assert np.allclose(backtest.anomaly_scores(actual, median, lo, hi, 99)[:3], [0.5, -3.0, 3.0], atol=1e-3)
    assert backtest.anomaly_scores(actual, median, lo, hi, 99)[3] == 0
    assert backtest.outside(actual, lo, hi).tolist() == [False, True, True, False]


@pytest.mark.parametrize("p,dof,exact", [(0.99, 1, 6.635), (0.95, 4, 9.488), (0.99, 10, 23.209)])
def test_chi2_quantile(p, dof, exact):
    assert backtest.chi2_quantile(p, dof) == pytest.approx(exact, rel=0.01)
