"""The closure test can fail: a wrong operating threshold, or a table marginalised over the wrong source
population, is caught; the right conditional table closes. Injections and true lenses share one finder
(a score that rises with the arc's brightness and θE), drawn independently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.selection import conditional
from lensaudit.selection.closure import closure_of, predict
from lensaudit.selection.completeness import provenance
from lensaudit.validation.gates.selection import closure_gates

OVERRIDES = [
    "inject.theta_e_grid=[0.5, 3.0, 0.5]",
    "inject.psf_grid=[1.0, 1.6, 0.3]",
    "inject.depth_grid=[24.0, 24.0, 0.5]",
    "inject.src_mag_r_range=[20.0, 27.0]",
    "selection.n_min=20",
]


def _score(te: np.ndarray, psf: np.ndarray, m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The 'finder': a logistic score of the source magnitude, θE and seeing, with scatter."""
    z = (24.0 - m) / 0.5 + 1.2 * (te - 1.0) - 2.0 * (psf - 1.0) + rng.normal(0, 1.0, len(m))
    return 1 / (1 + np.exp(-z))


@pytest.fixture(scope="module")
def world(grid_injections):
    rng = np.random.default_rng(11)
    # 2000 per cell, a precise table: the test is of the method, the binomial scatter of the lenses stays
    icfg, scfg, grid, inj = grid_injections(OVERRIDES, 2000, rng)
    inj["host_galaxy_id"] = np.random.default_rng(12).integers(0, 400, len(inj))  # shared, no host effect
    inj["score"] = _score(inj.theta_e.to_numpy(), inj.psf_fwhm.to_numpy(), inj.src_mag_r.to_numpy(), rng)
    nl = 1500
    lenses = pd.DataFrame(
        {
            "theta_e_arcsec": rng.uniform(0.6, 3.0, nl),
            "psf_fwhm_r": rng.uniform(1.0, 1.6, nl),
            "psfdepth_mag_r": 24.0,
            "src_mag_r": rng.uniform(21.5, 24.5, nl),  # a population unlike the injection prior
        }
    )
    lenses["arc_mag_r"] = lenses.src_mag_r - 2.5
    lenses["score"] = _score(
        lenses.theta_e_arcsec.to_numpy(), lenses.psf_fwhm_r.to_numpy(), lenses.src_mag_r.to_numpy(), rng
    )
    return icfg, scfg, grid, inj, lenses


def _tables(world, op: float):
    icfg, scfg, grid, inj, _ = world
    meta = provenance(icfg, scfg, "0" * 64, op, f"score={op}", "GO")
    return conditional.build_tables(grid, inj.assign(detected=inj.score >= op), icfg, scfg, meta)


def _status(clo: dict, what: str) -> str:
    return next(g.status for g in closure_gates(clo, "closure", "test") if g.name.endswith(what))


def test_the_conditional_table_closes_on_a_population_unlike_the_prior(world):
    lenses = world[4]
    clo = closure_of(_tables(world, 0.5).by_axis["src_mag"], lenses, 0.5, "src_mag_r")
    assert len(clo["theta_bins"]) >= 5 and clo["chi2_dof"] >= 5
    assert abs(clo["total"]["pull"]) <= 2 and clo["chi2_pvalue"] >= 0.01
    assert clo["total"]["sigma_table"] > 0 and clo["total"]["sigma_binomial"] > 0
    assert _status(clo, "total_pull") == "pass"


def test_a_shifted_operating_threshold_fails_the_closure(world):
    """The table is measured at 0.5; the lenses are counted at a threshold that moves completeness by
    ≥ 0.1."""
    lenses = world[4]
    sf = _tables(world, 0.5).by_axis["src_mag"]
    op_shifted = 0.85
    c_at = lambda op: float((lenses.score >= op).mean())  # noqa: E731
    assert c_at(0.5) - c_at(op_shifted) >= 0.1
    clo = closure_of(sf, lenses, op_shifted, "src_mag_r")
    assert _status(clo, "total_pull") == "fail"
    assert clo["predictive"]["p_as_bad"]["abs_total_pull"] < 0.01  # no correct table does this badly
    assert _status(clo, "chi2_pvalue") == "fail"
    # the host bootstrap (the default σ of the table's part) does not hide it either
    rec = conditional.closure_record(_tables(world, 0.5), world[1], lenses, op_shifted, seed=1)
    assert rec["table_sigma"] == "host bootstrap"
    assert _status(rec, "total_pull") == "fail"


