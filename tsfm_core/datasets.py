"""Series collections on disk: a long-format Parquet/CSV/JSONL table (unique_id, [ds], y) <-> arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ID_COLUMN, TIME_COLUMN, VALUE_COLUMN = "unique_id", "ds", "y"


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise ValueError(f"unsupported series file type {suffix!r}: use .parquet, .csv or .jsonl")


def table_to_series(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Groups a long table by unique_id (sorted by ds when present) into float32 arrays."""
    if VALUE_COLUMN not in df.columns:
        raise ValueError(f"series table needs a {VALUE_COLUMN!r} column")
    if ID_COLUMN not in df.columns:
        df = df.assign(**{ID_COLUMN: "series_0"})
    if TIME_COLUMN in df.columns:
        df = df.sort_values([ID_COLUMN, TIME_COLUMN], kind="stable")
    values = pd.to_numeric(df[VALUE_COLUMN], errors="coerce")
    return {str(uid): values[idx].to_numpy(np.float32) for uid, idx in df.groupby(ID_COLUMN, sort=True).groups.items()}


def write_series(series: dict[str, np.ndarray], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [pd.DataFrame({ID_COLUMN: uid, VALUE_COLUMN: np.asarray(v, dtype=np.float32)}) for uid, v in series.items()]
    pd.concat(frames, ignore_index=True).to_parquet(path, index=False)
    return path


def load_series(path: str | Path) -> list[np.ndarray]:
    return list(table_to_series(read_table(path)).values())
