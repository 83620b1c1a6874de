"""``RunContext`` (one per run: config, run directory, console, logging, Dask) and ``StageContext`` (one per
stage execution: the run seen through the stage's declared contract).

A stage module declares its contract:

- ``NAME``;
- ``SECTIONS``: config sections (``"inject"``) or single keys (``"evaluate.operating_point"``) it reads;
- ``READS``: artifacts of other stages, ``"stage.name"`` (a leading ``?`` marks an optional one: the stage
  runs without it, and its absence is the stage's to report);
- ``WRITES``: names of its own artifacts in :mod:`lensaudit.run.artifacts`.

``StageContext`` enforces it: ``ctx.artifact``, ``ctx.output``, ``ctx.manifest`` and ``ctx.config`` raise
:class:`~lensaudit.errors.ContractError` for anything undeclared.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lensaudit.config import RunConfig
from lensaudit.errors import ContractError, InputError, UpstreamError
from lensaudit.run.artifacts import CONFIG, MANIFEST, relpath
from lensaudit.run.manifest import Manifest
from lensaudit.run.shards import ShardLog

log = logging.getLogger("lensaudit")

#: RunConfig properties and the section each one reads
_DERIVED = {"sky_dir": "data", "sweeps_location": "data", "coadd_dir": "data"}


class StageProgress:
    """A rich progress bar handle."""

    def __init__(self, progress: Progress, task: Any):
        self._p, self._t = progress, task

    def advance(self, n: float = 1) -> None:
        self._p.advance(self._t, n)

    def update(self, **kw: Any) -> None:
        self._p.update(self._t, **kw)


class RunContext:
    """Everything run-wide: the config, the run directory, logging, progress bars and (lazily) Dask."""

    def __init__(self, config: RunConfig, console: Console | None = None, quiet: bool = False):
        self.config = config
        self.run_dir = Path(config.run.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.console = console or Console(stderr=True, quiet=quiet)
        self._client: Any = None
        self._cluster: Any = None
        self._setup_logging()

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, console: Console | None = None) -> RunContext:
        """The context of an existing run, from the ``config.yaml`` the runner saved in it (paths re-rooted at
        ``run_dir``, so a copied run directory reads its own files)."""
        from lensaudit.config import load_config

        cfg_path = Path(run_dir) / CONFIG
        if not cfg_path.is_file():
            raise InputError(f"{run_dir} is not a run directory: {cfg_path} is missing")
        return cls(load_config(cfg_path, [], Path(run_dir)), console=console)

    @property
    def seed(self) -> int:
        return self.config.run.seed

    def stage_root(self, stage: str) -> Path:
        """Where a stage's artifacts live: ``<run_dir>/<stage>``, or ``data.sky_dir`` for the sky."""
        return self.config.sky_dir if stage == "sky" else self.run_dir / stage

    def stage_dir(self, stage: str) -> Path:
        """Where a stage's manifest lives (always under the run directory)."""
        return self.run_dir / stage

    def path(self, stage: str, name: str) -> Path:
        """The path of a registered artifact (unchecked: for the runner, the report and ``verify``)."""
        return self.stage_root(stage) / relpath(stage, name)

    def manifest_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / MANIFEST

    def manifest(self, stage: str) -> Manifest | None:
        p = self.manifest_path(stage)
        return Manifest.load(p) if p.is_file() else None

    def require(self, stage: str) -> Manifest:
        """The completed manifest of a stage, or a clear UpstreamError."""
        m = self.manifest(stage)
        if m is None:
            raise UpstreamError(
                f"stage '{stage}' has not run in {self.run_dir}; run `lensaudit {stage}` first"
            )
        if m.status != "complete":
            raise UpstreamError(f"stage '{stage}' did not complete (status {m.status}); fix it and rerun")
        return m

    @contextlib.contextmanager
    def progress(self, total: float | None, description: str) -> Iterator[StageProgress]:
        cols = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ]
        with Progress(*cols, console=self.console, transient=False) as prog:
            yield StageProgress(prog, prog.add_task(description, total=total))

    def _setup_logging(self) -> None:
        log.setLevel(logging.INFO)
        target = str((self.run_dir / "run.log").resolve())
        for h in list(log.handlers):
            if getattr(h, "_lensaudit", None) not in (None, target):
                log.removeHandler(h)
                h.close()
        if any(getattr(h, "_lensaudit", None) == target for h in log.handlers):
            return
        fh = logging.FileHandler(target)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        rh = RichHandler(console=self.console, show_path=False, markup=False)
        for h in (fh, rh):
            setattr(h, "_lensaudit", target)  # noqa: B010 — marks our handlers for the next RunContext
            log.addHandler(h)
        log.propagate = False

    def dask_client(self) -> Any:
        """The Dask client from the engine config (created on first use, closed by ``close``)."""
        if self._client is None:
            from lensaudit.engine import make_client

            self._client, self._cluster = make_client(self.config.engine)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()
            self._client = self._cluster = None


# -- the stage contract ----------------------------------------------------------------------------
def sections(mod: ModuleType) -> tuple[str, ...]:
    return tuple(getattr(mod, "SECTIONS", (mod.NAME,)))


def reads(mod: ModuleType) -> list[tuple[str, str, bool]]:
    """The declared reads as (stage, name, optional)."""
    out = []
    for r in getattr(mod, "READS", ()):
        optional = r.startswith("?")
        stage, _, name = r.lstrip("?").partition(".")
        relpath(stage, name)  # an undeclared artifact is a bug in the stage module
        out.append((stage, name, optional))
    return out


