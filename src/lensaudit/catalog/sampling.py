"""Stratified, order-free negative sampling (pure functions).

Pass 1 counts the pool per (nobs_z_bin, type_bin, pool); the quota per stratum is ``ratio × n_positives``
split N1:N2 = n1_fraction : 1 − n1_fraction. Pass 2 keeps, within each (stratum, pool), the ``quota`` rows
with the smallest ``hash(galaxy_id, seed)``: the result does not depend on partitioning or row order, and
needs no global sort. When a stratum lacks rows, all are taken and the shortfall is reported.

The sample workflow (:func:`sampling_positives`, :func:`draw_sample` on Dask, :func:`sample_counts`) is what
the ``sample`` stage orchestrates; :func:`realised_strata` measures the realised sample for its gates
(:mod:`lensaudit.validation.gates.sample`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from lensaudit.catalog.cuts import nobs_z_bin, parent_mask, type_bin
from lensaudit.catalog.pool import MEASUREMENTS
from lensaudit.config import CatalogConfig, SampleConfig
from lensaudit.utils import hash_unit_interval

STRATUM = ["nobs_z_bin", "type_bin", "mag_bin"]
#: Tractor measurements and observing conditions carried by every sample row (after the sample's own columns)
CONDITIONS = ["type", *MEASUREMENTS, "brickname", "brickid", "objid", "release"]
#: sample.parquet's columns, in order
COLUMNS = [
    "galaxy_id",
    "ra",
    "dec",
    "label",
    "tier",
    "weight",
    "pool",
    "n2_category",
    "split",
    "positive_id",
    "nobs_z_bin",
    "type_bin",
    "mag_bin",
    "healpix",
    "healpix_nside",
    "healpix_analysis",
    "healpix_analysis_nside",
    *CONDITIONS,
]
#: integer columns written as int64 (pool and positives tables may hold narrower or nullable types)
_INT64 = (
    "label",
    "healpix_nside",
    "healpix_analysis_nside",
    "nobs_g",
    "nobs_r",
    "nobs_z",
    "objid",
    "brickid",
    "release",
    "maskbits",
)


def add_mag_bin(df: pd.DataFrame, edges: list[float]) -> pd.DataFrame:
    """Label r-magnitude bins ('all' when no edges): matching negatives to positives in brightness removes the
    core-brightness shortcut that let the predecessor's finder score AUC 0.99 on simulations."""
    if not edges:
        return df.assign(mag_bin="all")
    e = np.asarray(edges, float)
    idx = np.clip(np.searchsorted(e, df["mag_r"].to_numpy(float), side="right") - 1, 0, len(e) - 2)
    labels = np.array([f"{a:g}-{b:g}" for a, b in zip(e[:-1], e[1:])], dtype=object)
    return df.assign(mag_bin=labels[idx].astype(str))


def quotas(
    pos_counts: pd.Series, pool_counts: pd.DataFrame, ratio: float, n1_fraction: float
) -> pd.DataFrame:
    """Per (stratum, pool): wanted, available and taken counts.

    ``pos_counts``: positives per stratum (MultiIndex over STRATUM);
    ``pool_counts``: columns STRATUM + pool, n.
    """
    rows = []
    avail = pool_counts.set_index(STRATUM + ["pool"])["n"]
    for stratum, npos in pos_counts.items():
        key = cast(tuple[str, ...], stratum)
        total = ratio * npos
        for pool, frac in (("N1", n1_fraction), ("N2", 1.0 - n1_fraction)):
            want = int(round(total * frac))
            have = int(avail.get((*key, pool), 0))
            rows.append(
                {
                    **dict(zip(STRATUM, key)),
                    "pool": pool,
                    "n_pos": int(npos),
                    "wanted": want,
                    "available": have,
                    "taken": min(want, have),
                    "shortfall": max(0, want - have),
                }
            )
    return pd.DataFrame(rows)


