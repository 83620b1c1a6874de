"""ensemble: the members of ``ensemble.members`` (the train stage's finder reused for its architecture, the
others trained here on the same data with the same seeds and training config), their val/test scores, and
their combination by mean logit and by a logistic meta-learner fitted on val. Each member and each ensemble is
audited by the same :func:`lensaudit.audit.evaluation.evaluate` as the single finder; ``metrics.json`` holds
the members' metrics next to the ensembles'. With the inject stage's injections, the selection function of
every member and ensemble, each at its own operating threshold (``selection_members.parquet``, pairwise
|ΔC| in ``metrics.json``: :mod:`lensaudit.selection.members`). Gates:
:mod:`lensaudit.validation.gates.ensemble`. Runs in the pipeline when ``ensemble.enabled`` (demo-full)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit import validation
from lensaudit.audit.evaluation import Independent, evaluate
from lensaudit.audit.scoring import score_table
from lensaudit.config import EnsembleConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.selection import members
from lensaudit.sky.catalogues import GZ_FILE
from lensaudit.stamps.store import StampStore
from lensaudit.survey.galaxyzoo import read_gz_decals
from lensaudit.survey.lenses import independent_path
from lensaudit.train.ensemble import MetaLearner, combine, member_files, train_member
from lensaudit.train.infer import FrozenModel, load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "ensemble"
SECTIONS = ("ensemble", "train", "evaluate", "inject", "selection", "data.source", "data.sky_dir")
READS = (
    "train.best",
    "train.model_card",
    "cutouts.stamps",
    "cutouts.index",
    "sample.sample",
    "?positives.desi_sl_vac",
    "?positives.positives",
    "?inject.injections",
    "?inject.stamps",
)
WRITES = ("members", "metrics", "scores", "selection_members")
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
    audit all alike; the selection function of every member and ensemble from the inject stage's stamps."""
    store = StampStore.open(ctx.artifact("cutouts", "stamps"))
    models = {arch: _member(ctx, arch, store) for arch in cfg.members}
    scored = {a: m[0] for a, m in models.items()}
    tables = {f"member:{a}": s for a, s in scored.items()}
    crops = {f"crop:{c}": _member(ctx, ctx.config.train.arch, store, c)[0] for c in cfg.crop_ablation}
    tables["ensemble:mean_logit"], _ = combine(scored, "mean_logit")
    meta = None
    if cfg.meta_learner:
        tables["ensemble:meta"], meta = combine(scored, "meta")
    ind = _independent(ctx)
    ev = {
        k: evaluate(t, ctx.config.evaluate, ctx.seed, k, extra=ind).metrics
        for k, t in {**tables, **crops}.items()
    }
    sel = _selection_members(ctx, {a: m[1] for a, m in models.items()}, meta, ev)
    atomic_write_json(ctx.output("metrics"), _metrics(cfg, ctx, meta, ev, sel))
    write_parquet_atomic(_scores_table(tables), ctx.output("scores"))
    counts = {"members": len(cfg.members), "scored": len(tables["ensemble:mean_logit"])}
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts=counts, gates=gates, extra={k: m["auc_test"]["value"] for k, m in ev.items()})


def _metrics(
    cfg: EnsembleConfig, ctx: StageContext, meta: MetaLearner | None, ev: dict[str, dict], sel: dict
) -> dict[str, Any]:
    """``metrics.json``: the members, the meta-learner, each model's summary and full audit, and the
    selection function by member."""
    return {
        "members": list(cfg.members),
        "operating_point": ctx.config.evaluate.operating_point,
        "train_arch": ctx.config.train.arch,
        "train_crop_pix": ctx.config.train.crop_pix,
        "meta_learner": meta.to_dict() if meta else None,
        "summary": {k: {s: m[s] for s in SUMMARY} for k, m in ev.items()},
        "selection_members": sel,
        "full": ev,
    }


def _member(
    ctx: StageContext, arch: str, store: StampStore, crop: int | None = None
) -> tuple[pd.DataFrame, FrozenModel]:
    """The val/test scored table of member ``arch`` (at centre crop ``crop``, default the train stage's) and
    the frozen model: the train stage's finder when it is that model, else one trained here (resumable)
    under ``members/``."""
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
    return score_table(sample, index, store, model, ("val", "test")), model


def _selection_members(
    ctx: StageContext, models: dict[str, FrozenModel], meta: MetaLearner | None, ev: dict[str, dict]
) -> dict[str, Any]:
    """``selection_members.parquet`` (the 3-D selection function of each member and ensemble at its own
    operating threshold, :mod:`lensaudit.selection.members`) and its summary for metrics.json; without the
    inject stage's injections (inject not run) a record saying so."""
    inj_path, stamps = ctx.artifact("inject", "injections"), ctx.artifact("inject", "stamps")
    if not inj_path.is_file() or not stamps.exists():
        return {"available": False, "reason": "no injections (the inject stage has not run)"}
    inj, store = pd.read_parquet(inj_path), StampStore.open(stamps)
    thr = {k: float(m["operating_threshold"]) for k, m in ev.items()}
    c = ctx.config
    with ctx.progress(len(inj) * len(models), "ensemble: scoring injections") as bar:
        args = (thr, c.inject, c.selection, c.evaluate.operating_point, bar.advance)
        t, summary = members.selection(models, meta, inj, store, *args)
    write_parquet_atomic(t, ctx.output("selection_members"))
    verdict = (ctx.recorded("inject") or Manifest(stage="inject")).extra.get("verdict", "unknown")
    return {"available": True, "realism_verdict": verdict, **summary}


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
