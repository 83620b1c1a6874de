"""The stages: each module ``lensaudit.stages.<name>`` orchestrates one step and declares its contract
(see :mod:`lensaudit.run.context`): ``NAME``, ``SECTIONS``, ``READS``, ``WRITES``, optionally
``inputs(cfg) -> list[Path]`` (external files whose checksums enter the fingerprint), and
``run(cfg_section, ctx: StageContext) -> Manifest``. Science lives in the domain packages below."""

from __future__ import annotations

from types import ModuleType

from lensaudit.config import RunConfig
from lensaudit.errors import ConfigError
from lensaudit.run import STAGE_ORDER
from lensaudit.stages import (
    catalog,
    cutouts,
    ensemble,
    evaluate,
    failures,
    inject,
    mine,
    population,
    positives,
    report,
    sample,
    selection,
    sky,
    train,
)

STAGES: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        sky,
        positives,
        catalog,
        sample,
        cutouts,
        train,
        evaluate,
        inject,
        selection,
        population,
        failures,
        ensemble,
        mine,
        report,
    )
}
assert tuple(STAGES) == STAGE_ORDER


def get_stage(name: str) -> ModuleType:
    """The stage module called ``name``; ConfigError for an unknown name."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGE_ORDER)}")
    return STAGES[name]


def pipeline_stages(cfg: RunConfig) -> list[ModuleType]:
    """The stages `run`/`demo` execute, in order; `sky` only for synthetic data, `population` only for
    synthetic data with ``population.enabled``, ``ensemble`` with ``ensemble.enabled``, ``mine`` with
    ``mine.rounds`` > 0."""
    from lensaudit.validation.gates.report import expected

    return [STAGES[n] for n in (*expected(cfg), "report")]


def contracts_markdown() -> str:
    """The table of every stage's declared config, reads and writes (for ``lensaudit stages`` and the
    docs)."""
    from lensaudit.run import ARTIFACTS

    lines = ["| stage | config it reads | artifacts it reads | artifacts it writes |", "|---|---|---|---|"]
    for name, mod in STAGES.items():
        reads = ", ".join(f"`{r}`" for r in mod.READS) or "—"
        writes = ", ".join(f"`{w}` ({ARTIFACTS[name][w]})" for w in mod.WRITES)
        lines.append(f"| {name} | {', '.join(mod.SECTIONS)} | {reads} | {writes} |")
    return "\n".join(lines) + "\n"
