"""Gates of the catalog stage: the pool's invariants (read from its Parquet parts), the spatial split
recomputed from RA/Dec, the split and N2 fractions, TYPE coverage and the positive ↔ Tractor match."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit.catalog.build import match_rate, n2_per_category
from lensaudit.catalog.pool import read_pool
from lensaudit.catalog.spatial import SPLITS, cells_in_several_splits
from lensaudit.gates import Gate
from lensaudit.validation.registry import Threshold, register

STAGE = "catalog"
#: the pool columns the gates read
POOL_COLUMNS = ["galaxy_id", "ra", "dec", "type", "split", "pool", "n2_category", "healpix"]
#: columns no pool row may leave empty
CRITICAL = ["galaxy_id", "ra", "dec", "type", "split", "healpix"]


def _pool(inp: Any) -> pd.DataFrame:
    return inp._cached(("catalog", "pool_gates"), lambda: read_pool(inp.path(STAGE, "pool"), POOL_COLUMNS))


@register(
    "pool_not_empty",
    STAGE,
    "rows in the negative pool",
    reads=("catalog.pool",),
    threshold=Threshold("fail = 0", "ours", "no pool, no negatives"),
)
def pool_not_empty(inp: Any) -> Gate:
    n = len(_pool(inp))
    return Gate.check("pool_not_empty", n > 0, value=n)


@register(
    "unique_galaxy_id",
    STAGE,
    "duplicated galaxy_id values in the pool",
    reads=("catalog.pool",),
    threshold=Threshold("fail > 0", "ours", "galaxy_id is the key of every later table"),
)
def unique_galaxy_id(inp: Any) -> Gate:
    dup = _pool(inp).galaxy_id.duplicated()
    return Gate.check("unique_galaxy_id", not dup.any(), value=int(dup.sum()))


@register(
    "no_nulls_critical",
    STAGE,
    "no pool row lacks galaxy_id, ra, dec, type, split or healpix",
    reads=("catalog.pool",),
    threshold=Threshold("fail if any is null", "ours", "every later stage keys, locates or splits on these"),
)
def no_nulls_critical(inp: Any) -> Gate:
    return Gate.check("no_nulls_critical", not _pool(inp)[CRITICAL].isna().any().any())


@register(
    "coordinates_in_range",
    STAGE,
    "every pool row has 0 ≤ RA ≤ 360 and |Dec| ≤ 90",
    reads=("catalog.pool",),
    threshold=Threshold("fail if any is out of range", "ours", "an invariant of sky coordinates"),
)
def coordinates_in_range(inp: Any) -> Gate:
    p = _pool(inp)
    return Gate.check(
        "coordinates_in_range", bool(p.ra.between(0, 360).all() and p.dec.between(-90, 90).all())
    )


@register(
    "one_split_per_cell",
    STAGE,
    "HEALPix cells (nested, catalog.nside, recomputed from each row's RA/Dec) holding pool rows of more than "
    "one split",
    reads=("catalog.pool",),
    threshold=Threshold("fail > 0", "design", "the design splits by HEALPix cell: no cell in two splits"),
)
def one_split_per_cell(inp: Any) -> Gate:
    p = _pool(inp)
    nside = inp.config.catalog.nside
    n = cells_in_several_splits(p.ra.to_numpy(float), p.dec.to_numpy(float), p.split.to_numpy(), nside)
    return Gate.check(
        "one_split_per_cell", n == 0, value=n, message=f"cells at nside {nside} in several splits"
    )


@register(
    "split_fraction_*",
    STAGE,
    "fraction of the pool in each split (train, val, test)",
    reads=("catalog.pool",),
    threshold=Threshold(
        "fail outside target ± {catalog.split_tolerance}",
        "design",
        "70/15/15 by HEALPix cell (the design); the tolerance is ours: cells hold unequal galaxy counts",
    ),
)
def split_fractions(inp: Any) -> list[Gate]:
    cfg = inp.config.catalog
    frac = _pool(inp).split.value_counts(normalize=True).reindex(list(SPLITS), fill_value=0.0)
    return [
        Gate(
            name=f"split_fraction_{s}",
            value=float(frac[s]),
            lo=cfg.split_fractions[s] - cfg.split_tolerance,
            hi=cfg.split_fractions[s] + cfg.split_tolerance,
            message=f"target {cfg.split_fractions[s]:.2f}",
        )
        for s in SPLITS
    ]


@register(
    "n2_fraction",
    STAGE,
    "fraction of the pool that the N2 (lens-like confuser) rules flag",
    reads=("catalog.pool",),
    threshold=Threshold(
        "fail outside {catalog.n2_fraction_bounds}",
        "ours",
        "the sample draws 15% N2: the pool must hold enough, and a rule that flags most galaxies is broken",
    ),
)
def n2_fraction(inp: Any) -> Gate:
    p = _pool(inp)
    per_cat = n2_per_category(p)
    lo, hi = inp.config.catalog.n2_fraction_bounds
    return Gate(
        name="n2_fraction",
        value=float((p.pool == "N2").mean()) if len(p) else 0.0,
        lo=lo,
        hi=hi,
        detail=per_cat,
        message="per category: " + ", ".join(f"{k}={v}" for k, v in per_cat.items()),
    )


@register(
    "types_present",
    STAGE,
    "distinct Tractor TYPEs in the pool",
    reads=("catalog.pool",),
    threshold=Threshold("fail < 3", "ours", "the strata are by TYPE: SER, DEV and REX are expected"),
)
def types_present(inp: Any) -> Gate:
    p = _pool(inp)
    return Gate(
        name="types_present",
        value=int(p.type.nunique()),
        fail=2.5,
        higher_is_better=True,
        message=", ".join(sorted(p.type.unique())),
    )


@register(
    "positive_match_rate",
    STAGE,
    "fraction of the positives with sweep coverage that have a Tractor row within "
    "catalog.match_radius_arcsec",
    reads=("catalog.positives_matched",),
    threshold=Threshold(
        "warn < {catalog.min_match_rate}, fail < 0.5",
        "ours",
        "the predecessor matched 93.8% on real DR10; unmatched positives are lost to training",
    ),
)
def positive_match_rate(inp: Any) -> Gate:
    cfg = inp.config.catalog
    m = inp.table(STAGE, "positives_matched")
    rate, _ = match_rate(m)
    cov = m[m.covered]
    return Gate(
        name="positive_match_rate",
        value=rate,
        warn=cfg.min_match_rate,
        fail=0.5,
        higher_is_better=True,
        message=f"{int(cov.matched.sum())}/{len(cov)} positives with sweep coverage within "
        f"{cfg.match_radius_arcsec}″ (predecessor 93.8%)",
    )


@register(
    "match_sep_p90_arcsec",
    STAGE,
    "90th percentile of the positives' nearest Tractor separations (″)",
    reads=("catalog.positives_matched",),
    threshold=Threshold(
        "warn > {catalog.match_radius_arcsec}, fail > {catalog.match_report_radius_arcsec}",
        "ours",
        "lens positions are good to well under 1″; a wide spread means a coordinate problem",
    ),
    blocking=False,
)
def match_sep_p90(inp: Any) -> Gate:
    cfg = inp.config.catalog
    _, seps = match_rate(inp.table(STAGE, "positives_matched"))
    return Gate(
        name="match_sep_p90_arcsec",
        value=float(seps.quantile(0.9)) if len(seps) else float("nan"),
        warn=cfg.match_radius_arcsec,
        fail=cfg.match_report_radius_arcsec,
        message="90th percentile of nearest separations",
    )
