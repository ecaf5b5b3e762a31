import numpy as np
import pandas as pd
import pytest

from tsfm_core import metrics
from tsfm_core.datasets import load_series, read_table, table_to_series, write_series
from tsfm_core.model import ModelConfig
from tsfm_core.synthetic import generate_pool
from tsfm_core.windows import sample_batch


def test_metric_values():
    y = np.array([1.0, 2.0, 3.0])
    assert metrics.mae(y, y + 1) == pytest.approx(1.0)
    assert metrics.rmse(y, y + 2) == pytest.approx(2.0)
    assert metrics.smape(y, y) == 0
    assert metrics.mase(np.array([0.0, 1, 2, 3]), y, y + 1, season=1) == pytest.approx(1.0)
    q = np.stack([y - 1, y, y + 1])
    assert metrics.wql([y], [q], [0.1, 0.5, 0.9]) == pytest.approx(np.mean([2 * 0.3 / 6, 0, 2 * 0.3 / 6]))
    assert metrics.coverage(y, y - 1, y + 1) == 1.0


def test_synthetic_pool_is_reproducible_and_finite():
    a, b = generate_pool(50, seed=7), generate_pool(50, seed=7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.isfinite(x).all() and len(x) >= 64 for x in a)


def test_training_windows_mask_padding_and_missing_targets():
    cfg = ModelConfig()
    series = [np.arange(40, dtype=np.float32)]
    batch = sample_batch(series, 8, cfg, np.random.default_rng(0))
    n = batch.patches.shape[1]
    assert batch.target.shape == (8, n, cfg.output_patch_len)
    assert (batch.target_mask <= (batch.mask.sum(-1, keepdim=True) > 0)).all()
    assert batch.target_mask.sum() > 0


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_series_tables_roundtrip(tmp_path, suffix):
    df = pd.DataFrame({"unique_id": ["b", "a", "a", "b"], "ds": [2, 2, 1, 1], "y": [4.0, 2.0, 1.0, 3.0]})
    path = tmp_path / f"s{suffix}"
    if suffix == ".parquet":
        df.to_parquet(path)
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    series = table_to_series(read_table(path))
    assert series["a"].tolist() == [1.0, 2.0] and series["b"].tolist() == [3.0, 4.0]
    out = write_series(series, tmp_path / "out.parquet")
    assert [s.tolist() for s in load_series(out)] == [[1.0, 2.0], [3.0, 4.0]]
