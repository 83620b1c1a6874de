"""Passing and failing cases of the selection gates, from small artifacts made by the stage's own functions:
scored injections → completeness table, lookup table (FITS + Parquet) and robustness table; the closure test
on a small truth table; the inject stage's realism.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.gates import Gate
from lensaudit.selection.closure import closure
from lensaudit.selection.completeness import completeness_table, lookup_table
from lensaudit.selection.grid import grid_of
from lensaudit.selection.robustness import robustness
from lensaudit.utils import atomic_write_json, write_parquet_atomic
from lensaudit.validation import Inputs

GRID = {"theta_e_grid": (0.5, 3.0, 0.5), "psf_grid": (1.0, 1.6, 0.3), "depth_grid": (24.0, 24.0, 0.5)}
OVERRIDES = tuple(f"inject.{k}=[{', '.join(map(str, v))}]" for k, v in GRID.items()) + (
    "selection.n_min=20",
    "selection.prior_variants=2",
    "inject.morphology_bracket=true",
)
N_MAIN, N_VARIANT = 40, 20

#: completeness model C(θE, PSF FWHM): rises with θE, falls with the PSF
Model = Callable[[np.ndarray, np.ndarray], np.ndarray]


def expected(te: np.ndarray, psf: np.ndarray) -> np.ndarray:
    return np.clip(0.1 + 0.25 * te - 0.4 * (psf - 1.0), 0.02, 0.98)


def _injections(model: Model, shifts: dict[str, float]) -> pd.DataFrame:
    """Scored injections: per cell N_MAIN main-prior ones and N_VARIANT of each variant, detected in the
    proportion the model (+ the variant's shift) gives, deterministically."""
    grid, _ = grid_of(InjectConfig(**GRID))
    rows = []
    for c in grid.itertuples():
        for v, n in (
            ("main", N_MAIN),
            ("bright", N_VARIANT),
            ("faint", N_VARIANT),
            ("morphology", N_VARIANT),
        ):
            p = float(
                np.clip(model(np.array([c.theta_e]), np.array([c.psf_fwhm]))[0] + shifts.get(v, 0), 0, 1)
            )
            k = int(round(p * n))
            rows += [{"variant": v, "cell": c.cell, "detected": i < k} for i in range(n)]
    return pd.DataFrame(rows)


def _run(
    root: Path,
    *overrides: str,
    model: Model = expected,
    shifts: dict[str, float] | None = None,
    realism: str = "pass",
    closure_ok: bool = True,
) -> Inputs:
    run = Run(root, *OVERRIDES, *overrides)
    icfg = InjectConfig(**GRID)
    cfg = SelectionConfig(n_min=20, prior_variants=2)
    grid, _ = grid_of(icfg)
    inj = _injections(model, shifts or {})
    run.table("selection", "injection_scores", inj)
    table = completeness_table(grid, inj[inj.variant == "main"], cfg)
    # the realism verdict the stage computed under, and the realism gates it came from
    g = Gate(
        name="arc_snr_p50_ratio", value=1.0 if realism == "pass" else 5.0, lo=0.5, hi=2.0, blocking=False
    )
    verdict = "GO" if g.status != "fail" else "NO-GO"
    run.json("inject", "realism", {"gates": [g.to_dict()], "verdict": verdict})
    sf = lookup_table(table, icfg, cfg, "0" * 64, 0.5, "fpr=0.01", verdict)
    sf.write(run.path("selection", "table_fits"), run.path("selection", "table"))
    run.table("selection", "robustness", robustness(grid, inj, cfg, table))
    # the closure test: true lenses scored so that each θE bin detects what the table expects (or none)
    rng = np.random.default_rng(0)
    n = 240
    truth = pd.DataFrame(
        {
            "galaxy_id": [f"L{i}" for i in range(n)],
            "kind": "lens",
            "theta_e_arcsec": rng.uniform(0.5, 3.0, n),
            "psf_fwhm_r": rng.uniform(1.0, 1.6, n),
            "psfdepth_mag_r": 24.0,
            "arc_snr": 10.0,
        }
    )
    p = sf.completeness(truth.theta_e_arcsec, truth.psf_fwhm_r, truth.psfdepth_mag_r)
    score = np.zeros(n)
    bins = np.digitize(truth.theta_e_arcsec, np.linspace(0.25, 3.25, 7))  # the closure test's θE bins
    for b in np.unique(bins) if closure_ok else []:
        members = np.flatnonzero(bins == b)
        k = int(round(p[members].sum()))
        score[members[np.argsort(-p[members])[:k]]] = 1.0
    write_parquet_atomic(truth, root / "truth.parquet")
    scores = pd.DataFrame({"galaxy_id": truth.galaxy_id, "label": 1, "score": score})
    write_parquet_atomic(scores, root / "scores.parquet")
    atomic_write_json(
        run.path("selection", "closure"), closure(sf, 0.5, root / "truth.parquet", root / "scores.parquet")
    )
    return run.inputs()


def good(root: Path) -> Inputs:
    return _run(root)


def falls_with_theta_e(root: Path) -> Inputs:
    return _run(root, model=lambda te, psf: np.clip(0.95 - 0.3 * te, 0.02, 0.98))


def rises_with_psf(root: Path) -> Inputs:
    return _run(root, model=lambda te, psf: np.clip(0.1 + 1.2 * (psf - 1.0), 0.02, 0.98))


CASES = {
    "cells_sufficient": (good, lambda root: _run(root, "selection.n_min=100")),
    "completeness_rises_with_theta_e": (good, falls_with_theta_e),
    "completeness_falls_with_psf": (good, rises_with_psf),
    "prior_sensitivity_max_shift": (good, lambda root: _run(root, shifts={"bright": 0.7})),
    "morphology_bracket_max_shift": (good, lambda root: _run(root, shifts={"morphology": -0.7})),
    "realism_verdict": (good, lambda root: _run(root, realism="fail")),
    "closure_fraction_within_1sigma": (good, lambda root: _run(root, closure_ok=False)),
    "closure_total_pull": (good, lambda root: _run(root, closure_ok=False)),
}
