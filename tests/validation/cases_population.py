"""Pass/fail cases of the population gates: both skies' truth tables hold lenses drawn by the sky model
itself (``draw_objects`` on one real brick with the same seed, the second sky with its source variant, so the
shift is the variant's alone), and a scored-lenses table of the stage's columns; each failing case drops the
variant or most of the scored lenses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.run import ARTIFACTS
from lensaudit.selection.population import LENS_COLUMNS
from lensaudit.sky.model import Reference, SourceVariant, draw_conditions, draw_objects
from lensaudit.survey.bricks import brick_at
from lensaudit.validation import Inputs

BRICK = brick_at(150.1, 2.1)
NO_REAL = pd.DataFrame(columns=["ra", "dec", "name", "grading", "ref"])


def _truth(seed: int, src: SourceVariant) -> pd.DataFrame:
    """Truth rows (kind, src_mag_r) of one brick's objects: field galaxies and 60 lenses, not rendered."""
    ref = Reference.load()
    cond = draw_conditions(BRICK, ref, (2.5, 4.5), 0.0, seed)
    objs = draw_objects(cond, 300, ref, seed, 60, 0, 0, (0.6, 3.0), NO_REAL, src)
    return pd.DataFrame(
        {"kind": [o.kind for o in objs], "src_mag_r": [o.params.get("src_mag_r", np.nan) for o in objs]}
    )


def _lenses(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    score = rng.random(n).astype(np.float32)
    cols = {c: rng.normal(23.0, 0.5, n) for c in LENS_COLUMNS}
    cols.update(
        galaxy_id=[f"1500p020_{i}" for i in range(n)],
        brickname="1500p020",
        src_rhalf_arcsec=rng.uniform(0.1, 0.4, n),
        score=score,
        detected=score >= 0.5,
    )
    return pd.DataFrame(cols)[LENS_COLUMNS]


def make(root: Path, variant: SourceVariant, n_scored: int = 60) -> Inputs:
    run = Run(root, "population.enabled=true")
    run.table("sky", "truth", _truth(1, SourceVariant()))
    sky = run.path("population", "sky")
    sky.mkdir(parents=True, exist_ok=True)
    _truth(1, variant).to_parquet(sky / ARTIFACTS["sky"]["truth"])
    run.table("population", "lenses", _lenses(n_scored))
    return run.inputs()


CONFIGURED = SourceVariant(0.7, 1.5)

CASES = {
    # 60 scored lenses pass; 12 are too few for a closure
    "population_lenses_scored": (
        lambda p: make(p, CONFIGURED),
        lambda p: make(p, CONFIGURED, n_scored=12),
    ),
    # the second sky drawn with the configured +0.7 mag passes; drawn without the offset (a knob not passed
    # through) its sources are as bright as the run's sky's and it fails
    "population_differs": (lambda p: make(p, CONFIGURED), lambda p: make(p, SourceVariant())),
}


def closure(root: Path, ok: bool = True, theta_max: float = 3.0) -> Inputs:
    """The second sky's closure record, from the selection cases' injections and true lenses detected with
    the completeness model's probability (or never, or only at small θE)."""
    from cases_selection import OVERRIDES, _injections, _lenses, expected

    from lensaudit.selection import conditional
    from lensaudit.selection.completeness import provenance
    from lensaudit.selection.grid import grid_of
    from lensaudit.utils import atomic_write_json

    run = Run(root, *OVERRIDES, "population.enabled=true")
    icfg, cfg = run.config.inject, run.config.selection
    grid, _ = grid_of(icfg)
    inj = _injections(expected, {}, icfg.src_mag_r_range)
    meta = provenance(icfg, cfg, "0" * 64, 0.5, "fpr=0.01", "GO")
    tables = conditional.build_tables(grid, inj, icfg, cfg, meta)
    lenses = _lenses(expected, 600, ok, theta_max)
    rec = conditional.closure_record(tables, cfg, lenses, 0.5, where="the second sky")
    atomic_write_json(run.path("population", "closure"), rec)
    return run.inputs()


for _what in ("fraction_within_1sigma", "chi2_pvalue", "total_pull"):
    CASES[f"population_closure_{_what}"] = (closure, lambda p: closure(p, ok=False))
CASES["population_closure_theta_bins"] = (closure, lambda p: closure(p, theta_max=1.2))
