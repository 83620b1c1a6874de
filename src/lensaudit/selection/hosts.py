"""Injection hosts: real stamps of the held-out splits' N1 negatives (``inject.host_splits``, never train),
matched to each cell's PSF and depth; cells
without a native host borrow a better-seeing, deeper host and degrade it (``degrade.py``), or are left empty.

Host population (``inject.host_match``): ``deflector`` (default) keeps the N1 negatives that look like
the known lenses' deflectors — Tractor TYPE among those of ≥ 5% of the positives, r magnitude and the g−r and
r−z colours inside the positives' 5th–95th percentiles (``inject.deflector_bins``) — so the selection function
is that of lens-like hosts, and the
realism gates compare injections with real lenses on like galaxies; ``all`` keeps every N1 negative of those
splits
(the deployment population, where most hosts could never be a strong lens). Inside the window, deflector-like
hosts are drawn with :func:`deflector_weights`, so that they follow the known lenses' deflectors in TYPE,
brightness and both colours rather than the field's number counts (r−z too: a host's
detection rate follows its r−z more than any other catalogue column; docs/selection.md).

Hosts that the frozen finder already calls lenses (bare score at or above the operating threshold:
:func:`finder_candidates`) are left out (``inject.exclude_candidate_hosts``): an injection into one is
"detected" whatever its arcs, so it measures the finder's false-positive rate, not its completeness; and a
host that is a lens candidate may be a lens, whose own arcs the injected ones would join."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.config import DEFLECTOR_MATCH
from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.utils import hash_unit_interval

# DEFLECTOR_MATCH, the default deflector match, is defined once with the config (``inject.deflector_bins``):
# per catalogue column, the number of quantile bins of the positives in which :func:`deflector_weights` takes
# the density ratio; each column is also windowed


def deflector_window(
    positives: pd.DataFrame,
    min_type_frac: float = 0.05,
    pct: tuple[float, float] = (5, 95),
    columns: Collection[str] = tuple(DEFLECTOR_MATCH),
) -> dict:
    """The positives' deflector population: types, and each of ``columns``' window (by default those of
    :data:`DEFLECTOR_MATCH`: r magnitude, g−r and r−z) between the positives' percentiles ``pct``."""
    frac = positives.type.value_counts(normalize=True)
    return {
        "types": sorted(frac[frac >= min_type_frac].index.tolist()),
        **{c: [float(x) for x in np.nanpercentile(positives[c], pct)] for c in columns},
    }


