"""ensemble: the members of ``ensemble.members`` (the train stage's finder reused for its architecture, the
others trained here on the same data with the same seeds and training config), their val/test scores, and
their combination by mean logit and by a logistic meta-learner fitted on val. Each member and each ensemble is
audited by the same :func:`lensaudit.audit.evaluation.evaluate` as the single finder; ``metrics.json`` holds
the members' metrics next to the ensembles'. Runs in the pipeline when ``ensemble.enabled`` (demo-full)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit.audit.evaluation import Independent, evaluate
from lensaudit.audit.scoring import score_table
from lensaudit.config import EnsembleConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.sky.catalogues import GZ_FILE
from lensaudit.stamps.store import StampStore
from lensaudit.survey.galaxyzoo import read_gz_decals
from lensaudit.survey.lenses import independent_path
from lensaudit.train.ensemble import combine, member_files, train_member
from lensaudit.train.infer import load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "ensemble"
SECTIONS = ("ensemble", "train", "evaluate", "data.source", "data.sky_dir")
READS = (
    "train.best",
    "train.model_card",
    "cutouts.stamps",
    "cutouts.index",
    "sample.sample",
    "?positives.desi_sl_vac",
    "?positives.positives",
)
WRITES = ("members", "metrics", "scores")
#: the metrics compared member by member in the report
SUMMARY = (
    "auc_test",
    "auc_val",
    "recall_tier_A",
    "tpr0",
    "tpr10",
    "ece",
    "fpr_by_category",
    "operating_threshold",
)


def run(cfg: EnsembleConfig, ctx: StageContext) -> Manifest:
    """Train the missing members (and the crop-ablation models), score val and test with each, combine,
    audit all alike."""
    store = StampStore.open(ctx.artifact("cutouts", "stamps"))
    scored = {arch: _member_scores(ctx, arch, store) for arch in cfg.members}
    tables = {f"member:{a}": s for a, s in scored.items()}
    crops = {f"crop:{c}": _member_scores(ctx, ctx.config.train.arch, store, c) for c in cfg.crop_ablation}
    tables["ensemble:mean_logit"], _ = combine(scored, "mean_logit")
    meta = None
    if cfg.meta_learner:
        tables["ensemble:meta"], meta = combine(scored, "meta")
    ind = _independent(ctx)
    ev = {
        k: evaluate(t, ctx.config.evaluate, ctx.seed, k, extra=ind).metrics
        for k, t in {**tables, **crops}.items()
    }
    metrics = {
        "members": list(cfg.members),
        "operating_point": ctx.config.evaluate.operating_point,
        "train_arch": ctx.config.train.arch,
        "train_crop_pix": ctx.config.train.crop_pix,
        "meta_learner": meta.to_dict() if meta else None,
        "summary": {k: {s: m[s] for s in SUMMARY} for k, m in ev.items()},
        "full": ev,
    }
    atomic_write_json(ctx.output("metrics"), metrics)
    write_parquet_atomic(_scores_table(tables), ctx.output("scores"))
    counts = {"members": len(cfg.members), "scored": len(tables["ensemble:mean_logit"])}
    return Manifest(counts=counts, extra={k: m["auc_test"]["value"] for k, m in ev.items()})


def _member_scores(ctx: StageContext, arch: str, store: StampStore, crop: int | None = None) -> pd.DataFrame:
    """The val/test scored table of member ``arch`` (at centre crop ``crop``, default the train stage's): the
    train stage's finder when it is that model, else one trained here (resumable) under ``members/``."""
    best, card = ctx.artifact("train", "best"), ctx.artifact("train", "model_card")
    sample, index = ctx.artifact("sample", "sample"), ctx.artifact("cutouts", "index")
    tcfg = ctx.config.train
    crop = tcfg.crop_pix if crop is None else crop
    if arch != tcfg.arch or crop != tcfg.crop_pix:
        out = ctx.output("members") / (arch if crop == tcfg.crop_pix else f"{arch}_crop{crop}")
        with ctx.progress(tcfg.epochs, f"ensemble: training {out.name}") as bar:
            cfg = tcfg.model_copy(update={"arch": arch, "crop_pix": crop})
            train_member(store, sample, index, cfg, ctx.seed, out, on_epoch=lambda rec: bar.advance(1))
        best, card = member_files(out)
    model = load_frozen(best=best, card=card, device=tcfg.device)
    return score_table(sample, index, store, model, ("val", "test"))


def _independent(ctx: StageContext) -> Independent:
    vac, pos = ctx.artifact("positives", "desi_sl_vac"), ctx.artifact("positives", "positives")
    gz = independent_path(ctx.config, ctx.config.evaluate.galaxy_zoo, GZ_FILE)
    return Independent(
        vac=pd.read_parquet(vac) if vac.is_file() else None,
        gz=read_gz_decals(gz) if gz is not None else None,
        positives=pd.read_parquet(pos) if pos.is_file() else None,
    )


def _scores_table(tables: dict[str, Any]) -> pd.DataFrame:
    """galaxy_id, split, label and one logit column per member and ensemble."""
    first = next(iter(tables.values()))
    out = first[["galaxy_id", "split", "label", "tier", "n2_category"]].copy()
    for k, t in tables.items():
        out = out.merge(t[["galaxy_id", "logit"]].rename(columns={"logit": f"logit[{k}]"}), on="galaxy_id")
    return out
