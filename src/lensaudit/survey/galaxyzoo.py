"""Galaxy Zoo DECaLS volunteer catalogues (``gz_decals_volunteers_5`` and friends; CSV or parquet), in the
real column layout of ``shared/docs/dr10-formats.md`` §6: key ``iauname``, ``ra``, ``dec``, and per question
``{question}_{answer}`` (count), ``{question}_{answer}_fraction`` and ``{question}_total-votes``.

:func:`read_gz_decals` returns the contaminant vote fractions (spiral, merger, edge-on; ring only where the
file carries galaxy-datasets' 0/1 ``ring`` label: GZ DECaLS itself has no ring question) and
:func:`morphology` one label per galaxy from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.errors import InputError

#: the columns the reader needs (formats §6: the contaminant columns)
REQUIRED = [
    "iauname",
    "ra",
    "dec",
    "smooth-or-featured_featured-or-disk_fraction",
    "has-spiral-arms_yes_fraction",
    "merging_merger_fraction",
    "merging_major-disturbance_fraction",
    "disk-edge-on_yes_fraction",
    "smooth-or-featured_total-votes",
]
#: the morphology labels, in the order :func:`morphology` tests them (the first that holds wins)
MORPHOLOGIES = ("merger", "edge_on", "ring", "spiral", "smooth_or_other")


def read_gz_decals(path: str | Path) -> pd.DataFrame:
    """The vote fractions of a GZ DECaLS volunteer catalogue: ``iauname, ra, dec, featured, spiral, merger,
    edge_on, ring, total_votes`` (``merger`` = merger + major-disturbance fractions; ``ring`` NaN without a
    ``ring`` column). Rows without finite coordinates are dropped. InputError (one sentence) for a missing
    file, an unreadable one or missing columns."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"Galaxy Zoo catalogue not found: {p}")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"Galaxy Zoo catalogue {p} is not readable: {exc}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"Galaxy Zoo catalogue {p} lacks columns {missing} (GZ DECaLS layout)")
    num = lambda c: pd.to_numeric(df[c], errors="coerce").to_numpy(float)  # noqa: E731
    out = pd.DataFrame(
        {
            "iauname": df["iauname"].astype(str).to_numpy(),
            "ra": num("ra"),
            "dec": num("dec"),
            "featured": num("smooth-or-featured_featured-or-disk_fraction"),
            "spiral": num("has-spiral-arms_yes_fraction"),
            "merger": np.nan_to_num(num("merging_merger_fraction"))
            + np.nan_to_num(num("merging_major-disturbance_fraction")),
            "edge_on": num("disk-edge-on_yes_fraction"),
            "ring": num("ring") if "ring" in df.columns else np.full(len(df), np.nan),
            "total_votes": num("smooth-or-featured_total-votes"),
        }
    )
    ok = np.isfinite(out.ra) & np.isfinite(out.dec) & (np.abs(out.dec) <= 90)
    return out[ok].reset_index(drop=True)


def morphology(gz: pd.DataFrame, threshold: float) -> pd.Series:
    """One label per galaxy: the first of merger (merger + major-disturbance fraction ≥ ``threshold``),
    edge_on (featured and edge-on fractions ≥ ``threshold``), ring (``ring`` = 1), spiral (featured and
    spiral-arms fractions ≥ ``threshold``), else ``smooth_or_other``. The edge-on and spiral answers are
    conditional on "featured", so both fractions must pass.

    >>> gz = pd.DataFrame({"featured": [0.9, 0.9, 0.2, 0.9], "spiral": [0.8, 0.1, 0.9, 0.2],
    ...                    "merger": [0.0, 0.0, 0.0, 0.7], "edge_on": [0.1, 0.9, 0.0, 0.0],
    ...                    "ring": [np.nan] * 4})
    >>> morphology(gz, 0.5).tolist()
    ['spiral', 'edge_on', 'smooth_or_other', 'merger']
    """
    f = gz.featured.fillna(0).to_numpy() >= threshold
    rules = {
        "merger": gz.merger.fillna(0).to_numpy() >= threshold,
        "edge_on": f & (gz.edge_on.fillna(0).to_numpy() >= threshold),
        "ring": gz.ring.fillna(0).to_numpy() >= 0.5,
        "spiral": f & (gz.spiral.fillna(0).to_numpy() >= threshold),
    }
    lab = np.full(len(gz), "smooth_or_other", dtype=object)
    for name in reversed(list(rules)):
        lab[rules[name]] = name
    return pd.Series(lab.astype(str), index=gz.index, name="gz_morphology")
