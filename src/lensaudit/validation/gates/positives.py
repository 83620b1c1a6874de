"""Gates of the positives stage: the positives table's invariants, the malformed input rows and the merged
duplicates, from ``positives.parquet``, ``malformed_rows.txt`` and the configured source CSVs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.gates import Gate
from lensaudit.survey import positives as P
from lensaudit.validation.registry import Threshold, register

STAGE = "positives"
#: fail above this fraction of malformed input rows (ours)
MAX_MALFORMED_FRAC = 0.05
#: fail when more than this fraction of the selected rows were duplicates merged away (ours)
MAX_DUPLICATE_FRAC = 0.10


def _pos(inp: Any) -> pd.DataFrame:
    return inp.table(STAGE, "positives")


@register(
    "n_tier_A",
    STAGE,
    "Tier-A (confident) positives in positives.parquet",
    reads=("positives.positives",),
    threshold=Threshold("fail < 1", "ours", "Tier-A lenses are the recall reference of every later stage"),
)
def n_tier_a(inp: Any) -> Gate:
    n = int((_pos(inp).tier == "A").sum())
    return Gate(name="n_tier_A", value=n, fail=0.5, higher_is_better=True, message="Tier-A positives present")


@register(
    "n_positives_in_footprint",
    STAGE,
    "positives inside the DR10 south footprint (Dec < positives.footprint_dec_max)",
    reads=("positives.positives",),
    threshold=Threshold("fail < 1", "ours", "positives outside the footprint have no stamps"),
)
def n_in_footprint(inp: Any) -> Gate:
    n = int(_pos(inp).in_footprint.sum())
    return Gate(name="n_positives_in_footprint", value=n, fail=0.5, higher_is_better=True)


@register(
    "no_nan_coordinates",
    STAGE,
    "positives with a non-finite RA or Dec",
    reads=("positives.positives",),
    threshold=Threshold("fail > 0", "ours", "a position is what every later stage matches on"),
)
def no_nan_coordinates(inp: Any) -> Gate:
    p = _pos(inp)
    bad = ~(np.isfinite(p.ra.to_numpy(float)) & np.isfinite(p.dec.to_numpy(float)))
    return Gate.check("no_nan_coordinates", not bad.any(), value=int(bad.sum()))


@register(
    "ra_dec_in_range",
    STAGE,
    "every positive has 0 ≤ RA < 360 and |Dec| ≤ 90",
    reads=("positives.positives",),
    threshold=Threshold("fail if any is out of range", "ours", "an invariant of sky coordinates"),
)
def ra_dec_in_range(inp: Any) -> Gate:
    p = _pos(inp)
    ra, dec = p.ra.to_numpy(float), p.dec.to_numpy(float)
    return Gate.check("ra_dec_in_range", bool(((ra >= 0) & (ra < 360)).all() and (np.abs(dec) <= 90).all()))


@register(
    "unique_positive_id",
    STAGE,
    "duplicated positive_id values",
    reads=("positives.positives",),
    threshold=Threshold("fail > 0", "ours", "positive_id is the key of the positives"),
)
def unique_positive_id(inp: Any) -> Gate:
    dup = _pos(inp).positive_id.duplicated()
    return Gate.check("unique_positive_id", not dup.any(), value=int(dup.sum()))


@register(
    "malformed_rows",
    STAGE,
    "fraction of the source CSVs' data rows excluded as malformed (listed in malformed_rows.txt)",
    reads=("positives.malformed_rows",),
    threshold=Threshold(
        f"warn > 0, fail > {MAX_MALFORMED_FRAC}",
        "ours",
        "a few bad rows are reported and excluded; more than 5% means the wrong file or format",
    ),
)
def malformed_rows(inp: Any) -> Gate:
    lines = inp.path(STAGE, "malformed_rows").read_text().splitlines()
    n_bad = len(P.malformed_row_keys(lines))
    n_rows = P.source_rows(inp.config)
    return Gate(
        name="malformed_rows",
        value=n_bad / n_rows if n_rows else float(n_bad > 0),
        warn=0.0,
        fail=MAX_MALFORMED_FRAC,
        message=f"{n_bad} of {n_rows} input rows excluded"
        + (", with line numbers in malformed_rows.txt" if n_bad else ""),
    )


@register(
    "duplicates_merged",
    STAGE,
    "fraction of the selected lens entries merged into another within positives.duplicate_radius_arcsec",
    reads=("positives.positives",),
    threshold=Threshold(
        f"fail > {MAX_DUPLICATE_FRAC}",
        "ours",
        "catalogues overlap a little; more than 10% merged means a radius or a source listed twice",
    ),
)
def duplicates_merged(inp: Any) -> Gate:
    p = _pos(inp)
    dup = int(p.n_merged.sum())
    selected = len(p) + dup
    return Gate(
        name="duplicates_merged",
        value=dup / selected if selected else 0.0,
        fail=MAX_DUPLICATE_FRAC,
        message=f"{dup} of {selected} selected entries merged within "
        f"{inp.config.positives.duplicate_radius_arcsec}″; see duplicates.csv",
    )
