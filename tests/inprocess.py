"""The real FastAPI app in-process, without Ray (serve_apps.http.api.standalone_api): the routes,
middleware, stores, dialects and the forecasting engine are the server's own, so hypothesis can push
hundreds of bodies through the whole HTTP path in seconds."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from serve_apps.http.api import standalone_api
from serve_apps.settings import Settings


def build_api(home: Path, api_keys: str = "", **settings) -> FastAPI:
    """The app over a fresh SQLite home; no job manager (fine-tuning jobs are not submitted)."""
    return standalone_api(Settings(home=str(home), api_keys=api_keys, **settings))
