"""selection: score the injections with the frozen finder (hash checked against the train manifest) at the
evaluate stage's operating threshold → the conditional selection function C(θE, PSF, depth, m) with Beta
posteriors (FITS + Parquet, :mod:`lensaudit.selection.conditional`), its 3-D marginal, heatmaps, curves,
robustness (prior re-weighting, morphology and host brackets, host nobs_z and TYPE), the systematics (the
paired PSF-β bracket and inner-image ablation, the SLACS/BELLS-like stress set: ``systematics.json``) and the
closure ladder on the synthetic sky.
The gates are computed from the written artifacts (:mod:`lensaudit.validation.gates.selection`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit import validation
from lensaudit.config import SelectionConfig
from lensaudit.errors import GateFailed
from lensaudit.report.figures import selection as figures
from lensaudit.run import Manifest, StageContext
from lensaudit.selection import closure, conditional
from lensaudit.selection.completeness import provenance, selection_counts
from lensaudit.selection.grid import grid_of
from lensaudit.selection.injection import paired_variants
from lensaudit.selection.robustness import mag_curves, robustness, variant_curves
from lensaudit.selection.scoring import SCORE_COLUMNS, check_frozen, score_injections
from lensaudit.selection.systematics import systematics_record
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import FrozenModel, load_frozen
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
    "table_alt",
    "marginal",
    "robustness",
    "closure",
    "systematics",
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
    """Score the injections, tabulate completeness per cell and magnitude, test robustness and closure."""
    verdict = ctx.manifest("inject").extra.get("verdict", "NO-GO")
    if verdict != "GO" and not cfg.force:
        raise GateFailed(NO_GO)
    model = load_frozen(ctx.artifact("train", "best").parent, ctx.config.train.device)
    check_frozen(model, ctx.manifest("train").extra.get("frozen_sha256"))
    op = float(ctx.manifest("evaluate").extra["operating_threshold"])
    inj = _scored(ctx, model, op)
    icfg, op_point = ctx.config.inject, ctx.config.evaluate.operating_point
    grid, axes = grid_of(icfg)
    meta = provenance(icfg, cfg, model.sha256, op, op_point, verdict)
    tables = conditional.build_tables(grid, inj, icfg, cfg, meta)
    reps = conditional.replicates(tables, cfg, ctx.seed)  # the intervals' and the closure's σ
    tables = conditional.with_host_intervals(tables, reps)
    tables.chosen(cfg).write(ctx.output("table_fits"), ctx.output("table"))
    tables.alternative(cfg).write_parquet(ctx.output("table_alt"))
    write_parquet_atomic(tables.marginal, ctx.output("marginal"))
    sf_src, paired = tables.by_axis["src_mag"], paired_variants(icfg)
    robust = robustness(grid, inj, cfg, tables.marginal, sf_src, icfg.src_mag_r_range, paired)
    write_parquet_atomic(robust, ctx.output("robustness"))
    atomic_write_json(ctx.output("systematics"), systematics_record(inj, paired, sf_src, op, cfg))
    clo = _closure(ctx, tables, cfg, op, reps)
    atomic_write_json(ctx.output("closure"), clo)
    paths = {n: ctx.output(n) for n in ("heatmaps", "marginals", "variants", "closure_plot")}
    curves = (variant_curves(inj, axes[0], cfg), mag_curves(inj, axes[0], sf_src.mag_edges, cfg))
    figures.selection_figures(tables.marginal, axes, curves, clo, paths, verdict != "GO")
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    extra = {"forced": verdict != "GO", "operating_threshold": op, "condition_on": cfg.condition_on}
    return Manifest(counts=selection_counts(inj, tables.marginal), gates=gates, extra=extra)


def _scored(ctx: StageContext, model: FrozenModel, op: float) -> pd.DataFrame:
    """The injections with the finder's scores; ``injection_scores.parquet`` written."""
    inj = pd.read_parquet(ctx.artifact("inject", "injections"))
    store = StampStore.open(ctx.artifact("inject", "stamps"))
    with ctx.progress(len(inj), "selection: scoring injections") as bar:
        inj = score_injections(inj, model, store, op, bar.advance)
    write_parquet_atomic(inj[SCORE_COLUMNS], ctx.output("injection_scores"))
    return inj


def _closure(
    ctx: StageContext,
    tables: conditional.Tables,
    cfg: SelectionConfig,
    op: float,
    reps: dict[str, np.ndarray | None],
) -> dict:
    """The closure ladder on the synthetic sky's held-out true lenses (unavailable on real data), its σ from
    the tables' host-bootstrap replicates ``reps``."""
    truth = ctx.artifact("sky", "truth") if ctx.config.data.source == "synthetic" else None
    if truth is None or not truth.is_file():
        return closure.unavailable("no synthetic truth (real data)")
    lenses = closure.sky_lenses(truth, ctx.artifact("evaluate", "scores"))
    # rung (e) takes the injected size prior the tables declare (PRIORRE)
    return conditional.closure_record(tables, cfg, lenses, op, seed=ctx.seed, reps=reps)
