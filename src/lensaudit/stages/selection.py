"""selection: score the injections with the frozen finder (hash checked against the train manifest) at the
evaluate stage's operating threshold → completeness per cell with Beta posteriors → lookup table (FITS +
Parquet), heatmaps, marginals, robustness and prior sensitivity, and the closure test on the synthetic sky."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lensaudit.config import SelectionConfig
from lensaudit.errors import GateFailed, InputError
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.grid import axis, cells
from lensaudit.selection.table import SelectionFunction
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "selection"
SECTIONS = ("selection", "inject")
DEPENDS = ("inject", "evaluate", "train")


def completeness_table(grid: pd.DataFrame, inj: pd.DataFrame, cfg: SelectionConfig) -> pd.DataFrame:
    g = inj.groupby("cell").agg(n=("detected", "size"), k=("detected", "sum"))
    t = grid.join(g, on="cell").fillna({"n": 0, "k": 0})
    t["n"], t["k"] = t.n.astype(int), t.k.astype(int)
    post = beta_posterior(t.k, t.n, cfg.prior, (cfg.interval, 0.95))
    tag = int(round(cfg.interval * 100))
    t["c_mean"], t["c_lo68"], t["c_hi68"] = post["mean"], post[f"lo{tag}"], post[f"hi{tag}"]
    t["c_lo95"], t["c_hi95"] = post["lo95"], post["hi95"]
    t["insufficient"] = t.n < cfg.n_min
    return t


def run(cfg: SelectionConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    inj_man = ctx.require("inject")
    verdict = inj_man.extra.get("verdict", "NO-GO")
    forced = verdict != "GO"
    if forced and not cfg.force:
        raise GateFailed("realism gates say NO-GO (see inject/_stage.json); rerun with --set selection.force=true to compute the "
                         "selection function anyway — every figure is then stamped 'realism gates failed'")
    train_sha = ctx.require("train").extra.get("frozen_sha256")
    model = load_frozen(ctx.run_dir / "train", ctx.config.train.device)
    if train_sha and model.sha256 != train_sha:
        raise InputError(f"frozen model hash {model.sha256[:12]} differs from the train manifest's {train_sha[:12]}")
    op = float(ctx.require("evaluate").extra["operating_threshold"])
    inj = pd.read_parquet(ctx.run_dir / "inject" / "injections.parquet")
    store = StampStore.open(ctx.run_dir / "inject" / "stamps.zarr")
    scores = []
    with ctx.progress(len(inj), "selection: scoring injections") as bar:
        for a in range(0, len(inj), 256):
            scores.append(model.score(store.read(slice(a, min(a + 256, len(inj))))[0]))
            bar.advance(min(256, len(inj) - a))
    inj["score"] = np.concatenate(scores)
    inj["detected"] = inj.score >= op
    cols = ["row", "variant", "source_model", "cell", "theta_e", "psf_cell", "depth_cell", "host_galaxy_id", "degraded", "src_mag_r",
            "magnification", "arc_snr", "score", "detected"]
    write_parquet_atomic(inj[cols], out / "injection_scores.parquet")
    icfg = ctx.config.inject
    te, ps, dp = axis(icfg.theta_e_grid), axis(icfg.psf_grid), axis(icfg.depth_grid)
    grid = cells(te, ps, dp)
    main = inj[inj.variant == "main"]
    table = completeness_table(grid, main, cfg)
    meta = {"GRIDTE": f"{icfg.theta_e_grid}", "GRIDPSF": f"{icfg.psf_grid}", "GRIDDEP": f"{icfg.depth_grid}",
            "PRIOR": f"r {icfg.src_mag_r_range} mu {icfg.magnification_range} {icfg.source_model}"[:68],
            "MODELSHA": model.sha256[:64], "THRESH": op, "OPPOINT": ctx.config.evaluate.operating_point,
            "INTERVAL": cfg.interval, "NMIN": cfg.n_min, "BPRIOR": cfg.prior, "REALISM": verdict}
    sf = SelectionFunction(table, meta)
    sf.write(out / "selection_function.fits", out / "selection_function.parquet")
    robust = _robustness(grid, inj, cfg, table)
    write_parquet_atomic(robust, out / "robustness.parquet")
    closure = _closure(ctx, sf, op)
    atomic_write_json(out / "closure.json", closure)
    stamp = "REALISM GATES FAILED — " if forced else ""
    _heatmaps(table, te, ps, dp, out, stamp)
    _variants_plot(inj, te, cfg, out, stamp)
    ok = table[~table.insufficient]
    trend, psf_trend = _corr(ok.theta_e, ok.c_mean), _corr(ok.psf_fwhm, ok.c_mean)
    gates = [Gate(name="cells_sufficient", value=float((~table.insufficient).mean()), warn=0.9, fail=0.3, higher_is_better=True, blocking=False,
                  message=f"{int((~table.insufficient).sum())}/{len(table)} cells with n ≥ {cfg.n_min}"),
             Gate(name="completeness_rises_with_theta_e", value=trend, warn=0.0, fail=-0.5, higher_is_better=True, blocking=False,
                  message="correlation of completeness with θE over sufficient cells"),
             Gate(name="completeness_falls_with_psf", value=psf_trend, warn=0.0, fail=0.5, blocking=False,
                  message="correlation of completeness with PSF FWHM over sufficient cells (expected ≤ 0: worse seeing hides arcs)"),
             Gate(name="prior_sensitivity_max_shift", value=_max_sufficient(robust, "prior_shift", table, inj, ("bright", "faint"), cfg),
                  warn=0.2, fail=0.5, blocking=False, message="max |ΔC| per sufficient cell across alternative source priors (r ∓ 0.75 mag)"),
             Gate(name="morphology_bracket_max_shift", value=_max_sufficient(robust, "morphology_shift", table, inj, ("morphology",), cfg),
                  warn=0.2, fail=0.5, blocking=False, message="max |ΔC| per sufficient cell, Sersic ↔ clumpy sources (the morphology bracket)"),
             Gate(name="realism_verdict", value=verdict, forced="pass" if not forced else "fail", blocking=False,
                  message="selection computed on a NO-GO verdict (forced)" if forced else "GO")]
    if closure.get("bins"):
        gates.append(Gate(name="closure_fraction_within_1sigma", value=closure["fraction_within_1sigma"], warn=0.6, fail=0.3,
                          higher_is_better=True, blocking=False, message=f"{len(closure['bins'])} θE bins"))
        tot = closure["total"]
        gates.append(Gate(name="closure_total_pull", value=tot["pull"], lo=-2.0, hi=2.0, soft=abs(tot["pull"]) <= 3.0, blocking=False,
                          message=f"all θE bins: observed {tot['observed']} vs expected {tot['expected']:.1f} ± {tot['sigma']:.1f} "
                                  "(|pull| ≤ 2 pass, ≤ 3 warn)"))
    return Manifest(counts={"injections_scored": len(inj), "cells": len(table), "cells_sufficient": int((~table.insufficient).sum()),
                            "detected_main": int(main.detected.sum())},
                    gates=gates, outputs=["selection_function.fits", "selection_function.parquet", "robustness.parquet", "closure.json",
                                          "heatmaps.png", "marginals.png", "variants.png", "closure.png"],
                    extra={"forced": forced, "operating_threshold": op})


def _corr(x: pd.Series, y: pd.Series) -> float:
    """Pearson correlation over sufficient cells; NaN when undefined (too few cells or a constant axis)."""
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else float("nan")


def _max_sufficient(robust: pd.DataFrame, col: str, table: pd.DataFrame, inj: pd.DataFrame, variants: tuple[str, ...],
                    cfg: SelectionConfig) -> float:
    """Max of a per-cell shift over cells where the main table is sufficient and every variant has ≥ n_min/2."""
    if col not in robust or not robust[col].notna().any():
        return float("nan")
    counts = inj[inj.variant.isin(variants)].groupby(["variant", "cell"]).size().unstack(0).reindex(table.cell).fillna(0)
    n_alt = counts.min(axis=1).to_numpy() if counts.shape[1] == len(variants) else np.zeros(len(table))
    ok = (~table.insufficient.to_numpy()) & (n_alt >= max(1, cfg.n_min // 2))
    return float(robust[col].to_numpy()[ok].max()) if ok.any() else float("nan")


def _robustness(grid: pd.DataFrame, inj: pd.DataFrame, cfg: SelectionConfig, table: pd.DataFrame) -> pd.DataFrame:
    """Per cell: shift under coarser depth binning (adjacent depth cells merged) and under alternative priors."""
    out = table[["cell", "theta_e", "psf_fwhm", "depth", "c_mean"]].copy()
    main = inj[inj.variant == "main"].merge(grid[["cell", "i_theta_e", "i_psf", "i_depth"]], on="cell")
    main["i_depth_coarse"] = main.i_depth // 2
    coarse = main.groupby(["i_theta_e", "i_psf", "i_depth_coarse"]).detected.agg(["sum", "size"])
    g = grid.assign(i_depth_coarse=grid.i_depth // 2).join(coarse, on=["i_theta_e", "i_psf", "i_depth_coarse"])
    post = beta_posterior(g["sum"].fillna(0), g["size"].fillna(0), cfg.prior)
    out["binning_shift"] = np.abs(post["mean"] - table.c_mean.to_numpy())
    shifts = []
    for v in ("bright", "faint"):
        sub = inj[inj.variant == v]
        if sub.empty:
            continue
        t = completeness_table(grid, sub, cfg)
        out[f"c_{v}"] = t.c_mean.to_numpy()
        shifts.append(np.abs(t.c_mean.to_numpy() - table.c_mean.to_numpy()))
    out["prior_shift"] = np.max(shifts, axis=0) if shifts else np.nan
    sub = inj[inj.variant == "morphology"]
    if len(sub):
        t = completeness_table(grid, sub, cfg)
        out["c_morphology"] = t.c_mean.to_numpy()
        out["morphology_shift"] = np.abs(t.c_mean.to_numpy() - table.c_mean.to_numpy())
    return out


def _closure(ctx: RunContext, sf: SelectionFunction, op: float) -> dict:
    """Expected vs observed detections of the synthetic sky's true lenses (test+val positives) per θE bin."""
    truth_p = ctx.config.sky_dir / "truth.parquet"
    scores_p = ctx.run_dir / "evaluate" / "scores.parquet"
    if ctx.config.data.source != "synthetic" or not truth_p.is_file():
        return {"available": False, "reason": "no synthetic truth (real data)"}
    truth = pd.read_parquet(truth_p)
    sc = pd.read_parquet(scores_p)
    t = truth[truth.kind == "lens"][["galaxy_id", "theta_e_arcsec", "psf_fwhm_r", "psfdepth_mag_r", "arc_snr"]]
    lens = sc[sc.label == 1][["galaxy_id", "score"]].merge(t, on="galaxy_id")
    te, ps, dp = sf.axes
    x = np.clip(lens.theta_e_arcsec, te[0], te[-1]), np.clip(lens.psf_fwhm_r, ps[0], ps[-1]), np.clip(lens.psfdepth_mag_r, dp[0], dp[-1])
    p = sf.completeness(*x)
    lens = lens.assign(p=p, detected=lens.score >= op)
    lens = lens[np.isfinite(lens.p)]
    bins = []
    edges = np.linspace(te[0] - 0.25, te[-1] + 0.25, min(6, len(te)) + 1)
    for a, b in zip(edges[:-1], edges[1:]):
        g = lens[(lens.theta_e_arcsec >= a) & (lens.theta_e_arcsec < b)]
        if len(g) == 0:
            continue
        exp, var = float(g.p.sum()), float((g.p * (1 - g.p)).sum())
        obs = int(g.detected.sum())
        pull = (obs - exp) / np.sqrt(var) if var > 0 else float("nan")
        bins.append({"theta_lo": float(a), "theta_hi": float(b), "n": len(g), "expected": exp, "observed": obs, "sigma": float(np.sqrt(var)), "pull": float(pull)})
    pulls = np.array([b["pull"] for b in bins])
    exp_tot, var_tot = sum(b["expected"] for b in bins), sum(b["sigma"] ** 2 for b in bins)
    obs_tot = sum(b["observed"] for b in bins)
    res = {"available": True, "n_lenses": len(lens), "bins": bins,
           "total": {"expected": exp_tot, "observed": obs_tot, "sigma": float(np.sqrt(var_tot)),
                     "pull": float((obs_tot - exp_tot) / np.sqrt(var_tot)) if var_tot > 0 else float("nan")},
           "fraction_within_1sigma": float(np.mean(np.abs(pulls[np.isfinite(pulls)]) <= 1)) if np.isfinite(pulls).any() else float("nan"),
           "note": "true lenses use the sky's own source prior (independent renderer: lenstronomy), the selection function the injection prior"}
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if bins:
        c = [(b["theta_lo"] + b["theta_hi"]) / 2 for b in bins]
        ax.errorbar(c, [b["expected"] for b in bins], yerr=[b["sigma"] for b in bins], fmt="s", label="expected from C(θE, PSF, depth)")
        ax.plot(c, [b["observed"] for b in bins], "o", label="observed detections")
    ax.set(xlabel="true θE (″)", ylabel="lenses detected", title="closure test on the synthetic sky")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(ctx.run_dir / "selection" / "closure.png", dpi=90)
    plt.close(fig)
    return res


