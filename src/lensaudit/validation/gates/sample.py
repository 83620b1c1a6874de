"""Gates of the sample stage, from the realised ``sample.parquet`` (never from the quotas of the plan): the
negatives per positive in every stratum, shortfall strata included; the shortfall; the realised N1 share; the
spatial split recomputed from RA/Dec; and the sample's identity invariants."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit.catalog.sampling import realised_strata, stratum_label
from lensaudit.catalog.spatial import cells_in_several_splits
from lensaudit.gates import Gate
from lensaudit.validation.registry import Threshold, register

STAGE = "sample"
#: strata_shortfall fails when more than this fraction of the wanted negatives is missing (ours)
MAX_SHORTFALL_FRAC = 0.5
#: n1_fraction fails outside the configured share ± this (ours)
N1_TOLERANCE = 0.10


def _sample(inp: Any) -> pd.DataFrame:
    return inp.table(STAGE, "sample")


def _strata(inp: Any) -> pd.DataFrame:
    cfg = inp.config.sample
    return inp._cached(
        ("sample", "realised_strata"), lambda: realised_strata(_sample(inp), cfg.neg_per_pos, cfg.n1_fraction)
    )


@register(
    "ratio_per_stratum_max_rel_dev",
    STAGE,
    "largest relative deviation, over the strata, of the realised negatives per positive from "
    "sample.neg_per_pos (shortfall strata included: a stratum without negatives deviates by 1)",
    reads=("sample.sample",),
    threshold=Threshold(
        "warn > {sample.ratio_tolerance}, fail > 3 × {sample.ratio_tolerance}",
        "design",
        "the design's 100:1 per (nobs_z bin, TYPE) stratum (sample.neg_per_pos); the tolerance is ours",
    ),
    blocking=False,
)
def ratio_per_stratum(inp: Any) -> Gate:
    cfg = inp.config.sample
    by = _strata(inp)
    # a stratum with negatives but no positives deviates by its negatives in units of one positive's quota
    dev = (by.n_neg - cfg.neg_per_pos * by.n_pos).abs() / (cfg.neg_per_pos * by.n_pos.clip(lower=1))
    worst = dev.idxmax() if len(dev) and dev.max() > 0 else None
    return Gate(
        name="ratio_per_stratum_max_rel_dev",
        value=float(dev.max()) if len(dev) else 0.0,
        warn=cfg.ratio_tolerance,
        fail=3 * cfg.ratio_tolerance,
        detail={stratum_label(k): round(float(v), 2) for k, v in by.neg_per_pos.items()},
        message=f"realised negatives per positive vs {cfg.neg_per_pos:g}, shortfall strata included"
        + (
            f"; worst {stratum_label(worst)}: {by.n_neg[worst]} for {by.n_pos[worst]} positives"
            if worst is not None
            else ""
        )
        + "; per stratum in detail",
    )


@register(
    "strata_shortfall",
    STAGE,
    "fraction of the wanted negatives (neg_per_pos × positives, per stratum and pool) missing from the "
    "realised sample",
    reads=("sample.sample",),
    threshold=Threshold(
        f"warn > 0, fail > {MAX_SHORTFALL_FRAC}",
        "ours",
        "a small shortfall is reported; when most wanted negatives are missing the ratio is not the design's",
    ),
    blocking=False,
)
def strata_shortfall(inp: Any) -> Gate:
    by = _strata(inp)
    short = by[by.shortfall > 0]
    missing, wanted = int(by.shortfall.sum()), int(by.wanted.sum())
    return Gate(
        name="strata_shortfall",
        value=missing / wanted if wanted else 0.0,
        warn=0.0,
        fail=MAX_SHORTFALL_FRAC,
        detail={stratum_label(k): int(r.shortfall) for k, r in short.iterrows()},
        message=f"{missing} of {wanted} wanted negatives missing"
        + "".join(f"; {stratum_label(k)}: short {int(r.shortfall)}" for k, r in short.iterrows()),
    )


@register(
    "n1_fraction",
    STAGE,
    "N1 share of the realised negatives (N1 / (N1 + N2))",
    reads=("sample.sample",),
    threshold=Threshold(
        f"fail outside {{sample.n1_fraction}} ± {N1_TOLERANCE}",
        "design",
        "the design's N1:N2 = 85:15 (sample.n1_fraction); the tolerance is ours. Non-blocking: small strata "
        "round their N2 quota to 0 and a scarce N2 pool shifts the share, which the report shows",
    ),
    blocking=False,
)
def n1_fraction(inp: Any) -> Gate:
    target = inp.config.sample.n1_fraction
    pool = _sample(inp).pool
    n1, n2 = int((pool == "N1").sum()), int((pool == "N2").sum())
    return Gate(
        name="n1_fraction",
        value=n1 / (n1 + n2) if n1 + n2 else float("nan"),
        lo=target - N1_TOLERANCE,
        hi=target + N1_TOLERANCE,
        message=f"{n1} N1, {n2} N2 negatives; target {target}",
    )


@register(
    "no_positive_negative_overlap",
    STAGE,
    "galaxies that are both a positive and a negative",
    reads=("sample.sample",),
    threshold=Threshold("fail > 0", "ours", "a lens among the negatives teaches the finder to miss it"),
)
def no_overlap(inp: Any) -> Gate:
    s = _sample(inp)
    both = set(s.galaxy_id[s.label == 1]) & set(s.galaxy_id[s.label == 0])
    return Gate.check("no_positive_negative_overlap", not both, value=len(both))


@register(
    "no_cell_in_two_splits",
    STAGE,
    "HEALPix cells (nested, catalog.nside, recomputed from each row's RA/Dec) holding sample rows of more "
    "than one split",
    reads=("sample.sample",),
    threshold=Threshold("fail > 0", "design", "the design splits by HEALPix cell: no cell in two splits"),
)
def no_cell_in_two_splits(inp: Any) -> Gate:
    s = _sample(inp)
    nside = inp.config.catalog.nside
    n = cells_in_several_splits(s.ra.to_numpy(float), s.dec.to_numpy(float), s.split.to_numpy(), nside)
    return Gate.check(
        "no_cell_in_two_splits", n == 0, value=n, message=f"cells at nside {nside} in several splits"
    )


@register(
    "unique_galaxy_id",
    STAGE,
    "duplicated galaxy_id values in the sample",
    reads=("sample.sample",),
    threshold=Threshold("fail > 0", "ours", "galaxy_id keys the stamps to the sample"),
)
def unique_galaxy_id(inp: Any) -> Gate:
    dup = _sample(inp).galaxy_id.duplicated()
    return Gate.check("unique_galaxy_id", not dup.any(), value=int(dup.sum()))


@register(
    "positives_in_sample",
    STAGE,
    "positives in the sample",
    reads=("sample.sample",),
    threshold=Threshold("fail < 1", "ours", "no positives, nothing to train on"),
)
def positives_in_sample(inp: Any) -> Gate:
    n = int(_sample(inp).label.sum())
    return Gate(name="positives_in_sample", value=n, fail=0.5, higher_is_better=True)