def candidate_filter(part: pd.DataFrame, q: pd.DataFrame, seed: int, slack: float = 1.2) -> pd.DataFrame:
    """Rows of one partition that may be among the selected (hash below a generous per-stratum cut)."""
    if part.empty or q.empty:
        return part.iloc[:0].assign(_u=np.zeros(0))
    u = hash_unit_interval(part.galaxy_id.to_numpy(), seed)
    key = q.set_index(STRATUM + ["pool"])
    p = (key.taken / key.available.clip(lower=1)).clip(upper=1.0)
    cut = (p * slack + 30.0 / key.available.clip(lower=1)).clip(upper=1.0)
    idx = pd.MultiIndex.from_frame(part[STRATUM + ["pool"]])
    thr = cut.reindex(idx).fillna(0.0).to_numpy()
    keep = u <= thr
    return part[keep].assign(_u=u[keep])


def select(candidates: pd.DataFrame, q: pd.DataFrame) -> pd.DataFrame:
    """Exactly ``taken`` rows per (stratum, pool): the smallest hashes (ties by galaxy_id)."""
    out = []
    taken = q.set_index(STRATUM + ["pool"]).taken
    for key, grp in candidates.groupby(STRATUM + ["pool"], sort=True):
        k = int(taken.get(key, 0))
        if k:
            out.append(grp.sort_values(["_u", "galaxy_id"]).head(k))
    if not out:
        return candidates.iloc[:0].drop(columns="_u")
    return pd.concat(out).drop(columns="_u")


# -- the sample workflow ---------------------------------------------------------------------------
def sampling_positives(
    matched: pd.DataFrame, cat_cfg: CatalogConfig, edges: list[float]
) -> tuple[pd.DataFrame, int]:
    """Matched positives with their strata, and how many failed the parent cuts.

    Positives face the same parent cuts as negatives (except the magnitude window: deflectors of known lenses
    are kept at any brightness), so that every positive stratum can have negatives.
    """
    pos = matched[matched.matched].copy()
    keep = parent_mask(pos.assign(mag_r=np.clip(pos.mag_r, *cat_cfg.mag_r_range)), cat_cfg).to_numpy()
    n_cut = int((~keep).sum())
    pos = pos[keep].copy()
    pos["nobs_z_bin"] = nobs_z_bin(pos.nobs_z.astype(int), cat_cfg.nobs_z_edges)
    pos["type_bin"] = type_bin(pos.type)
    return add_mag_bin(pos, edges), n_cut


def _part_counts(path: str, edges: list[float]) -> pd.DataFrame:
    """Pass 1 on one pool part: rows per (stratum, pool)."""
    df = add_mag_bin(pd.read_parquet(path, columns=["nobs_z_bin", "type_bin", "mag_r", "pool"]), edges)
    return df[STRATUM + ["pool"]].value_counts().rename("n").reset_index()


def _part_candidates(path: str, q: pd.DataFrame, seed: int, edges: list[float]) -> pd.DataFrame:
    """Pass 2 on one pool part: the rows that may be selected."""
    return candidate_filter(add_mag_bin(pd.read_parquet(path), edges), q, seed)


