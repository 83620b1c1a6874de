"""evaluate: score val and test with the frozen finder; AUC, Tier-A/B recall, ECE, FPR by N2 category and by
observing conditions, shortcut gates, figures and galleries. Red shortcut gates do not stop the pipeline:
they mark the audit as not trustworthy (manifest extra, report banner, CLI summary)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lensaudit.audit import metrics as M
from lensaudit.audit.shortcuts import shortcut_gates
from lensaudit.audit.stratified import add_bins, stratified
from lensaudit.config import EvaluateConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.report.rgb import gallery
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "evaluate"
SECTIONS = ("evaluate",)
DEPENDS = ("train", "cutouts", "sample")
COND = ["psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_mag_g", "psfdepth_mag_r", "psfdepth_mag_z", "nobs_z", "nobs_z_bin",
        "type", "ebv", "mag_r", "ra", "dec", "healpix_128"]


def score_table(ctx: RunContext, splits: tuple[str, ...]) -> tuple[pd.DataFrame, np.ndarray]:
    """Scores (and logits) of every quality-ok stamp of the given splits, joined with sample and quality."""
    sample = pd.read_parquet(ctx.run_dir / "sample" / "sample.parquet")
    stamps = pd.read_parquet(ctx.run_dir / "cutouts" / "stamps.parquet")
    q = stamps[stamps.quality_ok].drop(columns=["label", "pool", "split", "psfsize_r", "psfdepth_mag_r"], errors="ignore")
    df = q.merge(sample, on="galaxy_id", how="inner")
    df = df[df.split.isin(splits)].sort_values("row").reset_index(drop=True)
    model = load_frozen(ctx.run_dir / "train", ctx.config.train.device)
    store = StampStore.open(ctx.run_dir / "cutouts" / "stamps.zarr")
    logits = []
    with ctx.progress(len(df), "evaluate: scoring") as bar:
        for a in range(0, len(df), 256):
            img, _, _ = store.read(df.row.to_numpy()[a:a + 256])
            logits.append(model.logits(img))
            bar.advance(len(img))
    z = np.concatenate(logits) if logits else np.zeros(0)
    df["logit"], df["score"] = z, 1 / (1 + np.exp(-z))
    return df, model.sha256


def run(cfg: EvaluateConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    df, sha = score_table(ctx, ("val", "test"))
    keep = ["row", "galaxy_id", "label", "tier", "pool", "n2_category", "split", "logit", "score"] + COND
    write_parquet_atomic(df[keep], out / "scores.parquet")
    test, val = df[df.split == "test"], df[df.split == "val"]
    lv = cfg.interval
    neg = test[test.label == 0].score.to_numpy()
    at_fpr = lambda f: M.threshold_at_fpr(neg, f) if len(neg) else 1.0  # noqa: E731
    thresholds = {f"score={t:g}": float(t) for t in cfg.thresholds}
    for f in cfg.fixed_fprs:
        thresholds[f"fpr={f:g}"] = at_fpr(f)
    kind, _, num = cfg.operating_point.partition("=")  # validated by EvaluateConfig: 'score=S' or 'fpr=F'
    if cfg.operating_point not in thresholds:
        thresholds[cfg.operating_point] = float(num) if kind == "score" else at_fpr(float(num))
    op = thresholds[cfg.operating_point]
    auc = M.bootstrap_ci(test.label.to_numpy(), test.score.to_numpy(), n=cfg.n_bootstrap, seed=ctx.seed)
    auc_val = M.bootstrap_ci(val.label.to_numpy(), val.score.to_numpy(), n=cfg.n_bootstrap, seed=ctx.seed)
    rng = np.random.default_rng(ctx.seed)
    diffs = []
    for _ in range(cfg.n_bootstrap):
        a = val.iloc[rng.integers(0, len(val), len(val))]
        b = test.iloc[rng.integers(0, len(test), len(test))]
        d = M.roc_auc(a.label, a.score) - M.roc_auc(b.label, b.score)
        if np.isfinite(d):
            diffs.append(d)
    recall = {}
    for tier in ("A", "B"):
        s = test[(test.label == 1) & (test.tier == tier)].score
        recall[tier] = {name: M.rate(s >= t, lv) for name, t in thresholds.items()}
    T = M.fit_temperature(val.logit.to_numpy(), val.label.to_numpy()) if cfg.temperature_scaling and val.label.nunique() == 2 else 1.0
    p_cal = 1 / (1 + np.exp(-test.logit.to_numpy() / T))
    fpr_cat = {c: M.rate(g.score >= op, lv) for c, g in test[test.label == 0].groupby(test[test.label == 0].n2_category.replace("", "N1"))}
    tb = add_bins(test)
    strata = pd.concat([stratified(tb, op, by, cfg.min_bin_count, lv) for by in ("psf_bin", "depth_bin", "nobs_z_bin", "type")], ignore_index=True)
    write_parquet_atomic(strata, out / "stratified.parquet")
    vac = _desi_vac(ctx, df, op)
    sc_gates, sc = shortcut_gates(df[["label"] + [c for c in df.columns if c.startswith(("core", "annulus_", "mad_"))]],
                                  cfg.shortcut_warn, cfg.shortcut_fail, ctx.seed)
    metrics = {"model_sha256": sha, "n_test": len(test), "n_test_pos": int(test.label.sum()), "auc_test": auc, "auc_val": auc_val,
               "auc_val_minus_test": {"value": auc_val["value"] - auc["value"],
                                      "ci68": list(np.quantile(diffs, [0.16, 0.84])) if diffs else None},
               "thresholds": thresholds, "operating_point": cfg.operating_point, "operating_threshold": op,
               "recall_tier_A": recall["A"], "recall_tier_B": recall["B"],
               "tpr0": M.tpr_at_fp(test.label, test.score, 0), "tpr10": M.tpr_at_fp(test.label, test.score, 10),
               "ece": M.ece(test.score.to_numpy(), test.label.to_numpy(), cfg.ece_bins),
               "ece_calibrated": M.ece(p_cal, test.label.to_numpy(), cfg.ece_bins), "temperature": T,
               "reliability": M.reliability(test.score.to_numpy(), test.label.to_numpy(), cfg.ece_bins),
               "fpr_by_category": fpr_cat, "shortcuts": sc, "desi_sl_vac": vac}
    atomic_write_json(out / "metrics.json", metrics)
    _figures(out, test, metrics, strata, op)
    _galleries(ctx, out, test, cfg.top_k)
    a68 = auc["ci68"]
    gates = [Gate(name="test_auc", value=auc["value"], ci=a68, warn=0.8, fail=0.5, higher_is_better=True, blocking=False,
                  message=f"68% CI [{a68[0]:.3f}, {a68[1]:.3f}]"),
             Gate(name="tier_A_recall_at_op", value=recall["A"][cfg.operating_point]["rate"], warn=0.5, fail=0.0, higher_is_better=True,
                  blocking=False, message=f"{recall['A'][cfg.operating_point]['k']}/{recall['A'][cfg.operating_point]['n']} at {cfg.operating_point}"),
             Gate(name="ece", value=metrics["ece"], warn=0.1, fail=0.25, blocking=False, message="equal-mass bins"),
             *sc_gates]
    trustworthy = not any(g.status == "fail" for g in sc_gates)
    return Manifest(counts={"scored": len(df), "test": len(test), "test_pos": int(test.label.sum()), "val": len(val)},
                    gates=gates, outputs=["scores.parquet", "metrics.json", "stratified.parquet", "roc.png", "reliability.png",
                                          "scores_by_category.png", "stratified.png", "gallery_top_negatives.png",
                                          "gallery_lowest_tier_A.png"],
                    extra={"trustworthy": trustworthy, "operating_threshold": op, "model_sha256": sha, "auc_test": auc["value"]})


def _desi_vac(ctx: RunContext, df: pd.DataFrame, op: float) -> dict | None:
    p = ctx.run_dir / "positives" / "desi_sl_vac.parquet"
    if not p.is_file():
        return None
    from lensaudit.catalog.spatial import nearest_matches

    vac = pd.read_parquet(p)
    m = nearest_matches(vac.ra.to_numpy(), vac.dec.to_numpy(), df, 1.0)
    hits = df.iloc[m.row.to_numpy()]
    return {"n_vac": len(vac), "n_matched_stamps": int(len(hits)), "recall_at_op": M.rate(hits.score >= op, ctx.config.evaluate.interval)}


def _figures(out, test: pd.DataFrame, m: dict, strata: pd.DataFrame, op: float) -> None:
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if test.label.nunique() == 2:
        fpr, tpr, _ = roc_curve(test.label, test.score)
        ax.plot(fpr, tpr, lw=2, label=f"test AUC {m['auc_test']['value']:.3f} [{m['auc_test']['ci68'][0]:.3f}, {m['auc_test']['ci68'][1]:.3f}]")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (spatial test split)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    rel = pd.DataFrame(m["reliability"])
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    if len(rel):
        ax.plot(rel.p_mean, rel.y_mean, "o-", label=f"ECE {m['ece']:.3f} (equal-mass bins)")
    ax.set(xlabel="mean predicted score", ylabel="fraction of lenses", title="reliability (test)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = test.assign(g=np.where(test.label == 1, "lens (" + test.tier + ")", test.n2_category.replace("", "N1")))
    names = sorted(groups.g.unique())
    ax.boxplot([groups[groups.g == n].score for n in names], tick_labels=names, orientation="horizontal")
    ax.axvline(op, color="r", ls="--", label="operating threshold")
    ax.set(xlabel="score", title="score distributions by class and N2 category (test)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scores_by_category.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (by, g) in zip(axes, strata.groupby("by", sort=False)):
        x = np.arange(len(g))
        ok = ~g.recall_insufficient.to_numpy()
        r, lo, hi = g.recall.to_numpy()[ok], g.recall_lo.to_numpy()[ok], g.recall_hi.to_numpy()[ok]
        ax.errorbar(x[ok], r, yerr=[np.clip(r - lo, 0, None), np.clip(hi - r, 0, None)], fmt="o", label="recall (Jeffreys 68%)")
        ax.errorbar(x[~ok], g.recall[~ok], fmt="x", color="grey", label="insufficient")
        ax.set_xticks(x, g.bin, rotation=35, fontsize=7)
        ax.set(title=f"recall by {by}", ylim=(-0.05, 1.05))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "stratified.png", dpi=90)
    plt.close(fig)


def _galleries(ctx: RunContext, out, test: pd.DataFrame, k: int) -> None:
    store = StampStore.open(ctx.run_dir / "cutouts" / "stamps.zarr")
    for name, sel, title in (("gallery_top_negatives.png", test[test.label == 0].nlargest(k, "score"), "highest-scoring negatives (hard negatives or missed lenses)"),
                             ("gallery_lowest_tier_A.png", test[(test.label == 1) & (test.tier == "A")].nsmallest(k, "score"), "lowest-scoring Tier-A lenses")):
        imgs = store.read(np.sort(sel.row.to_numpy()))[0] if len(sel) else np.zeros((0, 3, 101, 101))
        sel = sel.sort_values("row")
        gallery(imgs, [f"{g}\n{s:.2f} {c}" for g, s, c in zip(sel.galaxy_id, sel.score, sel.n2_category)], out / name, title=title)
