"""What a gate may look at: artifacts on disk (through a resolver), the config and upstream manifests, each
read
once and cached."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from lensaudit.run import Manifest, StageContext


class Inputs:
    """Cached read access to a run's artifacts for gate functions.

    ``path(stage, name)`` resolves a registered artifact: inside a stage it is the stage's contract (so a
    gate can read only what its stage declares), in ``verify`` the run directory's registry.
    """

    def __init__(
        self, path: Callable[[str, str], Path], config: Any, manifest: Callable[[str], Manifest | None]
    ):
        self._path, self.config, self._manifest = path, config, manifest
        self._cache: dict[tuple[Any, ...], Any] = {}

    def path(self, stage: str, name: str) -> Path:
        return self._path(stage, name)

    def exists(self, stage: str, name: str) -> bool:
        return self.path(stage, name).exists()

    def _cached(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def table(self, stage: str, name: str, columns: tuple[str, ...] | None = None) -> pd.DataFrame:
        """A Parquet artifact (a file or a directory of parts), optionally only some columns."""
        cols = list(columns) if columns else None
        return self._cached(
            ("table", stage, name, columns), lambda: pd.read_parquet(self.path(stage, name), columns=cols)
        )

    def json(self, stage: str, name: str) -> Any:
        return self._cached(("json", stage, name), lambda: json.loads(self.path(stage, name).read_text()))

    def store(self, stage: str, name: str) -> Any:
        from lensaudit.stamps.store import StampStore

        return self._cached(("store", stage, name), lambda: StampStore.open(self.path(stage, name)))

    def model(self) -> Any:
        """The frozen finder of the run (train.best + train.model_card)."""
        from lensaudit.train.infer import load_frozen

        return self._cached(
            ("model",),
            lambda: load_frozen(
                best=self.path("train", "best"), card=self.path("train", "model_card"), device="cpu"
            ),
        )

    def manifest(self, stage: str) -> Manifest | None:
        return self._manifest(stage)


def stage_inputs(ctx: StageContext) -> Inputs:
    """Inputs seen through a stage's contract: its own outputs and its declared reads, nothing else."""

    def path(stage: str, name: str) -> Path:
        return ctx.output(name) if stage == ctx.name else ctx.artifact(stage, name)

    def manifest(stage: str) -> Manifest | None:
        return ctx.recorded(stage)

    return Inputs(path, ctx.config, manifest)