def draw_sample(
    client: Any,
    pos: pd.DataFrame,
    parts: list[str],
    cfg: SampleConfig,
    seed: int,
    on_part: Callable[[], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two Dask passes over the pool parts (counts, then candidates) → (sample sorted by galaxy_id, quotas).

    ``pos``: the positives from :func:`sampling_positives`; ``on_part`` is called once per finished part
    and pass.
    """
    counts = []
    for f in client.map(_part_counts, parts, edges=cfg.mag_r_edges, pure=False):
        counts.append(f.result())
        if on_part:
            on_part()
    pool_counts = pd.concat(counts).groupby(STRATUM + ["pool"], as_index=False).n.sum()
    q = quotas(pos.groupby(STRATUM).size(), pool_counts, cfg.neg_per_pos, cfg.n1_fraction)
    cands = []
    for f in client.map(_part_candidates, parts, q=q, seed=seed, edges=cfg.mag_r_edges, pure=False):
        cands.append(f.result())
        if on_part:
            on_part()
    neg = select(pd.concat(cands, ignore_index=True), q)
    neg = neg.assign(label=0, tier="", weight=1.0, positive_id="")
    p = pos.assign(label=1, pool="positive", n2_category="")
    p["ra"], p["dec"] = p.tractor_ra, p.tractor_dec
    sample = pd.concat([p[COLUMNS], neg[COLUMNS]], ignore_index=True)
    sample = sample.sort_values("galaxy_id", kind="stable").reset_index(drop=True)
    for c in _INT64:
        sample[c] = sample[c].astype(np.int64)
    return sample, q


def sample_counts(sample: pd.DataFrame, q: pd.DataFrame) -> dict[str, int]:
    """Rows, positives by tier, negatives by pool, the quota shortfall, and positives/negatives per split."""
    c = {
        "rows": len(sample),
        "positives": int(sample.label.sum()),
        "tier_A": int((sample.tier == "A").sum()),
        "tier_B": int((sample.tier == "B").sum()),
        "N1": int((sample.pool == "N1").sum()),
        "N2": int((sample.pool == "N2").sum()),
        "shortfall": int(q.shortfall.sum()),
    }
    for s in ("train", "val", "test"):
        c[f"{s}_pos"] = int(((sample.split == s) & (sample.label == 1)).sum())
        c[f"{s}_neg"] = int(((sample.split == s) & (sample.label == 0)).sum())
    return c


def realised_strata(sample: pd.DataFrame, ratio: float, n1_fraction: float) -> pd.DataFrame:
    """Per stratum of the realised sample: positives, N1 and N2 negatives, what the quotas want of each
    (``ratio × n_pos`` split N1:N2 as :func:`quotas` rounds it), the shortfall (Σ over N1, N2 of wanted −
    realised, when positive) and the realised negatives per positive. Strata holding only negatives appear
    with ``n_pos = 0``."""
    n = sample.groupby(STRATUM + ["pool"]).size().unstack("pool")
    by = n.reindex(columns=["positive", "N1", "N2"], fill_value=0).fillna(0).astype(int)
    by.columns = pd.Index(["n_pos", "N1", "N2"])
    want_n1 = (ratio * by.n_pos * n1_fraction).round().astype(int)
    want_n2 = (ratio * by.n_pos * (1.0 - n1_fraction)).round().astype(int)
    by["wanted"] = want_n1 + want_n2
    by["shortfall"] = (want_n1 - by.N1).clip(lower=0) + (want_n2 - by.N2).clip(lower=0)
    by["n_neg"] = by.N1 + by.N2
    by["neg_per_pos"] = by.n_neg / by.n_pos.clip(lower=1)
    return by


def stratum_label(stratum: Hashable) -> str:
    """A stratum key (nobs_z_bin, type_bin, mag_bin) as one label: ``"3-5|SER|19-20"``."""
    return "|".join(cast(tuple[str, ...], stratum))


def exclude_independent(
    sample: pd.DataFrame, ra: np.ndarray, dec: np.ndarray, radius_arcsec: float
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop the TRAIN-split rows (positives and negatives) within ``radius_arcsec`` of an independent
    validation system (the DESI strong-lens VAC at ``ra``, ``dec``), like the known-lens exclusion: the finder
    never trains on them, so their recall in val/test is an independent check. Val and test rows are kept.
    Returns the kept sample and the counts dropped (``vac_excluded_train_pos``, ``vac_excluded_train_neg``).

    >>> s = pd.DataFrame({"ra": [10.0, 10.0, 10.0, 20.0], "dec": [0.0, 0.001, 0.004, 0.0],
    ...                   "split": ["train", "train", "train", "test"], "label": [1, 0, 0, 0]})
    >>> kept, n = exclude_independent(s, np.array([10.0, 20.0]), np.array([0.0, 0.0]), 11.0)
    >>> kept.dec.tolist(), n
    ([0.004, 0.0], {'vac_excluded_train_pos': 1, 'vac_excluded_train_neg': 1})
    """
    from lensaudit.catalog.spatial import ExclusionIndex

    near = ExclusionIndex(ra, dec, radius_arcsec).near(sample.ra.to_numpy(), sample.dec.to_numpy())
    drop = near & (sample.split == "train").to_numpy()
    lab = sample.label.to_numpy()
    counts = {
        "vac_excluded_train_pos": int((drop & (lab == 1)).sum()),
        "vac_excluded_train_neg": int((drop & (lab == 0)).sum()),
    }
    return sample[~drop].reset_index(drop=True), counts


# -- hard-negative mining (issue 20) -------------------------------------------------------------------------
#: the verdicts of a user's confirmation CSV (``galaxy_id, verdict``)
VERDICTS = ("non_lens", "lens")


def read_confirmations(path: str | Path) -> pd.DataFrame:
    """A user's CSV of visually inspected objects: ``galaxy_id`` and ``verdict`` ('non_lens': a confirmed
    non-lens, mined; 'lens': a lens among the negatives, dropped from training). InputError (one sentence,
    with the line) for a missing file or column or an unknown verdict."""
    from lensaudit.errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"mining confirmation CSV not found: {p}")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"mining confirmation CSV {p} is not a readable CSV: {exc}") from None
    missing = [c for c in ("galaxy_id", "verdict") if c not in df.columns]
    if missing:
        raise InputError(f"mining confirmation CSV {p} lacks columns {missing} (needs galaxy_id, verdict)")
    v = df.verdict.str.strip().str.lower()
    bad = np.flatnonzero(~v.isin(VERDICTS))
    if len(bad):
        raise InputError(
            f"{p.name}:{bad[0] + 2}: verdict {df.verdict.iloc[bad[0]]!r} is not one of {', '.join(VERDICTS)}"
        )
    return pd.DataFrame({"galaxy_id": df.galaxy_id.str.strip(), "verdict": v})


