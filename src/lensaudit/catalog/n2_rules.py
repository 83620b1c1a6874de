"""N2 hard-confuser rules: vectorised, configurable thresholds on Tractor measurements.

Each rule is a pure function of the canonical pool columns; the first matching category wins in the order of
``RULE_ORDER``. The thresholds are documented defaults, overridable per category through
``catalog.n2_rules`` (e.g. ``{"edge_on_proxy": {"max_axis_ratio": 0.25}}``). The predecessor's rule set
produced 0% N2 on real DR10 because its thresholds were unreachable; the catalog stage gates the N2 fraction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULTS: dict[str, dict[str, float]] = {
    # low-concentration, extended, poorly fit by a smooth model (ring light leaves residuals)
    "ring_proxy": {"max_sersic": 1.0, "min_shape_r": 1.2, "min_rchisq_r": 1.3, "min_g_r": 0.55},
    # thin discs seen edge-on: axis ratio from SHAPE_E1/E2, b/a = (1 − |e|)/(1 + |e|)
    "edge_on_proxy": {"max_axis_ratio": 0.30, "min_shape_r": 0.8},
    # discs with structure: exponential-like, extended, intermediate colour, residuals
    "spiral_proxy": {
        "max_sersic": 1.8,
        "min_shape_r": 1.0,
        "min_g_r": 0.35,
        "max_g_r": 0.95,
        "min_rchisq_r": 1.3,
    },
    # blue star-forming knots
    "blue_clumpy": {"max_g_r": 0.45, "min_shape_r": 0.5, "min_rchisq_r": 1.2},
    # very large galaxies (arcs of a few arcsec fit inside them)
    "large_galaxy": {"min_shape_r": 3.0},
}
RULE_ORDER = ["ring_proxy", "edge_on_proxy", "spiral_proxy", "blue_clumpy", "large_galaxy"]


def thresholds(overrides: dict[str, dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
    out = {k: dict(v) for k, v in DEFAULTS.items()}
    for cat, kv in (overrides or {}).items():
        if cat not in out:
            from lensaudit.errors import ConfigError

            raise ConfigError(f"catalog.n2_rules: unknown category {cat!r}; known: {', '.join(RULE_ORDER)}")
        for k, v in kv.items():
            if k not in out[cat]:
                from lensaudit.errors import ConfigError

                raise ConfigError(
                    f"catalog.n2_rules.{cat}: unknown threshold {k!r}; known: {', '.join(out[cat])}"
                )
            out[cat][k] = float(v)
    return out


def ring_proxy(df: pd.DataFrame, t: dict[str, float]) -> pd.Series:
    return (
        (df.sersic <= t["max_sersic"])
        & (df.shape_r >= t["min_shape_r"])
        & (df.rchisq_r >= t["min_rchisq_r"])
        & (df.g_r >= t["min_g_r"])
    )


def edge_on_proxy(df: pd.DataFrame, t: dict[str, float]) -> pd.Series:
    return (df.axis_ratio <= t["max_axis_ratio"]) & (df.shape_r >= t["min_shape_r"])


def spiral_proxy(df: pd.DataFrame, t: dict[str, float]) -> pd.Series:
    return (
        (df.sersic <= t["max_sersic"])
        & (df.shape_r >= t["min_shape_r"])
        & df.g_r.between(t["min_g_r"], t["max_g_r"])
        & (df.rchisq_r >= t["min_rchisq_r"])
    )


def blue_clumpy(df: pd.DataFrame, t: dict[str, float]) -> pd.Series:
    return (df.g_r <= t["max_g_r"]) & (df.shape_r >= t["min_shape_r"]) & (df.rchisq_r >= t["min_rchisq_r"])


def large_galaxy(df: pd.DataFrame, t: dict[str, float]) -> pd.Series:
    return df.shape_r >= t["min_shape_r"]


RULES = {
    "ring_proxy": ring_proxy,
    "edge_on_proxy": edge_on_proxy,
    "spiral_proxy": spiral_proxy,
    "blue_clumpy": blue_clumpy,
    "large_galaxy": large_galaxy,
}


def classify(df: pd.DataFrame, overrides: dict[str, dict[str, float]] | None = None) -> pd.Series:
    """N2 category per row ('' = N1), first matching rule in RULE_ORDER."""
    t = thresholds(overrides)
    cat = np.full(len(df), "", dtype=object)
    for name in reversed(RULE_ORDER):
        m = RULES[name](df, t[name]).fillna(False).to_numpy(bool)
        cat[m] = name
    return pd.Series(cat.astype(str), index=df.index, name="n2_category")


#: the Galaxy Zoo morphology (:func:`lensaudit.survey.galaxyzoo.morphology`) each Tractor-rule category stands
#: for; blue_clumpy and large_galaxy have no Galaxy Zoo counterpart (GZ DECaLS has no ring question either:
#: ring agreement needs a catalogue with a ``ring`` label)
GZ_EQUIVALENT = {"ring_proxy": "ring", "edge_on_proxy": "edge_on", "spiral_proxy": "spiral"}

#: the N2 category of hard negatives mined from the finder's own top-scoring TRAIN-split negatives (issue 20;
#: assigned by :func:`lensaudit.catalog.sampling.mining_round`, never by a Tractor rule)
MINED = "mined"
