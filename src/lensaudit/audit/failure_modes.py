"""The failure-mode audit of the test split at the operating threshold: FPR by confuser category × observing
conditions, the completeness-collapse cells of the selection function, and the rule-based taxonomy of false
positives and missed Tier-A lenses (rules in :mod:`lensaudit.audit.failures`), scored against the synthetic
sky's truth when it is given. Its gates are declared in :mod:`lensaudit.validation.gates.failures`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit import failures as failure_rules
from lensaudit.audit.failures import (
    classify_false_positive,
    classify_missed_lens,
    missed_accuracy,
    taxonomy_accuracy,
    truth_missed_mode,
)
from lensaudit.audit.metrics import rate
from lensaudit.audit.stratified import add_bins
from lensaudit.selection.realism import measured_arc

#: the columns of ``failures/taxonomy.parquet``, in order
TAXONOMY_COLUMNS = [
    "galaxy_id",
    "kind_of_failure",
    "mode",
    "score",
    "psfsize_r",
    "psfdepth_mag_r",
    "shape_r",
    "ellipticity",
    "g_r",
    "core3_r",
    "meas_arc_snr",
    "bad_pixel_frac",
    "star_mask_frac",
]
#: conditions the FPR table is grouped by (with the confuser category), in order
CONDITIONS = ("psf_bin", "depth_bin", "nobs_z_bin")
_NO_ACCURACY = {"n": 0, "accuracy": float("nan")}


def _table(x: str | Path | pd.DataFrame) -> pd.DataFrame:
    return x if isinstance(x, pd.DataFrame) else pd.read_parquet(x)


@dataclass
class FailureAudit:
    """What :func:`failure_audit` found. ``taxonomy`` holds every failure (all columns; the artifact keeps
    :data:`TAXONOMY_COLUMNS`); ``galleries`` are (file name, stamps, title) per (kind, mode)."""

    op: float
    fpr_table: pd.DataFrame
    collapse: pd.DataFrame
    taxonomy: pd.DataFrame
    accuracy: dict[str, Any]
    missed_accuracy: dict[str, Any]
    galleries: list[tuple[str, pd.DataFrame, str]]
    collapse_threshold: float

    @property
    def counts(self) -> dict[str, int]:
        kinds = self.taxonomy.kind_of_failure
        return {
            "false_positives": int((kinds == "false_positive").sum()),
            "missed_tier_A": int((kinds == "missed_tier_A").sum()),
            "collapse_cells": int(len(self.collapse)),
        }

    def summary(self, galleries: list[str]) -> dict[str, Any]:
        """failures.json: mode counts, the rules' accuracies against truth, the rules' text, the number of
        collapse cells and the gallery file names."""
        counts = self.taxonomy.groupby(["kind_of_failure", "mode"]).size().rename("n").reset_index()
        return {
            "operating_threshold": self.op,
            "mode_counts": counts.to_dict(orient="records"),
            "taxonomy_accuracy": self.accuracy,
            "missed_taxonomy_accuracy": self.missed_accuracy,
            "rules": failure_rules.__doc__,
            "collapse_cells": int(len(self.collapse)),
            "galleries": galleries,
        }


def fpr_by_category_conditions(neg: pd.DataFrame, op: float, level: float) -> pd.DataFrame:
    """FPR (score ≥ ``op``) of test negatives per (confuser category, conditions bin), with Jeffreys
    intervals at ``level``."""
    rows = []
    for by in CONDITIONS:
        for (cat, b), g in neg.groupby(["category", by], observed=True):
            r = rate(g.score >= op, level)
            rows.append(
                {
                    "category": cat,
                    "by": by,
                    "bin": str(b),
                    "n": r["n"],
                    "fp": r["k"],
                    "fpr": r["rate"],
                    "lo": r["lo"],
                    "hi": r["hi"],
                }
            )
    return pd.DataFrame(rows)


def failure_audit(
    scores: str | Path | pd.DataFrame,
    stamps: str | Path | pd.DataFrame,
    sample: str | Path | pd.DataFrame,
    selection: str | Path | pd.DataFrame,
    store: Any,
    op: float,
    level: float,
    collapse_threshold: float,
    gallery_size: int,
    truth: str | Path | pd.DataFrame | None = None,
) -> FailureAudit:
    """The failure audit of the test split of ``scores`` (evaluate's scores.parquet) at the operating
    threshold ``op``, joined with the cutouts index ``stamps`` (masking, core flux) and the ``sample`` (shape,
    colour).

    ``selection`` is the selection-function table (cells with enough injections and completeness below
    ``collapse_threshold`` collapse); ``store`` gives the stamps for the measured arc SNR; ``truth`` (the
    synthetic sky's truth table, or None) only scores the rules. ``level``: interval of the FPR table.
    """
    sc = _table(scores)
    st = _table(stamps)[["galaxy_id", "bad_pixel_frac", "star_mask_frac", "core3_r"]]
    smp = _table(sample)[["galaxy_id", "shape_r", "ellipticity", "g_r"]]
    df = add_bins(sc[sc.split == "test"].merge(st, on="galaxy_id").merge(smp, on="galaxy_id"))
    tr = None if truth is None else truth_columns(_table(truth))
    if tr is not None:
        df = df.merge(tr, on="galaxy_id", how="left")
    neg = df[df.label == 0].assign(category=lambda d: d.n2_category.replace("", "N1"))
    fpr_tab = fpr_by_category_conditions(neg, op, level)
    sel = _table(selection)
    collapse = collapse_cells(sel, collapse_threshold)
    fp = neg[neg.score >= op].copy()
    fp["mode"] = classify_false_positive(fp)
    missed = df[(df.label == 1) & (df.tier == "A") & (df.score < op)].copy()
    for d in (fp, missed):
        d["meas_arc_snr"] = measured_arc(store.read(d.row.to_numpy())[0])["snr"] if len(d) else np.zeros(0)
    missed["mode"] = classify_missed_lens(missed)
    acc = taxonomy_accuracy(fp["mode"], fp["kind"]) if tr is not None and len(fp) else dict(_NO_ACCURACY)
    acc_missed = (
        missed_accuracy(missed["mode"], truth_missed_mode(missed))
        if tr is not None and len(missed)
        else dict(_NO_ACCURACY)
    )
    tax = pd.concat(
        [fp.assign(kind_of_failure="false_positive"), missed.assign(kind_of_failure="missed_tier_A")],
        ignore_index=True,
    )
    return FailureAudit(
        op=op,
        fpr_table=fpr_tab,
        collapse=collapse,
        taxonomy=tax,
        accuracy=acc,
        missed_accuracy=acc_missed,
        galleries=gallery_picks(tax, gallery_size),
        collapse_threshold=collapse_threshold,
    )


def gallery_picks(tax: pd.DataFrame, size: int) -> list[tuple[str, pd.DataFrame, str]]:
    """One gallery per (kind of failure, mode): the ``size`` highest-scoring false positives or lowest-scoring
    missed lenses, as (file name, stamps, title)."""
    picks = []
    for (kind, mode), g in tax.groupby(["kind_of_failure", "mode"]):
        g = g.nlargest(size, "score") if kind == "false_positive" else g.nsmallest(size, "score")
        picks.append((f"gallery_{kind}_{mode.replace(':', '_')}.png", g, f"{kind}: {mode}"))
    return picks


def truth_columns(truth: pd.DataFrame) -> pd.DataFrame:
    """The synthetic sky's truth rows of catalogued objects, with the columns that score the rules."""
    return truth[truth.objid >= 0][["galaxy_id", "kind", "theta_e_arcsec", "arc_snr"]]


def collapse_cells(selection: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Cells of the selection-function table with enough injections and completeness below ``threshold``."""
    return selection[(~selection.insufficient) & (selection.c_mean < threshold)]


def rule_accuracies(taxonomy: pd.DataFrame, truth: pd.DataFrame | None) -> tuple[dict, dict]:
    """The rules' accuracies against the synthetic sky's ``truth`` (None: unscored), recomputed from the
    taxonomy artifact (:data:`TAXONOMY_COLUMNS`): (false positives, missed Tier-A lenses), as in
    :func:`failure_audit`."""
    if truth is None:
        return dict(_NO_ACCURACY), dict(_NO_ACCURACY)
    tax = taxonomy.merge(truth_columns(truth), on="galaxy_id", how="left")
    fp = tax[tax.kind_of_failure == "false_positive"].reset_index(drop=True)
    missed = tax[tax.kind_of_failure == "missed_tier_A"].reset_index(drop=True)
    acc = taxonomy_accuracy(fp["mode"], fp["kind"]) if len(fp) else dict(_NO_ACCURACY)
    acc_missed = (
        missed_accuracy(missed["mode"], truth_missed_mode(missed)) if len(missed) else dict(_NO_ACCURACY)
    )
    return acc, acc_missed
