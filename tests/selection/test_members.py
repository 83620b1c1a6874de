"""The per-model selection function (lensaudit.selection.members): each model's detections at its own
threshold, only the main-prior injections counted, and the pairwise |ΔC| summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection.grid import grid_of
from lensaudit.selection.members import compare, member_tables, model_summary
from lensaudit.train.infer import sigmoid

ICFG = InjectConfig(theta_e_grid=(1.0, 2.0, 1.0), psf_grid=(1.2, 1.2, 0.3), depth_grid=(24.5, 24.5, 0.5))
SCFG = SelectionConfig(n_min=10)


def _inj(n_main: int = 20, n_paired: int = 5) -> pd.DataFrame:
    grid, _ = grid_of(ICFG)
    rows = [(c, v) for c in grid.cell for v in ["main"] * n_main + ["psf_beta_2.5"] * n_paired]
    inj = pd.DataFrame(rows, columns=["cell", "variant"])
    rng = np.random.default_rng(0)
    src = rng.uniform(*ICFG.src_mag_r_range, len(inj))
    return inj.assign(src_mag_r=src, arc_mag_r=src - 2.5 * np.log10(rng.uniform(2, 20, len(inj))))


def test_each_model_at_its_own_threshold_main_rows_only():
    inj = _inj()
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, len(inj)).astype(np.float32)
    b = (a + rng.normal(0, 1, len(inj))).astype(np.float32)
    thr = {"member:a": 0.5, "member:b": 0.7}
    t = member_tables(inj, None, {"member:a": a, "member:b": b}, thr, ICFG, SCFG, "fpr=0.01")
    assert len(t) == 2 * 2 and (t.n == 20).all()
    main = (inj.variant == "main").to_numpy()
    for name, z in (("member:a", a), ("member:b", b)):
        det = (sigmoid(z) >= thr[name])[main]
        want = pd.Series(det).groupby(inj.cell[main].to_numpy()).sum().tolist()
        assert t[t.model == name].k.tolist() == want
    s = model_summary(t)
    assert s["member:b"]["threshold"] == 0.7 and s["member:a"]["cells_sufficient"] == 2
    pair = compare(t)["member:a | member:b"]
    dc = np.abs(t[t.model == "member:a"].c_mean.to_numpy() - t[t.model == "member:b"].c_mean.to_numpy())
    assert pair["n_cells"] == 2 and pair["max_abs_dc"] == dc.max() and pair["median_abs_dc"] == np.median(dc)


def test_identical_models_do_not_differ_and_insufficient_cells_are_left_out():
    inj = _inj(n_main=6)  # below n_min: no cell is sufficient
    z = np.zeros(len(inj), np.float32)
    t = member_tables(inj, None, {"x": z, "y": z}, {"x": 0.5, "y": 0.5}, ICFG, SCFG, "fpr=0.01")
    assert t.insufficient.all()
    assert compare(t)["x | y"] == {
        "n_cells": 0,
        "median_abs_dc": None,
        "max_abs_dc": None,
        "n_beyond_1sigma": 0,
    }
