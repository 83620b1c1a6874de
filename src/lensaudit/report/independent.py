"""The report's tables of the issue-20 audit checks (evaluate/metrics.json): red flags, calibration and score
distributions per stratum, the DESI VAC by grade, recall by discovery method, and Galaxy Zoo (FPR by
morphology, agreement with the Tractor rules). Each table is None where its block is absent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lensaudit.report.html import Cell, Table, _kn

MINUS = "−"


def _iv(r: Mapping[str, Any] | None) -> list[Any] | None:
    return [r.get("lo"), r.get("hi")] if r else None


def red_flags(ev: Mapping[str, Any]) -> Table | None:
    f = ev.get("red_flags")
    if not f:
        return None
    g, s = f["train_val_gap"], f["val_test_shift"]

    def flag(x: bool, measured: bool) -> Cell:
        return Cell("RED FLAG", "fail") if x else Cell("ok" if measured else "not measured")

    at = ev.get("auc_train") or {}
    return Table(
        "Red flags: overfitting (train − val AUC gap above its limit; train AUC on "
        f"{ev.get('n_train_scored', 0)} hash-chosen train stamps) and a val − test shift (the 95% "
        "interval of ΔAUC excludes 0).",
        ["check", "value", "interval (68%; ΔAUC 95%)", "limit", "verdict"],
        [
            ["train AUC", at.get("value"), at.get("ci68"), None, None],
            [f"train {MINUS} val AUC gap", g.get("value"), None, g.get("limit"),
             flag(g["flag"], g["measured"])],
            [f"val {MINUS} test ΔAUC", (ev.get("auc_val_minus_test") or {}).get("value"), s.get("ci95"),
             "95% interval excludes 0", flag(s["flag"], s["measured"])],
        ],
    )  # fmt: skip


def calibration(ev: Mapping[str, Any]) -> Table | None:
    rows = [
        [r["by"], r["bin"], r["n"], r["n_pos"], r["ece"], r["ece_ci"],
         "insufficient" if r["insufficient"] else ""]
        for r in ev.get("calibration_by_stratum") or []
    ]  # fmt: skip
    return (
        Table(
            "ECE per stratum of the test split (equal-mass bins; percentile-bootstrap 68% intervals). The "
            "reliability curve of each stratum is in metrics.json (calibration_by_stratum).",
            ["condition", "bin", "n", "lenses", "ECE", "68% CI", "note"],
            rows,
        )
        if rows
        else None
    )


def distributions(ev: Mapping[str, Any]) -> Table | None:
    rows = [
        [r["by"], r["bin"], r["class"], r["n"], r["q05"], r["q25"], r["q50"], r["q75"], r["q95"]]
        for r in ev.get("score_distributions") or []
    ]
    return (
        Table(
            "Score distributions per stratum of the test split (quantiles of the finder's score).",
            ["condition", "bin", "class", "n", "5%", "25%", "50%", "75%", "95%"],
            rows,
        )
        if rows
        else None
    )


def vac(ev: Mapping[str, Any]) -> Table | None:
    v = ev.get("desi_sl_vac")
    if not v or "by_grade" not in v:
        return None
    rows = [
        [g, r["n_vac"], r["n_scored"], _kn(r["recall_at_op"]), r["recall_at_op"]["rate"],
         _iv(r["recall_at_op"])]
        for g, r in v["by_grade"].items()
    ]  # fmt: skip
    a = v["recall_at_op"]
    rows.append(["all", v["n_vac"], v["n_matched_stamps"], _kn(a), a["rate"], _iv(a)])
    return Table(
        "DESI DR1 strong-lens VAC as an independent set: recall at the operating point by grade (the grade "
        "of the lenscat entry within 1″; 'not in lenscat' = found only by DESI). VAC systems in the train "
        "split are excluded from training within the exclusion radius; only val/test stamps are scored.",
        ["grade", "VAC systems", "scored stamps", "k/n", "recall", "68% interval"],
        rows,
    )


def independence(ev: Mapping[str, Any]) -> Table | None:
    rows = [[r["method"], r["tier_A"], _kn(r), r["rate"], _iv(r)] for r in ev.get("independence") or []]
    return (
        Table(
            "Recall at the operating point by discovery method (the test lenses' catalogue references; a "
            "lens counts under every method it names). Recall on lenses found by CNN searches is partly "
            "circular.",
            ["discovery method", "Tier-A lenses", "k/n", "recall", "68% interval"],
            rows,
        )
        if rows
        else None
    )


def gz_fpr(ev: Mapping[str, Any]) -> Table | None:
    gz = ev.get("galaxy_zoo")
    if not gz:
        return None
    rows = [[m, _kn(r), r["rate"], _iv(r)] for m, r in gz["fpr_by_morphology"].items()]
    return Table(
        f"FPR at the operating point by Galaxy Zoo morphology (test negatives; vote fraction ≥ "
        f"{gz['vote_threshold']}; GZ DECaLS has no ring question).",
        ["GZ morphology", "k/n", "FPR", "68% interval"],
        rows,
    )


def gz_agreement(ev: Mapping[str, Any]) -> Table | None:
    gz = ev.get("galaxy_zoo")
    if not gz:
        return None
    a = gz["agreement"]
    rows = [
        [p["tractor"], p["gz"], p["n_tractor"], p["n_gz"], p["n_both"], p["tractor_in_gz"]["rate"],
         _iv(p["tractor_in_gz"]), p["gz_in_tractor"]["rate"], _iv(p["gz_in_tractor"])]
        for p in a["pairs"]
    ]  # fmt: skip
    return Table(
        f"Tractor-rule N2 categories vs Galaxy Zoo labels ({a['n_matched']} of {a['n_negatives']} val+test "
        "negatives have a GZ match within 1″): the share of a rule's galaxies GZ labels the same, and the "
        "share of GZ's galaxies the rule catches (Jeffreys 68% intervals).",
        ["Tractor rule", "GZ label", "rule", "GZ", "both", "rule ⊂ GZ", "68%", "GZ ⊂ rule", "68%"],
        rows,
    )


def audit_checks(ev: Mapping[str, Any]) -> list[Table]:
    """The tables present in ``ev`` (evaluate/metrics.json), in report order."""
    fns = (red_flags, calibration, vac, independence, gz_fpr, gz_agreement, distributions)
    return [t for t in (f(ev) for f in fns) if t is not None]


def ensemble(em: Mapping[str, Any]) -> Table | None:
    """The ensembles' metrics next to each member's (ensemble/metrics.json)."""
    s = em.get("summary")
    if not s:
        return None
    rows = [_model_row(name, m, em) for name, m in s.items() if not name.startswith("crop:")]
    meta = em.get("meta_learner")
    note = (
        f" Meta-learner (fitted on val): coefficients {meta['coef']}, intercept {meta['intercept']:.3f}."
        if meta
        else ""
    )
    return Table(
        "Ensemble vs members, audited alike on the same val/test stamps (members trained on the same data "
        "with the same seeds). Tier-A recall at the operating point of each model (fixed FPR on its own test "
        "negatives)." + note,
        MODEL_HEAD,
        rows,
    )  # fmt: skip


MODEL_HEAD = ["model", "test AUC", "68% CI", "val AUC", "Tier A k/n", "Tier A recall", "68% interval",
              "TPR@10FP", "ECE", "highest FPR category"]  # fmt: skip


def crop_ablation(em: Mapping[str, Any]) -> Table | None:
    """The crop ablation: the train stage's finder next to the same architecture retrained at other crops."""
    s = em.get("summary") or {}
    crops = {k: m for k, m in s.items() if k.startswith("crop:")}
    base = s.get(f"member:{em.get('train_arch')}")
    if not crops or base is None:
        return None
    rows = [_model_row(f"{em['train_arch']} crop {em.get('train_crop_pix')} px (train stage)", base, em)]
    rows += [_model_row(f"{em['train_arch']} crop {k[5:]} px", m, em) for k, m in crops.items()]
    return Table(
        "Optional experiment: centre-crop ablation (the design's 64 vs 101 px), same data, seeds and "
        "training config, audited alike.",
        MODEL_HEAD,
        rows,
    )


