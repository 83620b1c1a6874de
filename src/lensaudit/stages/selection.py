"""selection: score the injections with the frozen finder (hash checked against the train manifest) at the
evaluate stage's operating threshold → completeness per cell with Beta posteriors → lookup table (FITS +
Parquet), heatmaps, marginals, robustness and prior sensitivity, and the closure test on the synthetic sky.
The gates are computed from the written artifacts (:mod:`lensaudit.validation.gates.selection`)."""

from __future__ import annotations

import pandas as pd

from lensaudit import validation
from lensaudit.config import SelectionConfig
from lensaudit.errors import GateFailed
from lensaudit.report.figures import selection as figures
from lensaudit.run import Manifest, StageContext
from lensaudit.selection.closure import closure
from lensaudit.selection.completeness import completeness_table, lookup_table, selection_counts
from lensaudit.selection.grid import grid_of
from lensaudit.selection.robustness import robustness, variant_curves
from lensaudit.selection.scoring import SCORE_COLUMNS, check_frozen, score_injections
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "selection"
SECTIONS = ("selection", "inject", "evaluate.operating_point", "train.device", "data.source")
READS = (
    "inject.injections",
    "inject.stamps",
    "inject.realism",
    "train.best",
    "train.model_card",
    "evaluate.scores",
    "?sky.truth",
)
WRITES = (
    "injection_scores",
    "table_fits",
    "table",
    "robustness",
    "closure",
    "heatmaps",
    "marginals",
    "variants",
    "closure_plot",
)
NO_GO = (
    "realism gates say NO-GO (see inject/_stage.json); rerun with --set selection.force=true to compute the "
    "selection function anyway — every figure is then stamped 'realism gates failed'"
)


def run(cfg: SelectionConfig, ctx: StageContext) -> Manifest:
    """Score the injections, tabulate completeness per cell, test its robustness and closure, draw it."""
    verdict = ctx.manifest("inject").extra.get("verdict", "NO-GO")
    if verdict != "GO" and not cfg.force:
        raise GateFailed(NO_GO)
    model = load_frozen(ctx.artifact("train", "best").parent, ctx.config.train.device)
    check_frozen(model, ctx.manifest("train").extra.get("frozen_sha256"))
    op = float(ctx.manifest("evaluate").extra["operating_threshold"])
    inj = pd.read_parquet(ctx.artifact("inject", "injections"))
    store = StampStore.open(ctx.artifact("inject", "stamps"))
    with ctx.progress(len(inj), "selection: scoring injections") as bar:
        inj = score_injections(inj, model, store, op, bar.advance)
    write_parquet_atomic(inj[SCORE_COLUMNS], ctx.output("injection_scores"))
    icfg, op_point = ctx.config.inject, ctx.config.evaluate.operating_point
    grid, axes = grid_of(icfg)
    table = completeness_table(grid, inj[inj.variant == "main"], cfg)
    sf = lookup_table(table, icfg, cfg, model.sha256, op, op_point, verdict)
    sf.write(ctx.output("table_fits"), ctx.output("table"))
    robust = robustness(grid, inj, cfg, table)
    write_parquet_atomic(robust, ctx.output("robustness"))
    truth = ctx.artifact("sky", "truth") if ctx.config.data.source == "synthetic" else None
    clo = closure(sf, op, truth, ctx.artifact("evaluate", "scores"))
    atomic_write_json(ctx.output("closure"), clo)
    paths = {n: ctx.output(n) for n in ("heatmaps", "marginals", "variants", "closure_plot")}
    figures.selection_figures(table, axes, variant_curves(inj, axes[0], cfg), clo, paths, verdict != "GO")
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    extra = {"forced": verdict != "GO", "operating_threshold": op}
    return Manifest(counts=selection_counts(inj, table), gates=gates, extra=extra)
