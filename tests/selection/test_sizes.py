"""Source-size re-weighting: a finder that finds compact sources more easily, a population of compact
sources. The 4-D table averaged over the injected sizes under-predicts its detections; re-weighted to the
population's sizes it closes; re-weighted to the wrong sizes it fails again (the rung can fail)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.selection import conditional
from lensaudit.selection.closure import closure_of, host_replicates
from lensaudit.selection.completeness import provenance
from lensaudit.selection.sizes import declared_size_prior, reweighted, size_weights

OVERRIDES = [
    "inject.theta_e_grid=[0.5, 3.0, 0.5]",
    "inject.psf_grid=[1.0, 1.6, 0.3]",
    "inject.depth_grid=[24.0, 24.0, 0.5]",
    "inject.src_mag_r_range=[20.0, 27.0]",
    "inject.src_reff_arcsec_range=[0.1, 0.5]",
]


def _score(te, psf, m, r, rng) -> np.ndarray:
    """The 'finder': brighter, larger-θE, better-seen and more compact sources score higher."""
    z = (24.0 - m) / 0.5 + 1.2 * (te - 1.0) - 2.0 * (psf - 1.0) - 8.0 * (r - 0.3) + rng.normal(0, 1.0, len(m))
    return 1 / (1 + np.exp(-z))


@pytest.fixture(scope="module")
def world(grid_injections):
    rng = np.random.default_rng(31)
    icfg, scfg, grid, inj = grid_injections(OVERRIDES, 1500, rng)
    inj["src_reff"] = rng.uniform(*icfg.src_reff_arcsec_range, len(inj))
    inj["host_galaxy_id"] = rng.integers(0, 400, len(inj))
    inj["score"] = _score(inj.theta_e, inj.psf_fwhm, inj.src_mag_r, inj.src_reff, rng)
    nl = 1500
    lenses = pd.DataFrame(
        {
            "theta_e_arcsec": rng.uniform(0.6, 3.0, nl),
            "psf_fwhm_r": rng.uniform(1.0, 1.6, nl),
            "psfdepth_mag_r": 24.0,
            "src_mag_r": rng.uniform(22.0, 25.0, nl),
            "src_rhalf_arcsec": rng.uniform(0.1, 0.2, nl),  # compact: the prior's average is 0.3″
        }
    )
    lenses["arc_mag_r"] = lenses.src_mag_r - 2.5
    lenses["score"] = _score(
        lenses.theta_e_arcsec, lenses.psf_fwhm_r, lenses.src_mag_r, lenses.src_rhalf_arcsec, rng
    )
    meta = provenance(icfg, scfg, "0" * 64, 0.5, "score=0.5", "GO")
    tables = conditional.build_tables(grid, inj.assign(detected=inj.score >= 0.5), icfg, scfg, meta)
    return icfg, scfg, tables, lenses


def test_size_weights_average_one_and_follow_the_population():
    rng = np.random.default_rng(0)
    injected = rng.uniform(0.1, 0.5, 40_000)
    w = size_weights(injected, rng.uniform(0.1, 0.2, 500), (0.1, 0.5))
    assert w.mean() == pytest.approx(1.0, abs=0.03)
    assert (w[injected > 0.2] == 0).all() and (w[injected < 0.2] > 0).all()
    with pytest.raises(ValueError, match="no finite source size"):
        size_weights(injected, np.array([np.nan]), (0.1, 0.5))


def test_the_size_rung_closes_where_the_prior_average_does_not(world):
    icfg, scfg, tables, lenses = world
    rec = conditional.closure_record(tables, scfg, lenses, 0.5, seed=1, size_range=icfg.src_reff_arcsec_range)
    rungs = {r["rung"]: r for r in rec["ladder"]}
    assert rungs["src_mag"]["pull"] > 3  # compact sources: more found than the size-averaged table says
    assert abs(rungs["src_size"]["pull"]) <= 2
    assert rec["rungs"]["src_size"]["table_sigma"] == "host bootstrap"
    # the table declares its size prior (FITS PRIORRE), so the rung needs no range passed
    assert declared_size_prior(tables.chosen(scfg).meta) == icfg.src_reff_arcsec_range
    declared = conditional.closure_record(tables, scfg, lenses, 0.5, seed=1)
    assert declared["rungs"]["src_size"]["total"] == rec["rungs"]["src_size"]["total"]
    # without sizes (a sky from before they were recorded) no rung (e)
    no_size = conditional.closure_record(tables, scfg, lenses.drop(columns="src_rhalf_arcsec"), 0.5, seed=1)
    assert "src_size" not in no_size["rungs"]


def test_reweighting_to_the_wrong_sizes_fails(world):
    icfg, scfg, tables, lenses = world
    wrong = lenses.assign(src_rhalf_arcsec=np.random.default_rng(2).uniform(0.4, 0.5, len(lenses)))
    sized = conditional.size_rung(tables, scfg, wrong, icfg.src_reff_arcsec_range, seed=1)
    assert sized is not None
    clo = closure_of(sized[0], lenses, 0.5, "src_mag_r", replicates=sized[1])
    assert clo["total"]["pull"] > 5  # the table of large sources predicts still fewer detections


def test_unit_weights_change_nothing(world):
    icfg, scfg, tables, _ = world
    inj = tables.injections
    main = inj[inj.variant == "main"].assign(src_mag=inj.src_mag_r)
    sf = tables.by_axis["src_mag"]
    same = reweighted(sf, main, "src_mag", np.ones(len(main)), scfg)
    np.testing.assert_allclose(same.table.k, sf.table.k)
    np.testing.assert_allclose(same.table.c_mean, sf.table.c_mean)
    a = host_replicates(sf.table, main, "src_mag", 5, 3)
    b = host_replicates(sf.table, main, "src_mag", 5, 3, weights=np.ones(len(main)))
    np.testing.assert_array_equal(a, b)
