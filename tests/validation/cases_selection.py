"""Passing and failing cases of the selection gates, from small artifacts made by the stage's own functions:
scored injections (with source and arc magnitudes) → the conditional tables, the 3-D marginal, the lookup
table (FITS + Parquet) and the robustness table; the closure ladder on true lenses drawn from the table;
the inject stage's realism.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.config import load_config
from lensaudit.gates import Gate
from lensaudit.selection import conditional
from lensaudit.selection.completeness import provenance
from lensaudit.selection.grid import grid_of
from lensaudit.selection.robustness import robustness
from lensaudit.utils import atomic_write_json
from lensaudit.validation import Inputs

GRID = {"theta_e_grid": (0.5, 3.0, 0.5), "psf_grid": (1.0, 1.6, 0.3), "depth_grid": (24.0, 24.0, 0.5)}
OVERRIDES = tuple(f"inject.{k}=[{', '.join(map(str, v))}]" for k, v in GRID.items()) + (
    "selection.n_min=20",
    "inject.morphology_bracket=true",
    "inject.host_bracket=true",
)
N_MAIN, N_VARIANT = 140, 40
#: the paired variants of the default config (inject.psf_beta_bracket, inject.inner_image_ablation)
PAIRED = ["psf_beta_2.5", "psf_beta_4.5", "no_inner"]

#: completeness model C(θE, PSF FWHM, m_src): rises with θE, falls with the PSF and with the magnitude
Model = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def expected(te: np.ndarray, psf: np.ndarray, m: np.ndarray) -> np.ndarray:
    top = np.clip(0.5 + 0.2 * te - 0.4 * (psf - 1.0), 0.05, 0.98)
    return top / (1 + np.exp((m - 24.0) / 0.6))


def _injections(model: Model, shifts: dict[str, float], mag_range: tuple[float, float]) -> pd.DataFrame:
    """Scored injections: per cell N_MAIN main ones and N_VARIANT of each bracket, source magnitudes spread
    evenly over ``mag_range``, each detected with the model's probability (+ the variant's shift)."""
    grid, _ = grid_of(load_config(None, list(OVERRIDES)).inject)
    rng = np.random.default_rng(1)
    parts = []
    for c in grid.itertuples():
        for v, n in (("main", N_MAIN), ("morphology", N_VARIANT), ("allhosts", N_VARIANT)):
            m = mag_range[0] + (np.arange(n) + 0.5) / n * (mag_range[1] - mag_range[0])
            p = np.clip(model(np.full(n, c.theta_e), np.full(n, c.psf_fwhm), m) + shifts.get(v, 0.0), 0, 1)
            parts.append(
                pd.DataFrame(
                    {
                        "variant": v,
                        "cell": c.cell,
                        "index": np.arange(n),
                        "theta_e": c.theta_e,
                        "source_model": "sersic",
                        "src_mag_r": m,
                        "arc_mag_r": m - 2.5 * np.log10(10.0),
                        "detected": rng.random(n) < p,
                    }
                )
            )
        main = parts[-3]
        for (
            v
        ) in PAIRED:  # the same injections re-rendered: the same detections unless the variant shifts them
            rep = main[main["index"] < N_VARIANT].assign(variant=v)
            if shifts.get(v):
                p = np.clip(rep.detected.to_numpy(float) + shifts[v], 0, 1)
                rep = rep.assign(detected=rng.random(len(rep)) < p)
            parts.append(rep)
    return pd.concat(parts, ignore_index=True)


def _lenses(model: Model, n: int, ok: bool, theta_max: float) -> pd.DataFrame:
    """True lenses in the grid's range, detected with the completeness model's probability (or never)."""
    rng = np.random.default_rng(2)
    lz = pd.DataFrame(
        {
            "theta_e_arcsec": rng.uniform(0.5, theta_max, n),
            "psf_fwhm_r": rng.uniform(1.0, 1.6, n),
            "psfdepth_mag_r": 24.0,
            "src_mag_r": rng.uniform(22.0, 25.5, n),
        }
    )
    lz["arc_mag_r"] = lz.src_mag_r - 2.5 * np.log10(10.0)
    p = model(lz.theta_e_arcsec.to_numpy(), lz.psf_fwhm_r.to_numpy(), lz.src_mag_r.to_numpy())
    lz["score"] = (rng.random(n) < p).astype(float) if ok else 0.0
    return lz


def _run(
    root: Path,
    *overrides: str,
    model: Model = expected,
    shifts: dict[str, float] | None = None,
    realism: str = "pass",
    closure_ok: bool = True,
    theta_max: float = 3.0,
) -> Inputs:
    run = Run(root, *OVERRIDES, *overrides)
    icfg, cfg = run.config.inject, run.config.selection
    grid, _ = grid_of(icfg)
    inj = _injections(model, shifts or {}, icfg.src_mag_r_range)
    run.table("selection", "injection_scores", inj)
    # the realism verdict the stage computed under, and the realism gates it came from
    g = Gate(
        name="arc_snr_p50_ratio", value=1.0 if realism == "pass" else 5.0, lo=0.5, hi=2.0, blocking=False
    )
    verdict = "GO" if g.status != "fail" else "NO-GO"
    run.json("inject", "realism", {"gates": [g.to_dict()], "verdict": verdict})
    meta = provenance(icfg, cfg, "0" * 64, 0.5, "fpr=0.01", verdict)
    tables = conditional.build_tables(grid, inj, icfg, cfg, meta)
    tables.chosen(cfg).write(run.path("selection", "table_fits"), run.path("selection", "table"))
    run.table("selection", "marginal", tables.marginal)
    sf_src = tables.by_axis["src_mag"]
    run.table(
        "selection",
        "robustness",
        robustness(grid, inj, cfg, tables.marginal, sf_src, icfg.src_mag_r_range, PAIRED),
    )
    lenses = _lenses(model, 600, closure_ok, theta_max)
    atomic_write_json(run.path("selection", "closure"), conditional.closure_record(tables, cfg, lenses, 0.5))
    return run.inputs()


def good(root: Path) -> Inputs:
    return _run(root)


def falls_with_theta_e(root: Path) -> Inputs:
    return _run(root, model=lambda te, psf, m: np.clip(0.95 - 0.3 * te, 0.02, 0.98) + 0 * m)


def rises_with_psf(root: Path) -> Inputs:
    return _run(root, model=lambda te, psf, m: np.clip(0.1 + 1.2 * (psf - 1.0), 0.02, 0.98) + 0 * m)


def narrow_prior_on_a_step(root: Path) -> Inputs:
    """A 1-mag injection prior centred on a sharp completeness step: the marginal is all prior."""
    step: Model = lambda te, psf, m: np.where(m < 23.8, 0.95, 0.0)  # noqa: E731
    return _run(root, "inject.src_mag_r_range=[23.5, 24.5]", "selection.mag_bin_width=0.25", model=step)


CASES = {
    "cells_sufficient": (good, lambda root: _run(root, "selection.n_min=1000")),
    "ci68_width": (good, lambda root: _run(root, "selection.max_ci68_width=0.02")),
    "completeness_rises_with_theta_e": (good, falls_with_theta_e),
    "completeness_falls_with_psf": (good, rises_with_psf),
    "prior_sensitivity_max_shift": (good, narrow_prior_on_a_step),
    "morphology_bracket_max_shift": (good, lambda root: _run(root, shifts={"morphology": -1.0})),
    "host_bracket_max_shift": (good, lambda root: _run(root, shifts={"allhosts": -1.0})),
    "psf_beta_bracket_max_shift": (good, lambda root: _run(root, shifts={"psf_beta_4.5": -1.0})),
    "realism_verdict": (good, lambda root: _run(root, realism="fail")),
    "closure_theta_bins": (good, lambda root: _run(root, theta_max=1.2)),
    "closure_fraction_within_1sigma": (good, lambda root: _run(root, closure_ok=False)),
    "closure_chi2_pvalue": (good, lambda root: _run(root, closure_ok=False)),
    "closure_total_pull": (good, lambda root: _run(root, closure_ok=False)),
}