def upstream(mod: ModuleType) -> dict[str, bool]:
    """Upstream stages derived from READS → whether every read of it is optional."""
    up: dict[str, bool] = {}
    for stage, _, optional in reads(mod):
        up[stage] = up.get(stage, True) and optional
    return up


def config_parts(mod: ModuleType, cfg: RunConfig) -> dict[str, Any]:
    """Exactly the declared config: whole sections, or single ``section.key`` values (``run_dir``
    excluded)."""
    parts: dict[str, Any] = {}
    for s in sections(mod):
        sec, _, key = s.partition(".")
        d = cfg.section_dict(sec)
        d.pop("run_dir", None)
        if key:
            if key not in d:
                raise ContractError(f"stage {mod.NAME} declares config key {s}, which does not exist")
            if sec not in sections(mod):  # a whole declared section already holds the key
                parts.setdefault(sec, {})[key] = d[key]
        else:
            parts[sec] = d
    return parts


class _SectionView:
    """One config section restricted to the declared keys."""

    def __init__(self, stage: str, name: str, section: Any, keys: set[str]):
        self._stage, self._name, self._section, self._keys = stage, name, section, keys

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        if key not in self._keys:
            raise ContractError(
                f"stage {self._stage} reads {self._name}.{key} without declaring it in SECTIONS"
            )
        return getattr(self._section, key)


class ConfigView:
    """The run config seen by one stage: only its declared sections and keys (``run`` always)."""

    def __init__(self, stage: str, cfg: RunConfig, declared: tuple[str, ...]):
        self._stage, self._cfg = stage, cfg
        self._whole = {"run"} | {s for s in declared if "." not in s}
        self._keys: dict[str, set[str]] = {}
        for s in declared:
            if "." in s:
                sec, _, key = s.partition(".")
                self._keys.setdefault(sec, set()).add(key)

    def _allowed(self, section: str) -> bool:
        return section in self._whole or section in self._keys

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        cfg = self._cfg
        if name in type(cfg).model_fields:
            if name in self._whole:
                return getattr(cfg, name)
            if name in self._keys:
                return _SectionView(self._stage, name, getattr(cfg, name), self._keys[name])
            raise ContractError(
                f"stage {self._stage} reads config section '{name}' without declaring it in SECTIONS"
            )
        if name in _DERIVED:
            if not self._allowed(_DERIVED[name]):
                raise ContractError(
                    f"stage {self._stage} reads config.{name} ({_DERIVED[name]}) without declaring it"
                )
            return getattr(cfg, name)
        if name in ("resolve_path", "run_dir"):
            return getattr(cfg, name)
        if name == "section_dict":
            return self.section_dict
        raise AttributeError(f"config has no attribute {name!r}")

    def section_dict(self, name: str) -> dict[str, Any]:
        if name not in self._whole:
            raise ContractError(
                f"stage {self._stage} reads config section '{name}' without declaring it in SECTIONS"
            )
        return self._cfg.section_dict(name)

    def full(self) -> RunConfig:
        """The whole config, for a stage that hands it to a provider needing several sections it declared."""
        return self._cfg


class StageContext:
    """A run seen through one stage's contract (what ``run(cfg, ctx)`` receives)."""

    def __init__(self, run: RunContext, mod: ModuleType):
        self.run, self.name = run, mod.NAME
        self._writes = set(getattr(mod, "WRITES", ()))
        self._reads = {(s, n) for s, n, _ in reads(mod)}
        self._upstream = set(upstream(mod))
        for n in self._writes:
            relpath(self.name, n)
        self.config = ConfigView(self.name, run.config, sections(mod))

    # -- delegated -------------------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def console(self) -> Console:
        return self.run.console

    def progress(
        self, total: float | None, description: str
    ) -> contextlib.AbstractContextManager[StageProgress]:
        return self.run.progress(total, description)

    def dask_client(self) -> Any:
        return self.run.dask_client()

    # -- the contract ----------------------------------------------------------------------------
    def artifact(self, stage: str, name: str) -> Path:
        """Another stage's artifact; it must be declared in READS."""
        if (stage, name) not in self._reads:
            raise ContractError(f"stage {self.name} reads {stage}.{name} without declaring it in READS")
        return self.run.path(stage, name)

    def output(self, name: str) -> Path:
        """This stage's own artifact; it must be declared in WRITES. Its parent directory exists."""
        if name not in self._writes:
            raise ContractError(f"stage {self.name} writes {name!r} without declaring it in WRITES")
        p = self.run.path(self.name, name)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def shards(self, name: str) -> ShardLog:
        """The resume log kept in this stage's declared scratch artifact ``name``."""
        return ShardLog(self.output(name))

    def _declared_upstream(self, stage: str) -> None:
        if stage not in self._upstream:
            raise ContractError(
                f"stage {self.name} reads the {stage} manifest without declaring a read of {stage}"
            )

    def manifest(self, stage: str) -> Manifest:
        """The completed manifest of a declared upstream stage."""
        self._declared_upstream(stage)
        return self.run.require(stage)

    def recorded(self, stage: str) -> Manifest | None:
        """The manifest of a declared upstream stage whatever its status (None if it never ran): for the
        report, which shows failed stages with their failing gates."""
        self._declared_upstream(stage)
        return self.run.manifest(stage)