def test_the_host_bootstrap_sees_injections_that_share_hosts(world):
    """Without a host effect the host bootstrap's table σ is of the Beta posterior's size; when detection
    depends on the host and a cell's injections share a few hosts, the Beta posterior (independent draws)
    understates the table's uncertainty and the bootstrap does not."""
    icfg, scfg, grid, inj, lenses = world
    rec = conditional.closure_record(_tables(world, 0.5), scfg, lenses, 0.5, seed=3)
    t = rec["total"]
    assert 0.5 < t["sigma_table_hosts"] / t["sigma_table_beta"] < 2.0
    assert t["sigma_table"] == t["sigma_table_hosts"]
    rng = np.random.default_rng(5)
    host = rng.integers(0, 12, len(inj))
    offset = rng.normal(0, 1.5, 12)[host]
    z = np.log(inj.score / (1 - inj.score)) + offset
    shared = inj.assign(host_galaxy_id=host, score=1 / (1 + np.exp(-z)))
    meta = provenance(icfg, scfg, "0" * 64, 0.5, "score=0.5", "GO")
    tables = conditional.build_tables(grid, shared.assign(detected=shared.score >= 0.5), icfg, scfg, meta)
    t = conditional.closure_record(tables, scfg, lenses, 0.5, seed=3)["total"]
    assert t["sigma_table_hosts"] > 3 * t["sigma_table_beta"]
    off = conditional.closure_record(
        tables, scfg.model_copy(update={"closure_host_bootstrap": 0}), lenses, 0.5
    )
    assert off["table_sigma"].startswith("Beta") and off["total"]["sigma_table"] == t["sigma_table_beta"]


def test_the_marginal_under_the_injection_prior_fails_where_the_conditional_closes(world):
    """Rung (a) of the ladder: the 3-D table marginalised over the broad injection prior predicts far fewer
    detections of a brighter-than-prior population than it shows; rung (b) closes."""
    icfg, scfg, *_ = world
    rec = conditional.closure_record(_tables(world, 0.5), scfg, world[4], 0.5)
    rungs = {r["rung"]: r for r in rec["ladder"]}
    assert abs(rungs["marginal"]["pull"]) > 3 and abs(rungs["src_mag"]["pull"]) <= 2
    assert (
        rec["condition_on"] == scfg.condition_on and rec["total"] == rec["rungs"][scfg.condition_on]["total"]
    )


def test_host_intervals_are_written_and_wider_when_hosts_are_shared(world, tmp_path):
    """The tables carry the host bootstrap's 68% interval beside the Beta posterior's, through FITS and
    Parquet; with a strong host effect it is the wider one."""
    from lensaudit.selection.table import SelectionFunction

    icfg, scfg, grid, inj, _ = world
    rng = np.random.default_rng(5)
    host = rng.integers(0, 12, len(inj))
    z = np.log(inj.score / (1 - inj.score)) + rng.normal(0, 1.5, 12)[host]
    shared = inj.assign(host_galaxy_id=host, detected=z >= 0)
    meta = provenance(icfg, scfg, "0" * 64, 0.5, "score=0.5", "GO")
    built = conditional.build_tables(grid, shared, icfg, scfg, meta)
    tables = conditional.with_host_intervals(built, conditional.replicates(built, scfg, seed=2))
    m = tables.marginal[~tables.marginal.insufficient]
    assert np.median(m.c_hi68_hosts - m.c_lo68_hosts) > 2 * np.median(m.c_hi68 - m.c_lo68)
    sf = tables.by_axis["src_mag"]
    sf.write(tmp_path / "t.fits", tmp_path / "t.parquet")
    for back in (SelectionFunction.load(tmp_path / "t.fits"), SelectionFunction.load(tmp_path / "t.parquet")):
        np.testing.assert_allclose(back.table.c_lo68_hosts, sf.table.c_lo68_hosts, equal_nan=True)


