"""Audit metrics against hand-computed values, and the shortcut measurements in both directions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.audit import metrics as M
from lensaudit.audit.shortcuts import shortcut_metrics


def test_auc_hand_computed():
    # pairs (pos, neg): (0.9,0.1) win, (0.9,0.5) win, (0.4,0.1) win, (0.4,0.5) loss, ties none → 3/4
    assert M.roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.1, 0.5]) == pytest.approx(0.75)
    assert M.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_threshold_at_fpr_and_tpr0_tpr10():
    neg = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    t = M.threshold_at_fpr(neg, 0.1)  # one false positive allowed out of 10
    assert ((neg >= t).sum()) == 1
    assert ((neg >= M.threshold_at_fpr(neg, 0.0)).sum()) == 0
    y = np.array([1, 1, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert M.tpr_at_fp(y, s, 0) == pytest.approx(0.5)  # two of four positives before the first negative
    assert M.tpr_at_fp(y, s, 1) == pytest.approx(0.75)
    assert M.tpr_at_fp(y, s, 10) == pytest.approx(1.0)


def test_rate_jeffreys_and_ece():
    r = M.rate([True, False, False, False])
    assert r["k"] == 1 and r["n"] == 4 and r["rate"] == 0.25 and r["lo"] < 0.25 < r["hi"]
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    # equal-mass bins of 2: |0.5-0.1|·½ + |1-0.9|·½ = 0.25
    assert M.ece(p, y, bins=2) == pytest.approx(0.25)


def test_temperature_preserves_ranking():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 500)
    y = (rng.random(500) < 1 / (1 + np.exp(-z / 3))).astype(float)
    t = M.fit_temperature(z, y)
    assert t == pytest.approx(3.0, rel=0.35)


def _q(core_boost, seed=0, n=300):
    rng = np.random.default_rng(seed)
    lab = (np.arange(n) % 3 == 0).astype(int)
    d = {"label": lab}
    for r in (2, 3, 4, 8, 10, 12):
        for b in "grz":
            d[f"core{r}_{b}"] = rng.lognormal(np.log(0.02), 0.5, n) * np.where(lab == 1, core_boost, 1.0)
    for b in "grz":
        d[f"annulus_{b}"] = rng.normal(0.002, 0.001, n) + lab * 0.004
        d[f"mad_{b}"] = rng.normal(0.002, 0.0002, n)
    return pd.DataFrame(d)


def test_shortcut_measurements_see_bright_cores_and_not_matched_ones():
    bright, matched = shortcut_metrics(_q(3.0)), shortcut_metrics(_q(1.0))
    assert list(bright) == [
        "core_only",
        "core_colour",
        "annulus_only",
        "core_brightness_ratio",
        "noise_mad_ratio",
    ]
    assert bright["core_only"]["ci68"][0] > 0.7 and bright["core_brightness_ratio"] > 1.33
    assert matched["core_only"]["ci68"][0] < 0.6 and 0.75 < matched["core_brightness_ratio"] < 1.33
    assert matched["annulus_only"]["value"] > 0.8


def test_shortcut_measurements_are_seeded():
    a, b = shortcut_metrics(_q(1.5), seed=7), shortcut_metrics(_q(1.5), seed=7)
    assert a == b
