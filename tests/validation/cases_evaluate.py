"""Passing and failing cases of the evaluate gates, from small scores tables and cutouts indexes on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.catalog.n2_rules import RULE_ORDER
from lensaudit.validation import Inputs

N_NEG_PER_CATEGORY = 12
N_POS = 40
OP = "evaluate.operating_point=score=0.5"


def _scores(root: Path, pos: tuple[float, float], neg: tuple[float, float], hot: str = "") -> Inputs:
    """A test split of ``N_POS`` Tier-A lenses scored uniformly in ``pos`` and negatives (N1 and every N2
    category) scored in ``neg``; the negatives of category ``hot`` score 0.9 (above the operating point)."""
    rng = np.random.default_rng(1)
    cats = [""] * 30 + [c for c in RULE_ORDER for _ in range(N_NEG_PER_CATEGORY)]
    label = np.r_[np.ones(N_POS, int), np.zeros(len(cats), int)]
    score = np.r_[rng.uniform(*pos, N_POS), rng.uniform(*neg, len(cats))]
    n2 = np.array([""] * N_POS + cats)
    score[n2 == hot] = 0.9 if hot else score[n2 == hot]
    df = pd.DataFrame(
        {
            "row": np.arange(len(label)),
            "galaxy_id": [f"g{i}" for i in range(len(label))],
            "label": label,
            "tier": np.where(label == 1, "A", ""),
            "n2_category": n2,
            "split": "test",
            "score": score,
        }
    )
    return Run(root, OP, "evaluate.n_bootstrap=50").table("evaluate", "scores", df).inputs()


def good(root: Path) -> Inputs:
    """A calibrated finder that separates the classes: negatives near 0, lenses near 1."""
    return _scores(root, pos=(0.95, 1.0), neg=(0.0, 0.05))


def inverted(root: Path) -> Inputs:
    return _scores(root, pos=(0.0, 0.05), neg=(0.95, 1.0))


def blind_to_lenses(root: Path) -> Inputs:
    """The lenses rank above every negative, but all score below the operating point."""
    return _scores(root, pos=(0.3, 0.4), neg=(0.0, 0.05))


def miscalibrated(root: Path) -> Inputs:
    """Perfect ranking, scores bunched at one half: far from calibrated."""
    return _scores(root, pos=(0.5, 0.55), neg=(0.45, 0.5))


def ring_contaminated(root: Path) -> Inputs:
    return _scores(root, pos=(0.95, 1.0), neg=(0.0, 0.05), hot="ring_proxy")


# -- shortcut cases: the scored stamps and their cutouts quality columns ---------------------------------
def _quality(root: Path, boost: dict[str, float] | None = None, flat_annulus: bool = False) -> Inputs:
    """200 scored stamps (half lenses) and their quality columns; positives and negatives share the same
    values (a permutation) except the columns in ``boost`` (multiplied for positives) and the annulus, which
    is brighter for the positives unless ``flat_annulus`` (then constant: no arc light anywhere)."""
    rng = np.random.default_rng(2)
    n = 100
    label = np.r_[np.ones(n, int), np.zeros(n, int)]
    ids = [f"g{i}" for i in range(2 * n)]
    idx = pd.DataFrame({"galaxy_id": ids, "row": np.arange(2 * n), "quality_ok": True})

    def matched(scale: float) -> np.ndarray:
        x = rng.lognormal(np.log(scale), 0.5, n)
        return np.r_[x, rng.permutation(x)]

    for b in "grz":
        for r in (2, 3, 10):
            idx[f"core{r}_{b}"] = matched(0.02 * r)
        idx[f"mad_{b}"] = matched(0.002)
        idx[f"annulus_{b}"] = 0.002 if flat_annulus else matched(0.002) + 0.004 * label
    for col, f in (boost or {}).items():
        idx[col] = idx[col] * np.where(label == 1, f, 1.0)
    scores = pd.DataFrame({"row": idx.row, "galaxy_id": ids, "label": label, "split": "test", "score": 0.5})
    return Run(root).table("evaluate", "scores", scores).table("cutouts", "index", idx).inputs()


def matched_sample(root: Path) -> Inputs:
    return _quality(root)


def _val_test(root: Path, test_neg: tuple[float, float]) -> Inputs:
    """Val and test splits of 60 lenses and 60 negatives each: val separates the classes with overlap
    (AUC ≈ 0.9); the test lenses score as val's, the test negatives in ``test_neg`` (val's draw when
    equal)."""
    rows = []
    for split, neg in (("val", (0.0, 0.6)), ("test", test_neg)):
        rng = np.random.default_rng(4)
        score = np.r_[rng.uniform(0.4, 1.0, 60), rng.uniform(*neg, 60)]
        rows.append(
            pd.DataFrame(
                {"label": np.r_[np.ones(60, int), np.zeros(60, int)], "split": split, "score": score}
            )
        )
    df = pd.concat(rows, ignore_index=True)
    df["row"], df["galaxy_id"] = np.arange(len(df)), [f"g{i}" for i in range(len(df))]
    df["tier"], df["n2_category"] = np.where(df.label == 1, "A", ""), ""
    return Run(root, OP, "evaluate.n_bootstrap=100").table("evaluate", "scores", df).inputs()


CASES = {
    "val_test_auc_shift": (
        lambda root: _val_test(root, (0.0, 0.6)),
        lambda root: _val_test(root, (0.3, 1.0)),  # the test negatives overlap the lenses: test AUC ≪ val AUC
    ),
    "test_auc": (good, inverted),
    "tier_A_recall_at_op": (good, blind_to_lenses),
    "ece": (good, miscalibrated),
    "fpr_*": (good, ring_contaminated),
    "core_only_auc": (matched_sample, lambda root: _quality(root, {"core10_r": 3.0})),
    "inner_core_only_auc": (
        matched_sample,
        lambda root: _quality(root, {"core2_r": 3.0, "core3_r": 3.0}),
    ),
    "core_colour_auc": (
        matched_sample,
        lambda root: _quality(root, {"core10_g": 0.2, "core10_z": 5.0}),
    ),
    "annulus_only_auc": (matched_sample, lambda root: _quality(root, flat_annulus=True)),
    "core_brightness_ratio": (matched_sample, lambda root: _quality(root, {"core3_r": 2.0})),
    "noise_mad_ratio": (matched_sample, lambda root: _quality(root, {"mad_r": 2.0})),
}
