"""Galaxy Zoo as an independent contaminant label (issue 20): the vote-fraction morphologies crossmatched to
the scored negatives, their agreement with the Tractor-rule N2 categories, and the false-positive rate by
Galaxy Zoo morphology at the operating point.

The Tractor rules (:mod:`lensaudit.catalog.n2_rules`) were validated only against the sky's own rules; Galaxy
Zoo labels come from (simulated) volunteers looking at the galaxy, so their agreement is an outside check.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit.metrics import rate
from lensaudit.catalog.n2_rules import GZ_EQUIVALENT
from lensaudit.catalog.spatial import nearest_matches
from lensaudit.survey.galaxyzoo import MORPHOLOGIES, morphology

#: crossmatch radius Galaxy Zoo ↔ Tractor (″): GZ positions are the DECaLS source positions
MATCH_RADIUS_ARCSEC = 1.0


def crossmatch(df: pd.DataFrame, gz: pd.DataFrame, threshold: float) -> pd.Series:
    """The Galaxy Zoo morphology of each row of ``df`` (ra, dec), '' where no GZ galaxy lies within
    :data:`MATCH_RADIUS_ARCSEC` (nearest match)."""
    lab = np.full(len(df), "", dtype=object)
    m = nearest_matches(df.ra.to_numpy(), df.dec.to_numpy(), gz, MATCH_RADIUS_ARCSEC)
    morph = morphology(gz, threshold).to_numpy()
    lab[m.pos_index.to_numpy(int)] = morph[m.row.to_numpy(int)]
    return pd.Series(lab.astype(str), index=df.index, name="gz_morphology")


def agreement(neg: pd.DataFrame, level: float) -> dict[str, Any]:
    """Agreement of the Tractor-rule categories (``n2_category``, '' = N1) with the GZ morphologies
    (``gz_morphology``) on the negatives that have a GZ label: the cross-table (Tractor category → GZ
    morphology → count) and, per Tractor category with a GZ counterpart, the share of its galaxies GZ labels
    the same (``tractor_in_gz``) and the share of GZ's galaxies of that morphology the rule catches
    (``gz_in_tractor``), with Jeffreys intervals."""
    m = neg[neg.gz_morphology != ""]
    cat = m.n2_category.replace("", "N1")
    table = pd.crosstab(cat, m.gz_morphology)
    rows = []
    for tractor, gzm in GZ_EQUIVALENT.items():
        t, g = (cat == tractor).to_numpy(), (m.gz_morphology == gzm).to_numpy()
        rows.append(
            {
                "tractor": tractor,
                "gz": gzm,
                "n_tractor": int(t.sum()),
                "n_gz": int(g.sum()),
                "n_both": int((t & g).sum()),
                "tractor_in_gz": rate(g[t], level),
                "gz_in_tractor": rate(t[g], level),
            }
        )
    return {
        "n_matched": len(m),
        "n_negatives": len(neg),
        "crosstab": {str(r): {str(c): int(v) for c, v in table.loc[r].items()} for r in table.index},
        "pairs": rows,
    }


def fpr_by_morphology(neg: pd.DataFrame, threshold: float, level: float) -> dict[str, dict]:
    """FPR at ``threshold`` of the negatives per GZ morphology (those without a GZ match under
    ``not in Galaxy Zoo``), Jeffreys intervals."""
    out = {}
    for m in [*MORPHOLOGIES, ""]:
        g = neg[neg.gz_morphology == m]
        if len(g):
            out[m or "not in Galaxy Zoo"] = rate(g.score.to_numpy() >= threshold, level)
    return out


def galaxy_zoo_audit(
    scored: pd.DataFrame, gz: pd.DataFrame, op: float, vote_threshold: float, level: float
) -> dict[str, Any]:
    """The Galaxy Zoo block of metrics.json from the scored val+test table: agreement on the val+test
    negatives, FPR by morphology on the test negatives."""
    neg = scored[scored.label == 0]
    neg = neg.assign(gz_morphology=crossmatch(neg, gz, vote_threshold))
    test = neg[neg.split == "test"]
    return {
        "vote_threshold": vote_threshold,
        "n_catalogue": len(gz),
        "agreement": agreement(neg, level),
        "fpr_by_morphology": fpr_by_morphology(test, op, level),
    }
