"""report: one self-contained HTML page (report/index.html) from every stage's manifest and artifacts.

Every stage is an optional upstream: the report renders whatever completed and lists the rest as missing
(the non-blocking ``all_stages_reported`` gate fails, :mod:`lensaudit.validation.gates.report`). READS names
every artifact the page embeds; for the stages whose artifacts it does not embed (sky, positives, catalog,
cutouts) it names one, so that their manifests are readable through ``ctx.manifest`` and their fingerprints
chain into the report's (it reruns when any changes).
"""

from __future__ import annotations

from lensaudit import validation
from lensaudit.config import ReportConfig, dump_config
from lensaudit.report.html import SECTIONS as PAGE_SECTIONS
from lensaudit.report.html import UPSTREAM, build
from lensaudit.run import Manifest, StageContext
from lensaudit.utils import atomic_write_bytes

NAME = "report"
SECTIONS = ("report", "data.source", "population.enabled", "ensemble.enabled", "mine.rounds")
READS = (
    "?sky.check",
    "?positives.positives",
    "?catalog.pool",
    "?sample.sample",
    "?cutouts.index",
    "?train.curves",
    "?evaluate.metrics",
    "?evaluate.roc",
    "?evaluate.reliability",
    "?evaluate.scores_by_category",
    "?evaluate.stratified_plot",
    "?evaluate.gallery_top_negatives",
    "?evaluate.gallery_lowest_tier_A",
    "?inject.realism",
    "?inject.realism_panel",
    "?selection.robustness",
    "?selection.closure",
    "?selection.systematics",
    "?selection.heatmaps",
    "?selection.marginals",
    "?selection.variants",
    "?selection.closure_plot",
    "?population.lenses",
    "?population.closure",
    "?population.closure_plot",
    "?failures.summary",
    "?failures.galleries",
    "?ensemble.metrics",
    "?mine.metrics",
)
WRITES = ("html", "skymap")


def run(cfg: ReportConfig, ctx: StageContext) -> Manifest:
    """Render the page from the recorded stages (a missing or failed stage fails a non-blocking gate)."""
    manifests = {s: m for s in UPSTREAM if (m := ctx.recorded(s)) is not None}
    html = build(
        ctx.artifact,
        manifests,
        dump_config(ctx.config.full()),
        cfg.title,
        ctx.output("skymap"),
        dict(cfg.threshold_overrides),
    )
    atomic_write_bytes(ctx.output("html"), html.encode())
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts={"bytes": len(html), "sections": len(PAGE_SECTIONS)}, gates=gates)
