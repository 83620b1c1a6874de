"""``ShardLog``: the one resume primitive. A unit of work (a sweep chunk, a store shard, an injection batch)
records its result under a key once it is complete; a restarted stage skips every recorded key.

A record is ``<key>.parquet`` (the unit's table, optional) written first, then ``<key>.done.json`` (its
small summary) as the completion marker, both atomically, so a kill between the two leaves the key undone.

>>> import tempfile, pandas as pd
>>> log = ShardLog(tempfile.mkdtemp())
>>> log.done("000"), log.record("000", pd.DataFrame({"x": [1]}), {"rows": 1}), log.done("000")
(False, None, True)
>>> log.keys(), log.summaries(), len(log.table())
(['000'], [{'rows': 1}], 1)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lensaudit.utils import atomic_write_json, write_parquet_atomic

_DONE = ".done.json"


class ShardLog:
    """Completion records of a stage's units of work in one directory (picklable: it is only a path)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)

    def _marker(self, key: str) -> Path:
        return self.dir / f"{key}{_DONE}"

    def done(self, key: str) -> bool:
        return self._marker(key).is_file()

    def record(
        self, key: str, table: pd.DataFrame | None = None, summary: dict[str, Any] | None = None
    ) -> None:
        """Record a finished unit: its table (if any), then the completion marker."""
        if table is not None:
            write_parquet_atomic(table, self.dir / f"{key}.parquet")
        atomic_write_json(self._marker(key), summary or {})

    def keys(self) -> list[str]:
        """Completed keys, sorted."""
        if not self.dir.is_dir():
            return []
        return sorted(p.name[: -len(_DONE)] for p in self.dir.glob(f"*{_DONE}"))

    def summary(self, key: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self._marker(key).read_text())
        return out

    def summaries(self) -> list[dict[str, Any]]:
        return [self.summary(k) for k in self.keys()]

    def table(self) -> pd.DataFrame:
        """The completed units' tables concatenated in key order (empty when none has one)."""
        parts = [pd.read_parquet(p) for k in self.keys() if (p := self.dir / f"{k}.parquet").is_file()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
