"""train: the lens finder on the stamps of the train split, early-stopped on the spatial val split, frozen."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit import validation
from lensaudit.config import TrainConfig
from lensaudit.report.figures.train import plot_curves
from lensaudit.run import Manifest, StageContext
from lensaudit.stamps.store import StampStore
from lensaudit.train.card import model_card, train_counts
from lensaudit.train.data import load_table
from lensaudit.train.infer import pick_device
from lensaudit.train.loop import CheckpointPaths, fit, new_model, training_data
from lensaudit.utils import atomic_write_json

NAME = "train"
SECTIONS = ("train",)
READS = ("sample.sample", "cutouts.index", "cutouts.stamps")
WRITES = ("best", "last", "model_card", "history", "curves")


def run(cfg: TrainConfig, ctx: StageContext) -> Manifest:
    """Fit the finder (resuming from ``last``), freeze ``best`` with its model card, plot the curves."""
    sample, index = ctx.artifact("sample", "sample"), ctx.artifact("cutouts", "index")
    t = load_table(pd.read_parquet(sample), pd.read_parquet(index))
    data = training_data(StampStore.open(ctx.artifact("cutouts", "stamps")), t, cfg, ctx.seed)
    device = pick_device(cfg.device)
    model = new_model(cfg, ctx.seed, device)
    paths = CheckpointPaths(best=ctx.output("best"), last=ctx.output("last"), history=ctx.output("history"))
    desc = f"train: {cfg.arch} on {len(data.train)} stamps ({data.n_pos} positives)"
    with ctx.progress(cfg.epochs, desc) as bar:
        res = fit(
            model,
            data.train,
            data.val,
            cfg,
            paths,
            ctx.seed,
            device,
            data.pos_weight,
            t.galaxy_id,
            t.tier,
            on_epoch=lambda rec: bar.update(advance=1, description=_epoch_text(rec)),
        )
    card = model_card(cfg, data, res, paths.best, sample, index, ctx.seed, device)
    atomic_write_json(ctx.output("model_card"), card)
    plot_curves(res.history, ctx.output("curves"))
    extra = {"frozen_sha256": card["frozen_sha256"], "best_val_auc": res.best_auc, "stopped": res.stopped}
    extra["environment"] = card["environment"]
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts=train_counts(data, res), gates=gates, extra=extra)


def _epoch_text(rec: dict[str, Any]) -> str:
    return f"train: epoch {rec['epoch']} val AUC {rec['val_auc']:.3f}"
