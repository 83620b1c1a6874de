"""Stage registry. Each stage is a module ``lensaudit.stages.<name>`` exposing:

- ``NAME``: the stage name; ``SECTIONS``: the config sections whose values enter its fingerprint
  (the first is passed to ``run``); ``DEPENDS``: upstream stages;
- optional ``inputs(cfg: RunConfig) -> list[Path]``: external files whose checksums enter the fingerprint;
- ``run(cfg_section, ctx: RunContext) -> Manifest``: orchestration only, the science lives below.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from lensaudit.config import RunConfig
from lensaudit.errors import ConfigError

STAGE_ORDER = ["sky", "positives", "catalog", "sample", "cutouts", "train", "evaluate",
               "inject", "selection", "failures", "report"]


def available(name: str) -> bool:
    mod = f"lensaudit.stages.{name}"
    return mod in sys.modules or importlib.util.find_spec(mod) is not None


def get_stage(name: str) -> ModuleType:
    if name not in STAGE_ORDER:
        raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_ORDER)}")
    if not available(name):
        raise ConfigError(f"stage {name!r} is not implemented in this version")
    return importlib.import_module(f"lensaudit.stages.{name}")


def pipeline_stages(cfg: RunConfig) -> list[str]:
    """The stages `run`/`demo` execute, in order: all implemented ones; `sky` only for synthetic data."""
    names = [s for s in STAGE_ORDER if available(s)]
    if cfg.data.source != "synthetic":
        names = [s for s in names if s != "sky"]
    return names
