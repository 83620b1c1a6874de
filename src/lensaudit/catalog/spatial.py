"""HEALPix cells, the spatial split, and the known-lens exclusion (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from lensaudit.survey.lenses import chord, unit_vectors
from lensaudit.utils import hash_unit_interval

SPLITS = ("train", "val", "test")


def healpix_nest(ra, dec, nside: int) -> np.ndarray:
    import healpy as hp

    return hp.ang2pix(nside, np.asarray(ra, float), np.asarray(dec, float), nest=True, lonlat=True).astype(
        np.int64
    )


def healpix_columns(ra, dec, nside: int, nside_analysis: int) -> dict[str, np.ndarray]:
    """The HEALPix columns of a table (nested): ``healpix`` at the split nside, ``healpix_analysis`` at the
    analysis nside, and the two nsides (``healpix_nside``, ``healpix_analysis_nside``) as integer columns."""
    n = len(np.asarray(ra))
    return {
        "healpix": healpix_nest(ra, dec, nside),
        "healpix_nside": np.full(n, nside, np.int64),
        "healpix_analysis": healpix_nest(ra, dec, nside_analysis),
        "healpix_analysis_nside": np.full(n, nside_analysis, np.int64),
    }


def cells_in_several_splits(ra, dec, split, nside: int) -> int:
    """How many HEALPix cells (nested, ``nside``) recomputed from RA/Dec hold rows of more than one split: 0
    when the split is spatially disjoint.

    >>> cells_in_several_splits([10.0, 10.0001, 50.0], [0.0, 0.0, 0.0], ["train", "test", "test"], 128)
    1
    """
    if len(np.asarray(ra)) == 0:
        return 0
    cells = pd.Series(np.asarray(split)).groupby(healpix_nest(ra, dec, nside)).nunique()
    return int((cells > 1).sum())


def assign_split(cells, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Split of each HEALPix cell from a deterministic hash of (cell, seed): one split per cell, always.

    >>> s = assign_split(np.arange(20000), {"train": .7, "val": .15, "test": .15}, 1)
    >>> round(float((s == "train").mean()), 1)
    0.7
    """
    u = hash_unit_interval(np.asarray(cells), seed)
    edges = np.cumsum([fractions[s] for s in SPLITS])
    idx = np.searchsorted(edges, u, side="right")
    return np.array(SPLITS, dtype=object)[np.clip(idx, 0, 2)].astype(str)


class ExclusionIndex:
    """A cKDTree on unit vectors of known lenses; ``near(ra, dec)`` flags rows within the radius."""

    def __init__(self, ra, dec, radius_arcsec: float):
        from scipy.spatial import cKDTree

        self.radius_arcsec = radius_arcsec
        self.n = len(ra)
        self.tree = cKDTree(unit_vectors(ra, dec)) if len(ra) else None

    def near(self, ra, dec) -> np.ndarray:
        if self.tree is None or len(ra) == 0:
            return np.zeros(len(ra), bool)
        d, _ = self.tree.query(unit_vectors(ra, dec), k=1, distance_upper_bound=chord(self.radius_arcsec))
        return np.isfinite(d)


def nearest_matches(pos_ra, pos_dec, rows: pd.DataFrame, radius_arcsec: float) -> pd.DataFrame:
    """For each positive (index i), the nearest row of ``rows`` within ``radius_arcsec``: i, row index, sep
    (″)."""
    from scipy.spatial import cKDTree

    if len(rows) == 0 or len(pos_ra) == 0:
        return pd.DataFrame({"pos_index": [], "row": [], "sep_arcsec": []})
    tree = cKDTree(unit_vectors(rows.ra, rows.dec))
    d, j = tree.query(unit_vectors(pos_ra, pos_dec), k=1, distance_upper_bound=chord(radius_arcsec))
    ok = np.isfinite(d)
    sep = 2 * np.degrees(np.arcsin(np.clip(d[ok] / 2, 0, 1))) * 3600
    return pd.DataFrame({"pos_index": np.flatnonzero(ok), "row": j[ok], "sep_arcsec": sep})
