"""Source-size re-weighting: the selection function for a population whose sources differ in size.

The 4-D table C(θE, PSF, depth, m_src) is conditioned on the source's brightness, but it still averages over
the injected sources' half-light radii (``inject.src_reff_arcsec_range``, uniform): at fixed magnitude a
compact source has a brighter surface and is found more often (on the demo's injections, 0.31 against 0.12
of the sources of r 25–26 with half-light radius 0.1–0.2″ and 0.4–0.5″). A population whose sources are
smaller or larger than that prior's average gets a biased C, just as a magnitude prior would bias the 3-D
table. Re-weighting, not re-injecting: each injection gets the weight w = q(r)/p(r) that makes the injected
half-light radii r follow the population's distribution q (binned in :data:`SIZE_BINS` equal bins of the
prior's range, where p is uniform), and every cell's detected fraction becomes Σ w·detected / Σ w.
docs/selection.md ("Source size") gives the measurements.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from lensaudit.config import SelectionConfig
from lensaudit.selection.closure import table_rows
from lensaudit.selection.completeness import posterior_columns
from lensaudit.selection.table import SelectionFunction

#: equal bins of the injected size prior in which the population's size distribution is taken
SIZE_BINS = 8
#: the scored injections' half-light radius column (arcsec)
INJECTED_SIZE = "src_reff"


def declared_size_prior(meta: dict) -> tuple[float, float] | None:
    """The injected half-light radius range a table declares (header ``PRIORRE``, "uniform(lo,hi)"), or
    None when it declares none (a table written before the key existed).

    >>> declared_size_prior({"PRIORRE": "uniform(0.1,0.5)"}), declared_size_prior({})
    ((0.1, 0.5), None)
    """
    m = re.fullmatch(r"uniform\(([-+\d.eE]+),([-+\d.eE]+)\)", str(meta.get("PRIORRE", "")).strip())
    return (float(m.group(1)), float(m.group(2))) if m else None


def size_weights(
    injected: np.ndarray, population: np.ndarray, size_range: tuple[float, float], n_bins: int = SIZE_BINS
) -> np.ndarray:
    """Per injection, q/p: the fraction of ``population``'s half-light radii in the injection's bin of
    ``size_range`` (``n_bins`` equal bins; sizes outside the range count in its end bins) over the uniform
    prior's 1/``n_bins``. The weights average 1 over a uniform prior's injections.

    >>> size_weights(np.array([0.15, 0.35, 0.45]), np.array([0.12, 0.18, 0.31, 0.9]), (0.1, 0.5), 4)
    array([2., 1., 1.])
    """
    lo, hi = size_range
    if not hi > lo:
        raise ValueError(f"the injected size range must increase, got {size_range}")
    edges = np.linspace(lo, hi, n_bins + 1)
    pop = np.asarray(population, float)
    pop = pop[np.isfinite(pop)]
    if not len(pop):
        raise ValueError("no finite source size in the population to re-weight to")

    def bin_of(x: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(edges, np.asarray(x, float), side="right") - 1, 0, n_bins - 1)

    q = np.bincount(bin_of(pop), minlength=n_bins) / len(pop)
    return q[bin_of(injected)] * n_bins


def reweighted(
    sf: SelectionFunction, inj: pd.DataFrame, axis: str, weights: np.ndarray, cfg: SelectionConfig
) -> SelectionFunction:
    """``sf`` (a 4-D table on ``axis``, built from the injections ``inj``) with each row's detected fraction
    re-weighted: k becomes n · Σ w·detected / Σ w over the row's injections, and the Beta-posterior columns
    follow (with n the count, they ignore the weights' spread; the closure's table σ comes from the host
    bootstrap with the same weights). A row whose injections all have zero weight is insufficient."""
    t = sf.table.copy()
    row = table_rows(t, inj, axis)
    ok = row >= 0
    w = np.asarray(weights, float)[ok]
    det = inj["detected"].to_numpy(float)[ok]
    sw = np.bincount(row[ok], weights=w, minlength=len(t))
    sk = np.bincount(row[ok], weights=w * det, minlength=len(t))
    frac = np.divide(sk, sw, out=np.zeros(len(t)), where=sw > 0)
    t["k"] = frac * t.n.to_numpy(float)
    t["insufficient"] = t.insufficient.to_numpy(bool) | (sw <= 0)
    return SelectionFunction(posterior_columns(t, cfg), {**sf.meta, "SIZES": "re-weighted to a population"})
