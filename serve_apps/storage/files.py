"""Uploaded training files: validated, normalised to Parquet and written to disk before the
upload is acknowledged, so nothing accepted is lost. The server also writes files of its own for
clients to download (a fine-tune's `fine-tune-results` CSV): stored as they are, never trained on."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from serve_apps.storage.db import Store, metadata, new_id, now
from tsfm_core.datasets import VALUE_COLUMN, table_to_series, write_series
from tsfm_core.tokenizer import MAX_ABS_INPUT

files = sa.Table(
    "files", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("organization", sa.String(128), nullable=False, index=True),
    sa.Column("filename", sa.String(512), nullable=False),
    sa.Column("purpose", sa.String(64), nullable=False),
    sa.Column("bytes", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=True),
    sa.Column("n_series", sa.Integer, nullable=False),
    sa.Column("n_points", sa.Integer, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
)

RAW_NAME = "raw"
SERIES_NAME = "series.parquet"


class FileNotFound(LookupError):
    pass


class InvalidFile(ValueError):
    pass


@dataclass
class FileRecord:
    id: str
    organization: str
    filename: str
    purpose: str
    bytes: int
    created_at: float
    deleted_at: float | None
    n_series: int
    n_points: int
    path: str

    @property
    def series_path(self) -> Path:
        return Path(self.path) / SERIES_NAME

    @property
    def raw_path(self) -> Path:
        return Path(self.path) / RAW_NAME

    @property
    def is_series(self) -> bool:
        """Whether it can be trained on: an upload parsed into series (not a file the server made)."""
        return self.series_path.exists()


def parse_series_file(filename: str, content: bytes) -> dict:
    """Reads a long table (unique_id, [ds], y) from CSV, Parquet or JSONL; raises InvalidFile."""
    suffix = Path(filename).suffix.lower()
    try:
        if suffix == ".parquet" or content[:4] == b"PAR1":
            df = pd.read_parquet(io.BytesIO(content))
        elif suffix in (".jsonl", ".json", ".ndjson"):
            df = pd.read_json(io.BytesIO(content), lines=True)
        elif suffix in (".csv", ".txt", ""):
            df = pd.read_csv(io.BytesIO(content))
        else:
            raise InvalidFile(f"unsupported file type {suffix!r}: upload .csv, .parquet or .jsonl")
    except InvalidFile:
        raise
    except Exception as exc:  # pandas raises many types for malformed input
        raise InvalidFile(f"could not read {filename!r} as {suffix or 'csv'}: {exc}") from None
    _check_values(df)
    try:
        series = table_to_series(df)
    except ValueError as exc:
        raise InvalidFile(f"{exc}; expected columns unique_id, ds (optional), y") from None
    observed = {k: v for k, v in series.items() if (~pd.isna(v)).sum() > 0}
    if not observed:
        raise InvalidFile("the file holds no observed values in column 'y'")
    return series


def _check_values(df: pd.DataFrame) -> None:
    """Every value of the target column is missing or finite and within the model's range.

    Checked in float64 before the float32 conversion, which would turn 1e308 into inf; a file of
    such values would otherwise train a model of nulls and still be marked ready.
    """
    if VALUE_COLUMN not in df.columns:
        return  # table_to_series names the missing column
    raw = df[VALUE_COLUMN]
    y = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    # Unparsable cells (text, or '1e400' which pandas leaves as text) count too: read as missing,
    # they would silently drop data.
    bad = np.flatnonzero((np.isnan(y) & raw.notna().to_numpy()) | (~np.isnan(y) & ~(np.abs(y) <= MAX_ABS_INPUT)))
    if len(bad):
        row = int(bad[0])
        raise InvalidFile(f"column {VALUE_COLUMN!r} row {row} holds {raw.iloc[row]!r}: values must be finite numbers "
                          f"within +-{MAX_ABS_INPUT:g} ({len(bad)} such value(s)); leave missing values empty")


class FileStore(Store[FileRecord]):
    table = files
    not_found = FileNotFound
    soft_deleted = True

    def __init__(self, database_url: str, artifact_dir: str | Path):
        super().__init__(database_url)
        self.root = Path(artifact_dir) / "files"

    def create(self, organization: str, filename: str, purpose: str, content: bytes) -> FileRecord:
        return self._add(organization, filename, purpose, content, parse_series_file(filename, content))

    def create_generated(self, organization: str, filename: str, purpose: str, content: bytes) -> FileRecord:
        """A file the server made for `organization` (e.g. a job's results): kept as given, not parsed."""
        return self._add(organization, filename, purpose, content, None)

    def _add(self, organization: str, filename: str, purpose: str, content: bytes,
             series: dict | None) -> FileRecord:
        """Writes the bytes (synced) and, for an upload, its series, then records the file."""
        file_id = new_id("file")
        directory = self.root / file_id
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / RAW_NAME, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if series is not None:
            write_series(series, directory / SERIES_NAME)
        series = series or {}
        row = dict(id=file_id, organization=organization, filename=filename, purpose=purpose, bytes=len(content),
                   created_at=now(), deleted_at=None, n_series=len(series),
                   n_points=int(sum(len(v) for v in series.values())), path=str(directory))
        with self.engine.begin() as conn:
            conn.execute(files.insert().values(**row))
        return FileRecord(**row)

    def record(self, row) -> FileRecord:
        return FileRecord(**row._mapping)

    def list(self, organization: str, purpose: str | None = None) -> list[FileRecord]:
        query = sa.select(files).where(files.c.organization == organization, files.c.deleted_at.is_(None))
        if purpose:
            query = query.where(files.c.purpose == purpose)
        return self.select(query.order_by(files.c.created_at))

    def delete(self, file_id: str, organization: str) -> None:
        record = self.get(file_id, organization)
        with self.engine.begin() as conn:
            conn.execute(files.update().where(files.c.id == file_id).values(deleted_at=now()))
        shutil.rmtree(record.path, ignore_errors=True)
