"""Gates of the population stage: enough of the second population's lenses were scored for a closure, and its
lens sources really differ from the run's sky's as configured (read back from both skies' truth tables)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lensaudit.gates import Gate
from lensaudit.selection.population import sky_truth, source_shift, true_lenses
from lensaudit.validation.gates.selection import CLOSURE_THRESHOLDS, closure_gate
from lensaudit.validation.registry import Threshold, register

STAGE = "population"
#: fewest scored lenses of the second population a closure is computed from
MIN_SCORED = 30


def _variant_truth(inp: Any) -> pd.DataFrame:
    return inp._cached(("population", "truth"), lambda: sky_truth(inp.path(STAGE, "sky")))


@register(
    "population_lenses_scored",
    STAGE,
    "number of the second sky's catalogued lenses whose stamps passed the quality verdict and were scored "
    "(rows of population/lenses.parquet)",
    reads=("population.lenses",),
    threshold=Threshold(
        f"fail < {MIN_SCORED}",
        "ours",
        "a closure on fewer lenses has a binomial interval of ±0.15 or wider on the detected fraction; the "
        "stage still writes its table, so the gate does not block",
    ),
    blocking=False,
)
def population_lenses_scored(inp: Any) -> Gate:
    lenses = inp.table(STAGE, "lenses", ("detected",))
    n = len(lenses)
    return Gate(
        name="population_lenses_scored",
        value=n,
        fail=MIN_SCORED,
        higher_is_better=True,
        message=f"{n} lenses scored, {int(lenses.detected.sum())} detected at the operating threshold",
    )


@register(
    "population_differs",
    STAGE,
    "how much fainter the second sky's rendered lenses' unlensed source r magnitudes are than the run's "
    "sky's (Hodges–Lehmann shift: the median of all pairwise differences; both truth tables)",
    reads=("population.sky", "sky.truth"),
    threshold=Threshold(
        "fail when the shift is short of half of {population.src_mag_offset} (in its direction)",
        "ours",
        "the second population must differ from the first as configured, or the closure on it tests nothing "
        "new; half the offset leaves room for the sampling noise of a few bricks (the shift scatters ±0.15 "
        "mag on the small demo's ~60 vs ~100 lenses). It does not block: the table is still written and the "
        "report shows the miss",
    ),
    blocking=False,
)
def population_differs(inp: Any) -> Gate:
    offset = float(inp.config.population.src_mag_offset)
    variant = true_lenses(_variant_truth(inp)).src_mag_r.to_numpy(float)
    base = true_lenses(inp.table("sky", "truth", ("kind", "src_mag_r"))).src_mag_r.to_numpy(float)
    shift = source_shift(variant, base)
    return Gate(
        name="population_differs",
        value=shift,
        fail=offset / 2,
        higher_is_better=offset >= 0,
        detail={"n_variant": int(len(variant)), "n_base": int(len(base)), "configured_offset": offset},
        message=f"second sky's lens sources {shift:+.2f} mag vs the run's sky ({len(variant)} vs {len(base)} "
        f"rendered lenses; configured {offset:+.2f})",
    )


# -- closure on the second population -----------------------------------------------------------------------
for _what in CLOSURE_THRESHOLDS:
    register(
        f"population_closure_{_what}",
        STAGE,
        f"closure on the second population (fainter, larger sources), as closure_{_what} on the demo sky: "
        "the run's selection function, unchanged, predicts the second sky's detections",
        reads=("population.closure",),
        threshold=CLOSURE_THRESHOLDS[_what],
        blocking=False,
    )(closure_gate(_what, STAGE, "population_closure", "the second sky"))