def _heatmaps(t: pd.DataFrame, te, ps, dp, out, stamp: str) -> None:
    fig, axes = plt.subplots(2, len(dp), figsize=(4.6 * len(dp), 7.0), squeeze=False)
    fig.suptitle("blank cells: insufficient (fewer than n_min injections or no host)", fontsize=9)
    for j, d in enumerate(dp):
        sub = t[t.depth == d]
        c = np.full((len(ps), len(te)), np.nan)
        w = np.full_like(c, np.nan)
        for r in sub.itertuples():
            if not r.insufficient:
                c[np.searchsorted(ps, r.psf_fwhm), np.searchsorted(te, r.theta_e)] = r.c_mean
                w[np.searchsorted(ps, r.psf_fwhm), np.searchsorted(te, r.theta_e)] = r.c_hi68 - r.c_lo68
        hx = (te[1] - te[0]) / 2 if len(te) > 1 else 0.25
        hy = (ps[1] - ps[0]) / 2 if len(ps) > 1 else 0.1
        ext = [te[0] - hx, te[-1] + hx, ps[0] - hy, ps[-1] + hy]  # cell centres on the grid values
        im = axes[0, j].imshow(c, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis", extent=ext)
        axes[0, j].set(title=f"{stamp}C(θE, PSF), depth {d:g}", ylabel="PSF FWHM r (″)")
        im2 = axes[1, j].imshow(w, origin="lower", aspect="auto", vmin=0, vmax=0.5, cmap="magma", extent=ext)
        axes[1, j].set(title="68% interval width", xlabel="θE (″)", ylabel="PSF FWHM r (″)")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.colorbar(im2, ax=axes[1].tolist(), shrink=0.8)
    fig.savefig(out / "heatmaps.png", dpi=80)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(dp), figsize=(4.2 * len(dp), 3.4), squeeze=False)
    for j, d in enumerate(dp):
        for p in ps:
            s = t[(t.depth == d) & (t.psf_fwhm == p)].sort_values("theta_e")
            ok = ~s.insufficient
            axes[0, j].errorbar(s.theta_e[ok], s.c_mean[ok], yerr=[s.c_mean[ok] - s.c_lo68[ok], s.c_hi68[ok] - s.c_mean[ok]], fmt="o-", label=f"PSF {p:g}″")
        axes[0, j].set(title=f"{stamp}depth {d:g}", xlabel="θE (″)", ylabel="completeness", ylim=(-0.02, 1.02))
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "marginals.png", dpi=80)
    plt.close(fig)


def _variants_plot(inj: pd.DataFrame, te, cfg: SelectionConfig, out, stamp: str) -> None:
    """C(θE) over all PSF/depth cells for the main prior and each variant (prior shifts, morphology bracket)."""
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    for v, sub in inj.groupby("variant", sort=False):
        g = sub.groupby("theta_e").detected.agg(["sum", "size"]).reindex(te).fillna(0)
        post = beta_posterior(g["sum"].to_numpy(), g["size"].to_numpy(), cfg.prior, (cfg.interval,))
        tag = int(round(cfg.interval * 100))
        model = sub.source_model.iloc[0] if "source_model" in sub else ""
        label = {"main": f"main ({model})", "bright": "source r − 0.75", "faint": "source r + 0.75", "morphology": f"{model} sources"}.get(v, v)
        ax.errorbar(te, post["mean"], yerr=[post["mean"] - post[f"lo{tag}"], post[f"hi{tag}"] - post["mean"]], fmt="o-", capsize=2, label=label)
    ax.set(xlabel="θE (″)", ylabel="completeness (all PSF, depth cells)", ylim=(-0.02, 1.02),
           title=f"{stamp}prior sensitivity and morphology bracket")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "variants.png", dpi=80)
    plt.close(fig)
