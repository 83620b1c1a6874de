"""Building real, small artifacts for gate cases: a fake run directory laid out by the artifact registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from lensaudit.config import load_config
from lensaudit.run import ARTIFACTS, Manifest
from lensaudit.utils import atomic_write_json, write_parquet_atomic
from lensaudit.validation import Inputs


class Run:
    """A run directory under ``root``: write artifacts by (stage, name), then hand gates :class:`Inputs`."""

    def __init__(self, root: Path, *overrides: str):
        self.root = Path(root)
        self.config = load_config(None, list(overrides), run_dir=self.root)
        self.manifests: dict[str, Manifest] = {}

    def path(self, stage: str, name: str) -> Path:
        base = self.config.sky_dir if stage == "sky" else self.root / stage
        p = base / ARTIFACTS[stage][name]
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def table(self, stage: str, name: str, df: pd.DataFrame) -> Run:
        write_parquet_atomic(df, self.path(stage, name))
        return self

    def json(self, stage: str, name: str, obj: Any) -> Run:
        atomic_write_json(self.path(stage, name), obj)
        return self

    def text(self, stage: str, name: str, text: str) -> Run:
        self.path(stage, name).write_text(text)
        return self

    def manifest(self, stage: str, **kw: Any) -> Run:
        self.manifests[stage] = Manifest(stage=stage, **kw)
        return self

    def inputs(self) -> Inputs:
        return Inputs(self.path, self.config, self.manifests.get)


def load_json(p: Path) -> Any:
    return json.loads(Path(p).read_text())
