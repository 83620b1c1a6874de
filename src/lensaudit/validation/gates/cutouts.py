"""Gates of the cutouts stage: the pixels are re-measured from the stamp store (``stamps.zarr``), the fetch
outcome and the quality verdicts the training uses are read from ``stamps.parquet``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.gates import Gate, Status
from lensaudit.stamps.fetch import failure_reasons, quality_verdict, store_quality
from lensaudit.validation.registry import Threshold, register

STAGE = "cutouts"
#: the design's limit on bad pixels in a training stamp
DESIGN_MAX_BAD_PIXEL_FRAC = 0.02


def _index(inp: Any) -> pd.DataFrame:
    return inp.table(STAGE, "index").sort_values("row").reset_index(drop=True)


def _measured(inp: Any) -> pd.DataFrame:
    """The quality metrics of every stamp, measured from the store, in row order."""
    radius = inp.config.cutouts.central_nan_radius_pix
    return inp._cached(
        ("cutouts", "store_quality"), lambda: store_quality(inp.store(STAGE, "stamps"), radius)
    )


@register(
    "fraction_ok",
    STAGE,
    "fraction of the sample's stamps usable: fetched, no NaN within cutouts.central_nan_radius_pix, bad "
    "pixels ≤ cutouts.max_bad_pixel_frac (measured from the store)",
    reads=("cutouts.stamps", "cutouts.index"),
    threshold=Threshold("fail < {cutouts.min_ok_fraction}", "ours", "most of the sample must reach training"),
)
def fraction_ok(inp: Any) -> Gate:
    idx, m = _index(inp), _measured(inp)
    ok = quality_verdict(
        (idx.status != "failed").to_numpy(),
        m.central_nan.to_numpy(),
        m.bad_pixel_frac.to_numpy(),
        inp.config.cutouts.max_bad_pixel_frac,
    )
    reasons = failure_reasons(idx)
    return Gate(
        name="fraction_ok",
        value=float(ok.mean()) if len(ok) else 0.0,
        fail=inp.config.cutouts.min_ok_fraction,
        higher_is_better=True,
        detail=reasons,
        message="failures: " + "; ".join(f"{k} ×{v}" for k, v in list(reasons.items())[:5]),
    )


@register(
    "bad_pixel_frac_quality_ok",
    STAGE,
    "largest bad-pixel fraction (NaN, invvar ≤ 0 or masked; measured from the store) among the stamps "
    "stamps.parquet marks quality-ok, i.e. the training stamps",
    reads=("cutouts.stamps", "cutouts.index"),
    threshold=Threshold(
        f"fail > {DESIGN_MAX_BAD_PIXEL_FRAC}",
        "design",
        "the design allows ≤ 2% bad pixels in a training stamp (cutouts.max_bad_pixel_frac is the cut)",
    ),
    blocking=False,
)
def bad_pixel_frac_quality_ok(inp: Any) -> Gate:
    idx, m = _index(inp), _measured(inp)
    bad = m.bad_pixel_frac.to_numpy()[idx.quality_ok.to_numpy(bool)]
    over = int((bad > DESIGN_MAX_BAD_PIXEL_FRAC).sum())
    return Gate(
        name="bad_pixel_frac_quality_ok",
        value=float(bad.max()) if len(bad) else float("nan"),
        fail=DESIGN_MAX_BAD_PIXEL_FRAC,
        message=f"{over} of {len(bad)} quality-ok stamps above {DESIGN_MAX_BAD_PIXEL_FRAC:.0%} bad pixels "
        f"(cut: cutouts.max_bad_pixel_frac = {inp.config.cutouts.max_bad_pixel_frac})",
    )


def _two_sided(value: float, warn: tuple[float, float], fail: tuple[float, float]) -> Status:
    """pass inside ``warn``, warn inside ``fail``, fail outside (and for NaN)."""
    if not np.isfinite(value) or not fail[0] <= value <= fail[1]:
        return "fail"
    return "pass" if warn[0] <= value <= warn[1] else "warn"


@register(
    "core_brightness_ratio_pos_neg",
    STAGE,
    "median inner-core (r < 3 px) r flux of quality-ok positives over negatives (measured from the store)",
    reads=("cutouts.stamps", "cutouts.index"),
    threshold=Threshold(
        "warn outside {cutouts.core_ratio_bounds}, fail outside {cutouts.core_ratio_fail_bounds}",
        "ours",
        "brightness-matched strata leave deflectors alike; a core brighter in lenses is a shortcut",
    ),
    blocking=False,
)
def core_brightness_ratio(inp: Any) -> Gate:
    cfg = inp.config.cutouts
    idx, m = _index(inp), _measured(inp)
    ok = idx.quality_ok.to_numpy(bool)
    core, label = m.core3_r.to_numpy()[ok], idx.label.to_numpy()[ok]
    pos, neg = core[label == 1], core[label == 0]
    ratio = (
        float(np.median(pos) / np.median(neg))
        if len(pos) and len(neg) and np.median(neg) > 0
        else float("nan")
    )
    status = _two_sided(ratio, tuple(cfg.core_ratio_bounds), tuple(cfg.core_ratio_fail_bounds))
    return Gate(
        name="core_brightness_ratio_pos_neg",
        value=ratio,
        forced=status,
        detail={
            "warn_outside": list(cfg.core_ratio_bounds),
            "fail_outside": list(cfg.core_ratio_fail_bounds),
        },
        message="median inner-core (r<3 px) r flux, positives/negatives: a shortcut warning sign outside "
        f"{cfg.core_ratio_bounds[0]}–{cfg.core_ratio_bounds[1]}, a failure outside "
        f"{cfg.core_ratio_fail_bounds[0]}–{cfg.core_ratio_fail_bounds[1]}",
    )