def quantile_bins(match: dict[str, int]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """``{column: n}`` → the (column, quantiles) pairs of :func:`deflector_weights`.

    >>> quantile_bins({"mag_r": 2, "shape_r": 1})
    (('mag_r', (0.0, 0.5, 1.0)), ('shape_r', (0.0, 1.0)))
    """
    return tuple((c, tuple(float(q) for q in np.linspace(0, 1, n + 1))) for c, n in match.items())


def finder_candidates(scores: pd.DataFrame, threshold: float) -> list[str]:
    """``galaxy_id`` of the scored negatives (``label`` 0) at or above ``threshold``: the finder's own lens
    candidates among them, sorted.

    >>> s = pd.DataFrame({"galaxy_id": list("abcd"), "label": [0, 0, 1, 0], "score": [0.9, 0.2, 0.95, 0.5]})
    >>> finder_candidates(s, 0.5)
    ['a', 'd']
    """
    neg = scores[(scores.label == 0) & (scores.score >= threshold)]
    return sorted(neg.galaxy_id.astype(str).unique().tolist())


def host_pool(
    sample: pd.DataFrame,
    stamps: pd.DataFrame,
    match: str = "deflector",
    splits: tuple[str, ...] = ("val", "test"),
    exclude: Collection[str] = (),
    match_bins: dict[str, int] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """N1 hosts of ``splits`` (never train) with quality-ok stamps (and, for ``deflector``, inside the
    positives' window in TYPE and each column of ``match_bins``, weighted by :func:`deflector_weights` in
    those columns' quantile bins; default :data:`DEFLECTOR_MATCH`), less the galaxies of ``exclude``
    (:func:`finder_candidates`)."""
    match_bins = dict(DEFLECTOR_MATCH if match_bins is None else match_bins)
    if "train" in splits:
        raise ValueError("injection hosts never come from the training split")
    q = labelled_stamps(sample, stamps)  # sorted by store row
    h = q[q.split.isin(list(splits)) & (q.pool == "N1")].reset_index(drop=True)
    info = {"match": match, "splits": list(splits), "n1_candidates": len(h)}
    pos = q[q.label == 1]
    h = h.assign(host_weight=1.0)
    deflector = match == "deflector" and len(pos) > 0
    if deflector:
        w = deflector_window(pos, columns=match_bins)
        keep = np.array(h.type.isin(w["types"]), bool)
        for c in match_bins:
            keep &= np.array(h[c].between(*w[c]), bool)
        h = h[keep].reset_index(drop=True)
        info.update(window=w)
    if len(exclude):
        drop = h.galaxy_id.astype(str).isin(set(exclude)).to_numpy()
        info["candidates_excluded"] = int(drop.sum())
        h = h[~drop].reset_index(drop=True)
    if deflector:
        h["host_weight"] = deflector_weights(pos, h, quantile_bins(match_bins))
        info["hosts_effective"] = round(effective_n(h.host_weight.to_numpy()), 1)
    info["hosts"] = len(h)
    return h, info


#: :data:`DEFLECTOR_MATCH` as (column, quantiles) pairs
DEFLECTOR_BINS: tuple[tuple[str, tuple[float, ...]], ...] = quantile_bins(DEFLECTOR_MATCH)


def deflector_weights(
    pos: pd.DataFrame,
    hosts: pd.DataFrame,
    bins: tuple[tuple[str, tuple[float, ...]], ...] = DEFLECTOR_BINS,
) -> np.ndarray:
    """Per host, the density ratio of the positives to the hosts in (Tractor TYPE, r-magnitude quartile, g−r
    and r−z tercile of the positives; ``bins``: other columns and quantiles): host draws weighted by it follow
    the known lenses' deflectors inside the window, not the field's number counts (on the demo sky this
    moved the closure pull from +3.8 to +2.5; docs/selection.md).

    >>> pos = pd.DataFrame({"type": ["DEV"] * 4, "mag_r": [19.0, 19.5, 20.0, 20.5], "g_r": 1.5, "r_z": 0.9})
    >>> hosts = pd.DataFrame({"type": ["DEV"] * 4, "mag_r": [19.1, 20.6, 20.7, 20.8], "g_r": 1.5, "r_z": 0.9})
    >>> deflector_weights(pos, hosts).round(2).tolist()
    [1.0, 0.33, 0.33, 0.33]
    """

    def key(df: pd.DataFrame) -> pd.Series:
        parts = [df.type.astype(str).reset_index(drop=True)]
        for c, qs in bins:
            e = np.quantile(pos[c].to_numpy(float), qs)
            parts.append(pd.Series(np.clip(np.searchsorted(e, df[c].to_numpy(float)) - 1, 0, len(e) - 2)))
        return parts[0].str.cat([p.astype(str) for p in parts[1:]], sep="|")

    kp, kh = key(pos).value_counts(normalize=True), key(hosts).value_counts(normalize=True)
    ratio = kp.reindex(kh.index).fillna(0.0) / kh
    return ratio.reindex(key(hosts)).to_numpy(float)


def effective_n(w: np.ndarray) -> float:
    """Kish's effective sample size of weights ``w``."""
    return float(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0.0


def assign_hosts(
    cells: pd.DataFrame,
    hosts: pd.DataFrame,
    n: int,
    psf_tol: float,
    depth_tol: float,
    allow_degradation: bool,
    seed: int,
    variant: str = "main",
) -> pd.DataFrame:
    """n injections per cell, each with a host row chosen by hash (deterministic per seed, cell, index)."""
    out = []
    for c in cells.itertuples():
        native = hosts[
            (hosts.psfsize_r.sub(c.psf_fwhm).abs() <= psf_tol)
            & (hosts.psfdepth_mag_r.sub(c.depth).abs() <= depth_tol)
        ]
        degraded = False
        cand = native
        if cand.empty and allow_degradation:
            cand = hosts[(hosts.psfsize_r <= c.psf_fwhm) & (hosts.psfdepth_mag_r >= c.depth)]
            degraded = True
        if cand.empty:
            continue
        h = weighted_pick(cand, [f"{variant}|{c.cell}|{j}" for j in range(n)], seed)
        out.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "cell": c.cell,
                    "index": np.arange(n),
                    "theta_e": c.theta_e,
                    "psf_cell": c.psf_fwhm,
                    "depth_cell": c.depth,
                    **host_columns(h),
                    "degraded": degraded,
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def weighted_pick(cand: pd.DataFrame, keys: list[str], seed: int) -> pd.DataFrame:
    """One candidate row per key, drawn by hash with probability ∝ ``host_weight`` (evenly when no candidate
    carries weight): deterministic per seed and key."""
    w = cand.host_weight.to_numpy(float) if "host_weight" in cand else np.ones(len(cand))
    if not w.sum() > 0:
        w = np.ones(len(cand))
    cum = np.cumsum(w) / w.sum()
    pick = np.minimum(np.searchsorted(cum, hash_unit_interval(keys, seed), side="right"), len(cand) - 1)
    return cand.iloc[pick]


def host_columns(h: pd.DataFrame) -> dict[str, Any]:
    """The plan's host columns of host rows ``h``: store row, id, per-band PSF FWHM, r depth, and the Tractor
    TYPE and nobs_z (robustness over host type and exposure count), and the host's Moffat ``psf_beta`` when
    ``h`` carries one (:func:`lensaudit.selection.injection.with_host_beta`)."""
    return {
        "host_row": h.row.to_numpy(),
        "host_galaxy_id": h.galaxy_id.to_numpy(),
        "host_psf_g": h.psfsize_g.to_numpy(),
        "host_psf_r": h.psfsize_r.to_numpy(),
        "host_psf_z": h.psfsize_z.to_numpy(),
        "host_depth_r": h.psfdepth_mag_r.to_numpy(),
        "host_type": h["type"].to_numpy() if "type" in h else "",
        "host_nobs_z": h["nobs_z"].to_numpy() if "nobs_z" in h else -1,
        **({"psf_beta": h.psf_beta.to_numpy(float)} if "psf_beta" in h else {}),
    }
