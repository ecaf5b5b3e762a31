"""Base models and the aliases under which unmodified clients know them.

Clients written for hosted APIs send their provider's model names (`timegpt-1`, TSFM.ai catalog ids
such as `amazon/chronos-bolt-small`); each alias resolves to a bundled base model here. The
response echoes the name the client sent and reports the model that actually served it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tsfm_core.checkpoint import BASE_MODEL_DIR, BASE_MODEL_ID


@dataclass(frozen=True)
class BaseModelEntry:
    id: str
    path: Path
    aliases: tuple[str, ...] = field(default=())
    description: str = ""


class Catalog:
    def __init__(self, entries: list[BaseModelEntry]):
        self.entries = {e.id: e for e in entries}
        self.by_name = {name.lower(): e for e in entries for name in (e.id, *e.aliases)}

    def lookup(self, name: str) -> BaseModelEntry | None:
        return self.by_name.get(name.lower())

    def names(self) -> list[str]:
        return sorted({n for e in self.entries.values() for n in (e.id, *e.aliases)})


CATALOG = Catalog([
    BaseModelEntry(
        id=BASE_MODEL_ID,
        path=BASE_MODEL_DIR,
        aliases=(
            "timegpt-1", "timegpt-1-long-horizon", "timegpt-2", "timegpt-2.1", "timegpt-2-mini", "azureai",
            "amazon/chronos-bolt-small", "amazon/chronos-bolt-base", "amazon/chronos-bolt-tiny",
            "google/timesfm-2.0-500m-pytorch", "google/timesfm-2.5-200m-pytorch",
        ),
        description="Bundled patch transformer pretrained by train_jobs.pretrain (synthetic + M1/Tourism).",
    ),
])
