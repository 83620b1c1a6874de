"""The stage runner: fingerprints, skip-if-done, resume, manifests, gates.

A stage is skipped when its manifest's fingerprint matches the current one. The fingerprint hashes exactly
what the stage reads: its declared config (sections or single keys), the run seed, the package version, the
fingerprints of the upstream stages its READS name, and the checksums of external inputs. A killed stage
leaves ``_inprogress.json``; a restart with the same fingerprint keeps the stage directory so that the stage
resumes from its :class:`~lensaudit.run.shards.ShardLog`, while a changed fingerprint clears it first.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from lensaudit import __version__
from lensaudit.config import dump_config
from lensaudit.errors import GateFailed, UpstreamError
from lensaudit.run.artifacts import CONFIG, INPROGRESS, SCRATCH, relpath
from lensaudit.run.context import RunContext, StageContext, config_parts, log, sections, upstream
from lensaudit.run.manifest import Manifest, git_commit
from lensaudit.utils import atomic_write_json, file_fingerprint, sha256_json


class StaleUpstream(UpstreamError):
    """An upstream stage's manifest was made with another config than the current one."""


def fingerprint(
    mod: ModuleType,
    ctx: RunContext,
    registry: Mapping[str, ModuleType] | None = None,
    _current: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The hash that decides skip-if-done, with the parts it was computed from.

    With the stage ``registry`` (name → module), each upstream manifest the runner wrote is checked against
    the current config: UpstreamError when an upstream stage's recorded fingerprint is not what the current
    config gives (the run directory was made with another config, and this stage would read stale artifacts).
    A manifest made outside the runner (no ``config_hash``: e.g. a sky built on its own) is taken as it is.
    Each upstream stage's current fingerprint is computed once per call (``_current``), not once per path
    through the stage graph (the report's check visited 289 paths)."""
    current = {} if _current is None else _current
    up = {}
    for stage, optional in upstream(mod).items():
        m = ctx.manifest(stage) if optional else ctx.require(stage)
        if m is not None and m.status == "complete":
            if registry is not None and stage in registry and m.config_hash:  # written by this runner
                if stage not in current:
                    try:
                        current[stage] = fingerprint(registry[stage], ctx, registry, current)[0]
                    except StaleUpstream:
                        raise
                    except UpstreamError:  # its own upstream is gone: nothing to compare against
                        current[stage] = m.fingerprint
                now = current[stage]
                if now != m.fingerprint:
                    raise StaleUpstream(
                        f"stage {stage} in {ctx.run_dir} was made with another config (recorded fingerprint "
                        f"{m.fingerprint[:12]}, current {now[:12]}), so {mod.NAME} would read stale "
                        f"artifacts; rerun {stage} first (lensaudit run --stages {stage},{mod.NAME}) or use "
                        "another run directory"
                    )
            up[stage] = m.fingerprint
    inputs = {str(p): file_fingerprint(p) for p in (mod.inputs(ctx.config) if hasattr(mod, "inputs") else [])}
    parts = {
        "stage": mod.NAME,
        "config": config_parts(mod, ctx.config),
        "seed": ctx.seed,
        "version": __version__,
        "upstream": up,
        "inputs": inputs,
    }
    return sha256_json(parts), parts


def run_stage(
    mod: ModuleType,
    ctx: RunContext,
    force: bool = False,
    registry: Mapping[str, ModuleType] | None = None,
) -> Manifest:
    """Run one stage unless it is up to date; write its manifest; raise GateFailed on a blocking fail (and
    UpstreamError, with the stage ``registry``, when an upstream stage was made with another config)."""
    name = mod.NAME
    fp, parts = fingerprint(mod, ctx, registry)
    old = ctx.manifest(name)
    if old is not None and old.fingerprint == fp and old.status == "complete" and not force:
        log.info("%s: up to date (fingerprint %s)", name, fp[:12])
        return old
    sdir = ctx.stage_dir(name)
    inprog = sdir / INPROGRESS
    if sdir.exists():
        resumable = inprog.is_file() and json.loads(inprog.read_text()).get("fingerprint") == fp and not force
        if resumable:
            log.info("%s: resuming an interrupted run from its finished shards", name)
            drop_stale_temporaries(sdir)
        else:
            _clear_dir(sdir)
    sdir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(inprog, {"fingerprint": fp, "started": _now()})
    (ctx.run_dir / CONFIG).write_text(dump_config(ctx.config))
    started, t0 = _now(), time.perf_counter()
    log.info("%s: running", name)
    sctx = StageContext(ctx, mod)
    first = sections(mod)[0].partition(".")[0]
    man: Manifest = mod.run(getattr(ctx.config, first), sctx)
    man.stage = name
    man.outputs = _outputs(mod, ctx)
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
        raise GateFailed(
            f"stage '{name}' failed gate(s): "
            + "; ".join(f"{g.name}={_fmt(g.value)} {g.message}".strip() for g in blocking_fail)
            + f" (details in {ctx.manifest_path(name)})"
        )
    return man


def run_pipeline(
    ctx: RunContext,
    stages: Iterable[ModuleType],
    force: bool = False,
    registry: Mapping[str, ModuleType] | None = None,
) -> list[Manifest]:
    """Run stage modules in order (``registry``: every stage by name, to check the upstream manifests)."""
    return [run_stage(mod, ctx, force=force, registry=registry) for mod in stages]


def _outputs(mod: ModuleType, ctx: RunContext) -> list[str]:
    """The declared artifacts that exist after the run (scratch resume logs left out)."""
    out = []
    for n in getattr(mod, "WRITES", ()):
        if (mod.NAME, n) in SCRATCH:
            continue
        if ctx.path(mod.NAME, n).exists():
            out.append(relpath(mod.NAME, n))
    return out


def drop_stale_temporaries(d: Path) -> list[Path]:
    """Delete the half-written temporaries (``.<name>.*.tmp``, :func:`lensaudit.utils.write_parquet_atomic`
    and friends) that a killed stage left under ``d``; they are never an output, and a resumed stage must
    finish with the same files as an uninterrupted one. Returns what was deleted."""
    gone = [f for f in d.rglob(".*.tmp") if f.is_file()]
    for f in gone:
        f.unlink()
    return gone


def _clear_dir(d: Path) -> None:
    for child in d.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _log_gates(name: str, man: Manifest) -> None:
    levels = {"pass": logging.INFO, "warn": logging.WARNING, "fail": logging.ERROR}
    for g in man.gates:
        log.log(
            levels[g.status],
            "%s gate %-28s %-4s value=%s %s",
            name,
            g.name,
            g.status.upper(),
            _fmt(g.value),
            g.message,
        )
    counts = ", ".join(f"{k}={_fmt(v)}" for k, v in man.counts.items())
    log.info("%s: done in %.1f s (%s)", name, man.wall_s, counts)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