def test_the_predictive_check_says_how_often_a_correct_table_passes(world):
    """The closure's predictive check (a correct table's pass rate) matches the pass rate of lens
    populations actually drawn from the table."""
    lenses = world[4]
    sf = _tables(world, 0.5).by_axis["src_mag"]
    p, _ = predict(sf, lenses, "src_mag_r")
    ok = np.isfinite(p)
    lz, p = lenses[ok].reset_index(drop=True), p[ok]
    rng = np.random.default_rng(5)
    within = []
    for _ in range(150):  # populations drawn from the table itself: the check's null, by brute force
        drawn = lz.assign(score=(rng.random(len(lz)) < p).astype(float))
        within.append(closure_of(sf, drawn, 0.5, "src_mag_r")["fraction_within_1sigma"])
    passed = np.array(within) >= 0.6
    clo = closure_of(sf, lz, 0.5, "src_mag_r")
    pr = clo["predictive"]
    assert pr["truth"] == "the table (binomial only)"  # no replicates: the brute force's own truth
    assert abs(pr["p_pass"]["fraction_within_1sigma"] - np.mean(passed)) <= 0.06  # measured 0.892 vs 0.900
    # the predictive p-value: how often a population drawn from the table does as badly as the real lenses
    as_bad = np.mean(np.array(within) <= clo["fraction_within_1sigma"])
    assert abs(pr["p_as_bad"]["fraction_within_1sigma"] - as_bad) <= 0.08
    assert 0.6 <= pr["fraction_within_1sigma_mean"] <= 0.9
    assert set(pr["p_pass"]) == {"fraction_within_1sigma", "chi2_pvalue", "abs_total_pull", "all"}
    assert set(pr["p_as_bad"]) == {"fraction_within_1sigma", "chi2_pvalue", "abs_total_pull"}


def test_the_closure_gates_quote_the_predictive_pass_rate(world):
    clo = closure_of(_tables(world, 0.5).by_axis["src_mag"], world[4], 0.5, "src_mag_r")
    msgs = {g.name: g.message for g in closure_gates(clo, "closure", "test")}
    rate = 100 * clo["predictive"]["p_pass"]["fraction_within_1sigma"]
    assert f"a correct table passes this in {rate:.0f}% of" in msgs["closure_fraction_within_1sigma"]
    bad = 100 * clo["predictive"]["p_as_bad"]["abs_total_pull"]
    assert f"does this badly or worse in {bad:.0f}%" in msgs["closure_total_pull"]


def test_the_brackets_rungs_are_rebuilt_from_the_written_artifacts(world, tmp_path):
    """Rungs (c) and (d): the host and morphology brackets' tables, built by the selection stage, and rebuilt
    from its written artifacts (as the population stage does) give the same ladder; a bracket whose sources
    are harder to find predicts fewer detections."""
    icfg, scfg, grid, inj, lenses = world
    rng = np.random.default_rng(21)
    sub = inj.groupby("cell").head(500)
    harder = _score(sub.theta_e.to_numpy(), sub.psf_fwhm.to_numpy(), sub.src_mag_r.to_numpy() + 0.5, rng)
    scored = pd.concat(
        [
            inj.assign(source_model="sersic"),
            sub.assign(variant="morphology", source_model="clumpy", score=harder),
            sub.assign(variant="allhosts", source_model="sersic"),
        ],
        ignore_index=True,
    ).assign(detected=lambda d: d.score >= 0.5)
    meta = provenance(icfg, scfg, "0" * 64, 0.5, "score=0.5", "GO")
    built = conditional.build_tables(grid, scored, icfg, scfg, meta)
    assert sorted(built.brackets) == ["allhosts", "morphology"]
    paths = [tmp_path / n for n in ("t.fits", "alt.parquet", "marginal.parquet", "scores.parquet")]
    built.chosen(scfg).write(paths[0])
    built.alternative(scfg).write_parquet(paths[1])
    built.marginal.to_parquet(paths[2])
    scored.to_parquet(paths[3])
    read = conditional.Tables.read(*paths)
    assert read.brackets == {}
    rebuilt = conditional.with_brackets(read, grid, icfg, scfg)
    ladders = [conditional.closure_record(t, scfg, lenses, 0.5, seed=4)["ladder"] for t in (built, rebuilt)]
    assert [r["rung"] for r in ladders[0]] == ["marginal", "src_mag", "arc_mag", "all_hosts", "morphology"]
    for a, b in zip(*ladders):
        assert a["rung"] == b["rung"] and a["expected"] == pytest.approx(b["expected"])
    rung = {r["rung"]: r for r in ladders[0]}
    assert "multi-clump sources instead of Sérsic" in rung["morphology"]["what"]
    assert (
        rung["morphology"]["expected"] < rung["src_mag"]["expected"] - 3 * rung["src_mag"]["sigma_binomial"]
    )
