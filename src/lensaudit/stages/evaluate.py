"""evaluate: score val and test with the frozen finder; AUC, Tier-A/B recall, ECE, FPR by N2 category and by
observing conditions, shortcut measurements, figures and galleries. The gates are computed from the written
artifacts (:mod:`lensaudit.validation.gates.evaluate`); red shortcut gates do not stop the pipeline: they mark
the audit as not trustworthy (manifest extra, report banner, CLI summary).

Science in :mod:`lensaudit.audit.scoring` and :mod:`lensaudit.audit.evaluation`; figures in
:mod:`lensaudit.report.figures.audit`. ``mined_negatives`` is written by :func:`mine` (``lensaudit
mine-negatives``), not by ``run``; the runner clears this stage's directory when evaluate reruns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit import validation
from lensaudit.audit.evaluation import Independent, evaluate, gallery_picks
from lensaudit.audit.scoring import SCORE_COLUMNS, mine_negatives, score_table
from lensaudit.config import EvaluateConfig, RunConfig
from lensaudit.report.figures import audit as fig
from lensaudit.run import Manifest, StageContext
from lensaudit.sky.catalogues import GZ_FILE
from lensaudit.stamps.store import StampStore
from lensaudit.survey.galaxyzoo import read_gz_decals
from lensaudit.survey.lenses import independent_path
from lensaudit.train.infer import FrozenModel, load_frozen
from lensaudit.utils import atomic_write_json, hash_unit_interval, write_parquet_atomic
from lensaudit.validation.gates.evaluate import trustworthy

NAME = "evaluate"
SECTIONS = ("evaluate", "train.device", "data.source", "data.sky_dir")
READS = (
    "train.best",
    "train.model_card",
    "cutouts.stamps",
    "cutouts.index",
    "sample.sample",
    "?positives.desi_sl_vac",
    "?positives.positives",
)
WRITES = (
    "scores",
    "metrics",
    "stratified",
    "roc",
    "reliability",
    "scores_by_category",
    "stratified_plot",
    "gallery_top_negatives",
    "gallery_lowest_tier_A",
    "mined_negatives",
)


def run(cfg: EvaluateConfig, ctx: StageContext) -> Manifest:
    """Score the val and test splits, audit them, write tables, metrics and figures."""
    df, model, store = _scored(ctx, ("val", "test"))
    write_parquet_atomic(df[SCORE_COLUMNS], ctx.output("scores"))
    ev = evaluate(df, cfg, ctx.seed, model.sha256, extra=_independent(ctx, cfg, model, store))
    write_parquet_atomic(ev.strata, ctx.output("stratified"))
    atomic_write_json(ctx.output("metrics"), ev.metrics)
    fig.roc(ev.test, ev.metrics["auc_test"], ctx.output("roc"))
    fig.reliability(ev.metrics["reliability"], ev.metrics["ece"], ctx.output("reliability"))
    fig.scores_by_category(ev.test, ev.op, ctx.output("scores_by_category"))
    fig.stratified(ev.strata, ctx.output("stratified_plot"))
    for name, sel, title in gallery_picks(ev.test, cfg.top_k):
        fig.score_gallery(store, sel, ctx.output(name), title)
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts=ev.counts, gates=gates, extra=ev.extra(trustworthy(gates)))


def inputs(cfg: RunConfig) -> list[Path]:
    """The Galaxy Zoo catalogue (its checksum enters the fingerprint), when configured and present."""
    p = independent_path(cfg, cfg.evaluate.galaxy_zoo, GZ_FILE)
    return [p] if p is not None and p.is_file() else []


def _independent(
    ctx: StageContext, cfg: EvaluateConfig, model: FrozenModel, store: StampStore
) -> Independent:
    """The audit's independent inputs: a hash-chosen subsample of ≤ ``evaluate.train_auc_max`` train stamps
    scored (the overfitting red flag), the DESI VAC, the Galaxy Zoo catalogue and the positives."""
    sample = pd.read_parquet(ctx.artifact("sample", "sample"))
    tr = sample[sample.split == "train"]
    tr = tr.iloc[
        np.sort(np.argsort(hash_unit_interval(tr.galaxy_id, ctx.seed), kind="stable")[: cfg.train_auc_max])
    ]
    train = score_table(tr, ctx.artifact("cutouts", "index"), store, model, ("train",)) if len(tr) else None
    vac, pos = ctx.artifact("positives", "desi_sl_vac"), ctx.artifact("positives", "positives")
    gz = independent_path(ctx.config, cfg.galaxy_zoo, GZ_FILE)
    return Independent(
        train=train,
        vac=pd.read_parquet(vac) if vac.is_file() else None,
        gz=read_gz_decals(gz) if gz is not None else None,
        positives=pd.read_parquet(pos) if pos.is_file() else None,
    )


def mine(ctx: StageContext, top_k: int) -> Path:
    """``lensaudit mine-negatives``, an explicit and optional step outside the pipeline: score the TRAIN
    split and write its ``top_k`` highest-scoring negatives to the ``mined_negatives`` artifact (returned)."""
    ctx.manifest("train")  # UpstreamError unless the finder was trained and frozen
    df, model, _ = _scored(ctx, ("train",))
    out = ctx.output("mined_negatives")
    write_parquet_atomic(mine_negatives(df, top_k, model.sha256), out)
    return out


def _scored(ctx: StageContext, splits: tuple[str, ...]) -> tuple[pd.DataFrame, FrozenModel, StampStore]:
    """The frozen finder, the stamp store, and the scored quality-ok stamps of ``splits``."""
    best, card = ctx.artifact("train", "best"), ctx.artifact("train", "model_card")
    model = load_frozen(best=best, card=card, device=ctx.config.train.device)
    store = StampStore.open(ctx.artifact("cutouts", "stamps"))
    sample, index = ctx.artifact("sample", "sample"), ctx.artifact("cutouts", "index")
    bar = lambda n: ctx.progress(n, "evaluate: scoring")
    return score_table(sample, index, store, model, splits, progress=bar), model, store