def _model_row(name: str, m: Mapping[str, Any], em: Mapping[str, Any]) -> list[Any]:
    """One model's row of the ensemble and crop tables (Tier-A recall at the operating point)."""
    auc = m.get("auc_test") or {}
    rec = m.get("recall_tier_A") or {}
    op_rec = rec.get(em.get("operating_point", "")) or next(iter(rec.values()), None)
    fpr = m.get("fpr_by_category") or {}
    worst = max(fpr.items(), key=lambda kv: kv[1].get("rate") or 0.0) if fpr else None
    return [
        name, auc.get("value"), auc.get("ci68"), (m.get("auc_val") or {}).get("value"),
        _kn(op_rec), (op_rec or {}).get("rate"), _iv(op_rec), m.get("tpr10"), m.get("ece"),
        f"{worst[0]}: {worst[1].get('rate'):.3f}" if worst else None,
    ]  # fmt: skip


def mining(mm: Mapping[str, Any]) -> list[Table]:
    """FPR per N2 category and Tier-A recall per mining round (mine/metrics.json)."""
    rounds = mm.get("rounds") or []
    if not rounds:
        return []
    cats = sorted({c for r in rounds for c in (r.get("fpr_by_category") or {})})
    head = (
        ["N2 category"]
        + [f"round {r['round']} FPR" for r in rounds]
        + [f"round {r['round']} 68%" for r in rounds]
    )
    rows = []
    for c in cats:
        f = [(r.get("fpr_by_category") or {}).get(c) or {} for r in rounds]
        rows.append([c] + [x.get("rate") for x in f] + [_iv(x) if x else None for x in f])
    rec = [r.get("recall_tier_A") or {} for r in rounds]
    rows.append(["Tier-A recall"] + [x.get("rate") for x in rec] + [_iv(x) for x in rec])
    auc = [r.get("auc_test") or {} for r in rounds]
    rows.append(["test AUC"] + [x.get("value") for x in auc] + [x.get("ci68") for x in auc])
    mined = ", ".join(
        f"round {m['round']}: {m['mined']} mined, {m['dropped_as_lens']} dropped as lenses"
        for m in mm.get("mining") or []
    )
    return [
        Table(
            "Hard-negative mining: FPR per N2 category (test negatives) and Tier-A recall at the operating "
            "point (fixed FPR on each round's test negatives), round 0 = the train stage's finder; each "
            f"later round retrains with the TRAIN-split negatives its predecessor scored highest ({mined}).",
            head,
            rows,
        )
    ]  # fmt: skip


def extra_tables(em: Mapping[str, Any], mm: Mapping[str, Any]) -> list[Table]:
    """The ensemble, crop-ablation and mining tables present."""
    tabs = [ensemble(em), crop_ablation(em)]
    return [t for t in tabs if t is not None] + mining(mm)