def mining_round(
    sample: pd.DataFrame,
    scored: pd.DataFrame,
    top_k: int,
    weight: float,
    confirmations: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One round of hard-negative mining on ``sample`` (sample.parquet) from ``scored`` (the round's finder
    on the sample's stamps): the ``top_k`` highest-scoring TRAIN-split negatives not mined before, plus the
    train negatives the user confirmed as non-lenses, join N2 as ``mined`` with training weight ``weight``;
    the negatives the user marked as lenses leave the sample. Val and test rows are never touched, whatever
    ``scored`` or the confirmations hold (confirmations outside the train negatives are counted as
    ignored).

    >>> s = pd.DataFrame({"galaxy_id": list("abcd"), "label": [0, 0, 0, 1], "split": ["train", "test",
    ...                   "train", "train"], "n2_category": "", "pool": "N1", "weight": 1.0})
    >>> sc = s.assign(score=[0.9, 0.99, 0.1, 0.95])
    >>> out, rep = mining_round(s, sc, 1, 3.0)
    >>> out[out.n2_category == "mined"].galaxy_id.tolist(), rep["mined"]
    (['a'], 1)
    """
    from lensaudit.catalog.n2_rules import MINED

    train_neg = set(sample.galaxy_id[(sample.split == "train") & (sample.label == 0)])
    conf = confirmations if confirmations is not None else pd.DataFrame({"galaxy_id": [], "verdict": []})
    usable = conf.galaxy_id.isin(train_neg)
    drop = set(conf.galaxy_id[usable & (conf.verdict == "lens")])
    cand = scored[scored.galaxy_id.isin(train_neg - drop) & (scored.split == "train") & (scored.label == 0)]
    before = set(sample.galaxy_id[sample.n2_category == MINED])
    top = cand[~cand.galaxy_id.isin(before)].nlargest(top_k, "score")
    mined = set(top.galaxy_id) | set(conf.galaxy_id[usable & (conf.verdict == "non_lens")])
    out = sample[~sample.galaxy_id.isin(drop)].copy()
    m = out.galaxy_id.isin(mined).to_numpy()
    out.loc[m, "n2_category"], out.loc[m, "pool"], out.loc[m, "weight"] = MINED, "N2", weight
    report = {
        "mined": int(len(mined - before)),
        "mined_total": int((out.n2_category == MINED).sum()),
        "confirmed_non_lens": int((usable & (conf.verdict == "non_lens")).sum()),
        "dropped_as_lens": len(drop),
        "confirmations_ignored": int((~usable).sum()),
        "min_mined_score": float(top.score.min()) if len(top) else None,
    }
    return out.reset_index(drop=True), report
