"""The stage runner: one run directory, one ``<stage>/_stage.json`` manifest per stage.

A stage is skipped when its manifest's fingerprint matches the current one. The fingerprint hashes
the stage's config sections, the run seed, the package version, the upstream manifests' fingerprints
and the checksums of external inputs. A killed stage leaves ``_inprogress.json``; a restart with the
same fingerprint keeps the stage directory so that the stage resumes from its finished shards, while
a changed fingerprint clears it first.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lensaudit import __version__
from lensaudit.config import RunConfig, dump_config
from lensaudit.errors import GateFailed, UpstreamError
from lensaudit.gates import Gate, worst
from lensaudit.utils import atomic_write_json, file_fingerprint, rng_for, sha256_json

MANIFEST = "_stage.json"
INPROGRESS = "_inprogress.json"
log = logging.getLogger("lensaudit")


@dataclass
class Manifest:
    """What a stage did: provenance, counts, gates, outputs. Stages fill counts/gates/outputs/extra."""

    stage: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    gates: list[Gate] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    config_hash: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    version: str = __version__
    git_commit: str = ""
    seed: int = 0
    started: str = ""
    finished: str = ""
    wall_s: float = 0.0
    status: str = "complete"

    @property
    def gate_status(self) -> str:
        return worst(self.gates)

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gates if g.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["gates"] = [g.to_dict() for g in self.gates]
        d["gate_status"] = self.gate_status
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        d = dict(d)
        d.pop("gate_status", None)
        d["gates"] = [Gate.from_dict(g) for g in d.get("gates", [])]
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        return cls.from_dict(json.loads(Path(path).read_text()))


def git_commit() -> str:
    """The checkout's commit (with '+dirty' when modified), or 'unknown' outside git."""
    try:
        root = Path(__file__).resolve().parents[2]
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class StageProgress:
    """A rich progress bar that also works when the console is not a terminal (logs at the end)."""

    def __init__(self, progress: Progress, task: int):
        self._p, self._t = progress, task

    def advance(self, n: float = 1) -> None:
        self._p.advance(self._t, n)

    def update(self, **kw: Any) -> None:
        self._p.update(self._t, **kw)


