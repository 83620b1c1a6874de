"""Pass/fail cases of the positives gates: a small lenscat-format CSV run through the stage's own reading,
selection, duplicate merging and location (positives.parquet, malformed_rows.txt); each failing case edits
the CSV or the written table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.survey import positives as P
from lensaudit.survey.lenses import merge_duplicates, select_positives
from lensaudit.validation import Inputs

N = 40


def _csv(root: Path, n_bad: int = 0, n_dup: int = 0, grading: str = "confident", dec: float = 2.0) -> Path:
    """``N`` lenses 36″ apart (half Tier A unless ``grading`` says otherwise), ``n_dup`` of them listed twice
    (0.2″ off) and ``n_bad`` rows with an unreadable RA."""
    ra = 150.0 + 0.01 * np.arange(N)
    rows = pd.DataFrame(
        {
            "name": [f"L{i:03d}" for i in range(N)],
            "RA [deg]": [f"{x:.6f}" for x in ra],
            "DEC [deg]": f"{dec:.6f}",
            "zlens": "0.5",
            "type": "galaxy",
            "grading": [grading if grading != "confident" or i % 2 else "probable" for i in range(N)],
            "ref": "Huang et al. 2021",
        }
    )
    dup = rows.iloc[:n_dup].assign(name=lambda d: d.name + "b", **{"DEC [deg]": f"{dec + 0.2 / 3600:.6f}"})
    bad = rows.iloc[:n_bad].assign(name=lambda d: d.name + "x", **{"RA [deg]": "n/a"})
    p = root / "lenscat.csv"
    root.mkdir(parents=True, exist_ok=True)
    pd.concat([rows, dup, bad], ignore_index=True).to_csv(p, index=False)
    return p


def make(root: Path, edit=None, **csv) -> Inputs:
    """The positives stage's artifacts from a CSV (``csv``: see :func:`_csv`); ``edit`` changes the table."""
    run = Run(root, f"positives.lenscat={_csv(root, **csv)}")
    cfg = run.config.positives
    allrows, problems = P.read(run.config)
    sel = select_positives(
        allrows, cfg.ref_patterns, list(cfg.lens_types), {"A": cfg.tier_a_weight, "B": cfg.tier_b_weight}
    )
    merged, _ = merge_duplicates(sel, cfg.duplicate_radius_arcsec)
    merged = P.locate(merged, cfg.footprint_dec_max)
    run.table("positives", "positives", edit(merged) if edit else merged)
    run.text("positives", "malformed_rows", "\n".join(problems) + ("\n" if problems else ""))
    return run.inputs()


def _set(col: str, value, rows=slice(0, 1)):
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[df.index[rows], col] = value
        return df

    return edit


CASES = {
    "n_tier_A": (lambda p: make(p), lambda p: make(p, grading="probable")),
    "n_positives_in_footprint": (lambda p: make(p), lambda p: make(p, dec=40.0)),
    "no_nan_coordinates": (lambda p: make(p), lambda p: make(p, edit=_set("dec", np.nan))),
    "ra_dec_in_range": (lambda p: make(p), lambda p: make(p, edit=_set("ra", 361.0))),
    "unique_positive_id": (
        lambda p: make(p),
        lambda p: make(p, edit=lambda d: pd.concat([d, d.iloc[:1]], ignore_index=True)),
    ),
    # no malformed row passes (one would warn); 3 of 43 (7%) fail
    "malformed_rows": (lambda p: make(p), lambda p: make(p, n_bad=3)),
    # 2 of 42 entries merged (5%) pass; 6 of 46 (13%) fail
    "duplicates_merged": (lambda p: make(p, n_dup=2), lambda p: make(p, n_dup=6)),
}
