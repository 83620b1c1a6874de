"""failures: FPR by confuser category × conditions, completeness-collapse cells, and a rule-based taxonomy of
false positives and missed Tier-A lenses, scored against the synthetic sky's truth when it exists.

Science in :mod:`lensaudit.audit.failure_modes` (rules in :mod:`lensaudit.audit.failures`); galleries drawn by
:mod:`lensaudit.report.figures.audit` into the ``galleries`` directory. The gates are computed from the
written artifacts (:mod:`lensaudit.validation.gates.failures`).
"""

from __future__ import annotations

from lensaudit import validation
from lensaudit.audit.failure_modes import TAXONOMY_COLUMNS, failure_audit
from lensaudit.config import FailuresConfig
from lensaudit.report.figures.audit import failure_galleries
from lensaudit.run import Manifest, StageContext
from lensaudit.stamps.store import StampStore
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "failures"
SECTIONS = ("failures", "evaluate.interval", "data.source")
READS = (
    "evaluate.scores",
    "cutouts.index",
    "cutouts.stamps",
    "sample.sample",
    "selection.marginal",
    "?sky.truth",
)
WRITES = ("taxonomy", "summary", "fpr_by_category_conditions", "collapse_cells", "galleries")


def run(cfg: FailuresConfig, ctx: StageContext) -> Manifest:
    """Audit the test split's failures at evaluate's operating threshold; write tables, galleries, summary."""
    op = float(ctx.manifest("evaluate").extra["operating_threshold"])
    truth = ctx.artifact("sky", "truth")
    use_truth = ctx.config.data.source == "synthetic" and truth.is_file()
    store = StampStore.open(ctx.artifact("cutouts", "stamps"))
    fa = failure_audit(
        ctx.artifact("evaluate", "scores"),
        ctx.artifact("cutouts", "index"),
        ctx.artifact("sample", "sample"),
        ctx.artifact("selection", "marginal"),
        store,
        op,
        level=ctx.config.evaluate.interval,
        collapse_threshold=cfg.collapse_threshold,
        gallery_size=cfg.gallery_size,
        truth=truth if use_truth else None,
    )
    write_parquet_atomic(fa.fpr_table, ctx.output("fpr_by_category_conditions"))
    write_parquet_atomic(fa.collapse, ctx.output("collapse_cells"))
    write_parquet_atomic(fa.taxonomy[TAXONOMY_COLUMNS], ctx.output("taxonomy"))
    galleries = failure_galleries(store, fa.galleries, ctx.output("galleries"))
    atomic_write_json(ctx.output("summary"), fa.summary(galleries))
    return Manifest(counts=fa.counts, gates=validation.evaluate(NAME, validation.stage_inputs(ctx)))
