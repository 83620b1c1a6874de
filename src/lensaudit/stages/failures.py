"""failures: FPR by confuser category × conditions, completeness-collapse cells, and a rule-based taxonomy of
false positives and missed Tier-A lenses, scored against the synthetic sky's truth when it exists."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.audit import failures as failure_rules
from lensaudit.audit.failures import classify_false_positive, classify_missed_lens, missed_accuracy, taxonomy_accuracy, truth_missed_mode
from lensaudit.audit.metrics import rate
from lensaudit.audit.stratified import add_bins
from lensaudit.config import FailuresConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.report.rgb import gallery
from lensaudit.selection.realism import measured_arc
from lensaudit.stamps.store import StampStore
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "failures"
SECTIONS = ("failures",)
DEPENDS = ("evaluate", "selection")


def run(cfg: FailuresConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    op = float(ctx.require("evaluate").extra["operating_threshold"])
    lv = ctx.config.evaluate.interval
    sc = pd.read_parquet(ctx.run_dir / "evaluate" / "scores.parquet")
    st = pd.read_parquet(ctx.run_dir / "cutouts" / "stamps.parquet")[["galaxy_id", "bad_pixel_frac", "star_mask_frac", "core3_r"]]
    smp = pd.read_parquet(ctx.run_dir / "sample" / "sample.parquet")[["galaxy_id", "shape_r", "ellipticity", "g_r"]]
    df = add_bins(sc[sc.split == "test"].merge(st, on="galaxy_id").merge(smp, on="galaxy_id"))
    truth_p = ctx.config.sky_dir / "truth.parquet"
    truth = pd.read_parquet(truth_p) if ctx.config.data.source == "synthetic" and truth_p.is_file() else None
    if truth is not None:
        df = df.merge(truth[truth.objid >= 0][["galaxy_id", "kind", "theta_e_arcsec", "arc_snr"]], on="galaxy_id", how="left")
    neg = df[df.label == 0].assign(category=lambda d: d.n2_category.replace("", "N1"))
    rows = []
    for by in ("psf_bin", "depth_bin", "nobs_z_bin"):
        for (cat, b), g in neg.groupby(["category", by], observed=True):
            r = rate(g.score >= op, lv)
            rows.append({"category": cat, "by": by, "bin": str(b), "n": r["n"], "fp": r["k"], "fpr": r["rate"], "lo": r["lo"], "hi": r["hi"]})
    fpr_tab = pd.DataFrame(rows)
    write_parquet_atomic(fpr_tab, out / "fpr_by_category_conditions.parquet")
    sel = pd.read_parquet(ctx.run_dir / "selection" / "selection_function.parquet")
    collapse = sel[(~sel.insufficient) & (sel.c_mean < cfg.collapse_threshold)]
    write_parquet_atomic(collapse, out / "collapse_cells.parquet")
    fp = neg[neg.score >= op].copy()
    fp["mode"] = classify_false_positive(fp)
    missed = df[(df.label == 1) & (df.tier == "A") & (df.score < op)].copy()
    store = StampStore.open(ctx.run_dir / "cutouts" / "stamps.zarr")
    for d in (fp, missed):
        d["meas_arc_snr"] = measured_arc(store.read(d.row.to_numpy())[0])["snr"] if len(d) else np.zeros(0)
    missed["mode"] = classify_missed_lens(missed)
    acc = taxonomy_accuracy(fp["mode"], fp["kind"]) if truth is not None and len(fp) else {"n": 0, "accuracy": float("nan")}
    acc_missed = missed_accuracy(missed["mode"], truth_missed_mode(missed)) if truth is not None and len(missed) else {"n": 0, "accuracy": float("nan")}
    tax = pd.concat([fp.assign(kind_of_failure="false_positive"), missed.assign(kind_of_failure="missed_tier_A")], ignore_index=True)
    write_parquet_atomic(tax[["galaxy_id", "kind_of_failure", "mode", "score", "psfsize_r", "psfdepth_mag_r", "shape_r", "ellipticity",
                              "g_r", "core3_r", "meas_arc_snr", "bad_pixel_frac", "star_mask_frac"]], out / "taxonomy.parquet")
    counts = tax.groupby(["kind_of_failure", "mode"]).size().rename("n").reset_index()
    galleries = []
    for (kind, mode), g in tax.groupby(["kind_of_failure", "mode"]):
        g = g.nlargest(cfg.gallery_size, "score") if kind == "false_positive" else g.nsmallest(cfg.gallery_size, "score")
        g = g.sort_values("row")
        name = f"gallery_{kind}_{mode.replace(':', '_')}.png"
        gallery(store.read(g.row.to_numpy())[0], [f"{x}\n{s:.2f}" for x, s in zip(g.galaxy_id, g.score)], out / name, title=f"{kind}: {mode}")
        galleries.append(name)
    summary = {"operating_threshold": op, "mode_counts": counts.to_dict(orient="records"), "taxonomy_accuracy": acc,
               "missed_taxonomy_accuracy": acc_missed, "rules": failure_rules.__doc__, "collapse_cells": int(len(collapse)), "galleries": galleries}
    atomic_write_json(out / "failures.json", summary)
    gates = [_accuracy_gate("taxonomy_accuracy_vs_truth", acc, "false positives with confuser truth"),
             _accuracy_gate("missed_taxonomy_accuracy_vs_truth", acc_missed, "missed Tier-A lenses (not masked) with truth θE / arc SNR"),
             Gate(name="collapse_cells", value=int(len(collapse)), forced="pass", blocking=False,
                  message=f"cells with C < {cfg.collapse_threshold}")]
    return Manifest(counts={"false_positives": int(len(fp)), "missed_tier_A": int(len(missed)), "collapse_cells": int(len(collapse))},
                    gates=gates, outputs=["taxonomy.parquet", "failures.json", "fpr_by_category_conditions.parquet", "collapse_cells.parquet", *galleries])


def _accuracy_gate(name: str, acc: dict, what: str, n_min: int = 5) -> Gate:
    """Accuracy of the rules against truth; with fewer than ``n_min`` scored failures the value is reported but the
    gate says insufficient (warn) instead of passing or failing on one or two objects."""
    if acc.get("n", 0) < n_min:
        return Gate(name=name, value=acc.get("accuracy"), forced="warn", blocking=False,
                    message=f"insufficient: {acc.get('n', 0)} {what} to score (< {n_min})")
    return Gate(name=name, value=acc["accuracy"], warn=0.6, fail=0.3, higher_is_better=True, blocking=False,
                message=f"{acc['n']} {what}")