class RunContext:
    """Everything a stage needs besides its config section: the run directory, seeding, logging,
    progress bars, upstream manifests and (lazily) the Dask client."""

    def __init__(self, config: RunConfig, console: Console | None = None, quiet: bool = False):
        self.config = config
        self.run_dir = Path(config.run.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.console = console or Console(stderr=True, quiet=quiet)
        self._client = None
        self._cluster = None
        self._setup_logging()

    # -- paths and manifests ---------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.config.run.seed

    def stage_dir(self, stage: str) -> Path:
        d = self.run_dir / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def manifest_path(self, stage: str) -> Path:
        return self.run_dir / stage / MANIFEST

    def manifest(self, stage: str) -> Manifest | None:
        p = self.manifest_path(stage)
        return Manifest.load(p) if p.is_file() else None

    def require(self, stage: str) -> Manifest:
        """The completed manifest of an upstream stage, or a clear UpstreamError."""
        m = self.manifest(stage)
        if m is None:
            raise UpstreamError(f"stage '{stage}' has not run in {self.run_dir}; run `lensaudit {stage}` first")
        if m.status != "complete":
            raise UpstreamError(f"stage '{stage}' did not complete (status {m.status}); fix it and rerun")
        return m

    def rng(self, *purpose: Any) -> np.random.Generator:
        """A Generator seeded from (run seed, *purpose): independent of processing order."""
        return rng_for(self.seed, *purpose)

    # -- progress and logging --------------------------------------------------------------------
    @contextlib.contextmanager
    def progress(self, total: float | None, description: str) -> Iterator[StageProgress]:
        cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TaskProgressColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
        with Progress(*cols, console=self.console, transient=False) as prog:
            task = prog.add_task(description, total=total)
            yield StageProgress(prog, task)

    def track(self, items: Iterable[Any], total: int | None, description: str) -> Iterator[Any]:
        with self.progress(total, description) as bar:
            for item in items:
                yield item
                bar.advance(1)

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
        fh._lensaudit = target  # type: ignore[attr-defined]
        rh = RichHandler(console=self.console, show_path=False, markup=False)
        rh._lensaudit = target  # type: ignore[attr-defined]
        log.addHandler(fh)
        log.addHandler(rh)
        log.propagate = False

    # -- Dask ------------------------------------------------------------------------------------
    def dask_client(self):
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


# ----------------------------------------------------------------------------------------------
def fingerprint(stage_mod: Any, ctx: RunContext) -> tuple[str, dict[str, Any]]:
    """The hash that decides skip-if-done, with the parts it was computed from."""
    cfg = ctx.config
    sections = getattr(stage_mod, "SECTIONS", (stage_mod.NAME,))
    section_cfg = {s: cfg.section_dict(s) for s in sections}
    for s in section_cfg.values():  # the run dir is where, not what
        s.pop("run_dir", None)
    upstream = {}
    for dep in getattr(stage_mod, "DEPENDS", ()):
        m = ctx.require(dep)
        upstream[dep] = m.fingerprint
    inputs = {}
    if hasattr(stage_mod, "inputs"):
        for p in stage_mod.inputs(cfg):
            inputs[str(p)] = file_fingerprint(p)
    parts = {"stage": stage_mod.NAME, "config": section_cfg, "seed": cfg.run.seed, "version": __version__,
             "upstream": upstream, "inputs": inputs}
    return sha256_json(parts), parts


def run_stage(name: str, ctx: RunContext, force: bool = False) -> Manifest:
    """Run one stage unless it is up to date; write its manifest; raise GateFailed on a blocking fail."""
    from lensaudit.stages import get_stage

    mod = get_stage(name)
    fp, parts = fingerprint(mod, ctx)
    sdir = ctx.run_dir / name
    old = ctx.manifest(name)
    if old is not None and old.fingerprint == fp and old.status == "complete" and not force:
        log.info("%s: up to date (fingerprint %s)", name, fp[:12])
        return old
    inprog = sdir / INPROGRESS
    if sdir.exists():
        resumable = inprog.is_file() and json.loads(inprog.read_text()).get("fingerprint") == fp and not force
        if resumable:
            log.info("%s: resuming an interrupted run from its finished shards", name)
        else:
            _clear_dir(sdir)
    sdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(inprog, {"fingerprint": fp, "started": _now()})
    (ctx.run_dir / "config.yaml").write_text(dump_config(ctx.config))
    started, t0 = _now(), time.perf_counter()
    log.info("%s: running", name)
    section = getattr(ctx.config, getattr(mod, "SECTIONS", (name,))[0])
    man: Manifest = mod.run(section, ctx)
    man.stage = name
    man.fingerprint = fp
    man.config_hash = sha256_json(parts["config"])
    man.inputs = parts["inputs"]
    man.upstream = parts["upstream"]
    man.git_commit = git_commit()
    man.seed = ctx.seed
    man.started, man.finished = started, _now()
    man.wall_s = round(time.perf_counter() - t0, 3)
    blocking_fail = [g for g in man.gates if g.status == "fail" and g.blocking]
    man.status = "failed" if blocking_fail else "complete"
    atomic_write_json(ctx.manifest_path(name), man.to_dict())
    inprog.unlink(missing_ok=True)
    _log_gates(name, man)
    if blocking_fail:
        raise GateFailed(f"stage '{name}' failed gate(s): " + "; ".join(
            f"{g.name}={_fmt(g.value)} {g.message}".strip() for g in blocking_fail)
            + f" (details in {ctx.manifest_path(name)})")
    return man


def _clear_dir(d: Path) -> None:
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _log_gates(name: str, man: Manifest) -> None:
    for g in man.gates:
        level = {"pass": logging.INFO, "warn": logging.WARNING, "fail": logging.ERROR}[g.status]
        log.log(level, "%s gate %-28s %-4s value=%s %s", name, g.name, g.status.upper(), _fmt(g.value), g.message)
    log.info("%s: done in %.1f s (%s)", name, man.wall_s, ", ".join(f"{k}={_fmt(v)}" for k, v in man.counts.items()))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_pipeline(ctx: RunContext, stages: Iterable[str] | None = None, force: bool = False) -> list[Manifest]:
    """Run stages in order (default: every available stage for the config's data source)."""
    from lensaudit.stages import pipeline_stages

    out = []
    for name in stages or pipeline_stages(ctx.config):
        out.append(run_stage(name, ctx, force=force))
    return out
