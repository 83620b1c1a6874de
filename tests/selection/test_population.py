"""The second lens population: the sky model's source knobs (defaults leave the demo sky's draws untouched, a
variant shifts only the sources), the second sky's config, the stage's place in the pipeline, and the stage
on the small demo (population/lenses.parquet scored by the frozen finder)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lensaudit.config import PopulationConfig, SkyConfig, load_config
from lensaudit.selection.population import (
    LENS_COLUMNS,
    arc_mag,
    catalogued_lenses,
    source_shift,
    variant_sky,
)
from lensaudit.sky.model import Reference, SkyObject, SourceVariant, draw_conditions, draw_objects
from lensaudit.survey.bricks import brick_at

BRICK = brick_at(150.1, 2.1)
NO_REAL = pd.DataFrame(columns=["ra", "dec", "name", "grading", "ref"])


@pytest.fixture(scope="module")
def ref() -> Reference:
    return Reference.load()


def _objects(ref: Reference, src: SourceVariant | None, seed: int = 11) -> list[SkyObject]:
    cond = draw_conditions(BRICK, ref, (2.5, 4.5), 0.0, seed)
    if src is None:  # the call as the demo sky made it before the knobs existed
        return draw_objects(cond, 600, ref, seed, 30, 2, 10, (0.6, 3.0), NO_REAL)
    return draw_objects(cond, 600, ref, seed, 30, 2, 10, (0.6, 3.0), NO_REAL, src)


def test_default_source_variant_draws_the_same_objects(ref):
    before, default = _objects(ref, None), _objects(ref, SourceVariant())
    assert len(before) > 100 and sum(o.kind == "lens" for o in before) >= 10
    assert before == default
    cfg = SkyConfig()
    assert (cfg.src_mag_offset, cfg.src_size_scale) == (0.0, 1.0)


def test_source_variant_shifts_magnitudes_and_scales_sizes_only(ref):
    base, var = _objects(ref, SourceVariant()), _objects(ref, SourceVariant(0.7, 1.5))
    assert len(base) == len(var)
    n_lens = 0
    for a, b in zip(base, var):
        if a.kind != "lens":
            assert a == b
            continue
        n_lens += 1
        pa, pb = a.params, b.params
        assert (a.ra, a.dec, a.flux, a.shape_r) == (b.ra, b.dec, b.flux, b.shape_r)  # the same deflector
        assert pb["src_mag_r"] == pytest.approx(pa["src_mag_r"] + 0.7, abs=1e-12)
        for band in "grz":
            assert pb["src_flux"][band] == pytest.approx(pa["src_flux"][band] * 10 ** (-0.4 * 0.7))
        assert pb["src_reff_arcsec"] == pytest.approx(1.5 * pa["src_reff_arcsec"])
        for ca, cb in zip(pa["components"], pb["components"], strict=True):
            for k in ("reff", "dx", "dy"):
                assert cb[k] == pytest.approx(1.5 * ca[k])
            for k in ("frac", "n", "e1", "e2"):
                assert cb[k] == ca[k]
        for k in ("theta_e", "lens_e1", "lens_e2", "gamma1", "gamma2", "src_x", "src_y", "name"):
            assert pb[k] == pa[k]
    assert n_lens >= 10


def test_variant_sky_copies_the_run_sky_but_size_seed_and_sources():
    sky = SkyConfig(brick_pixels=1400, lenses_per_brick=20, seed_offset=3)
    v = variant_sky(
        sky, PopulationConfig(n_bricks=2, seed_offset=1000, src_mag_offset=0.5, src_size_scale=2.0)
    )
    assert (v.n_bricks, v.seed_offset, v.src_mag_offset, v.src_size_scale) == (2, 1003, 0.5, 2.0)
    same = set(SkyConfig.model_fields) - {"n_bricks", "seed_offset", "src_mag_offset", "src_size_scale"}
    assert {k: getattr(v, k) for k in same} == {k: getattr(sky, k) for k in same}


def test_population_stage_runs_only_on_synthetic_data_when_enabled():
    from lensaudit.stages import pipeline_stages

    def names(*sets: str) -> list[str]:
        return [m.NAME for m in pipeline_stages(load_config(None, list(sets)))]

    assert "population" not in names()
    on = names("population.enabled=true")
    assert on.index("selection") < on.index("population") < on.index("failures")
    assert "population" not in names("population.enabled=true", "data.source=dr10")


def test_catalogued_lenses_take_the_catalogue_positions():
    truth = pd.DataFrame(
        {
            "kind": ["lens", "lens", "galaxy"],
            "galaxy_id": ["b_0", "", "b_1"],
            "ra": [10.0, 11.0, 12.0],
            "dec": [1.0, 2.0, 3.0],
            "src_mag_r": [23.0, 24.0, np.nan],
        }
    )
    pos = pd.DataFrame({"galaxy_id": ["b_0", "b_1"], "ra": [10.00001, 12.0], "dec": [1.00001, 3.0]})
    out = catalogued_lenses(truth, pos)
    assert out.galaxy_id.tolist() == ["b_0"]
    assert (out.ra[0], out.ra_true[0]) == (10.00001, 10.0)


def test_source_shift_and_arc_mag():
    rng = np.random.default_rng(0)
    base = rng.uniform(22.3, 25.3, 400)
    assert source_shift(rng.uniform(22.3, 25.3, 400) + 0.7, base) == pytest.approx(0.7, abs=0.15)
    assert np.isnan(source_shift(np.array([]), base))
    np.testing.assert_allclose(arc_mag(np.array([10.0, 0.0])), [20.0, np.nan])


@pytest.mark.slow
def test_population_stage_on_the_small_demo(small_demo):
    run, _, _ = small_demo
    lenses = pd.read_parquet(run / "population" / "lenses.parquet")
    assert list(lenses.columns) == LENS_COLUMNS
    assert len(lenses) > 0 and lenses.score.between(0.0, 1.0).all()
    man = json.loads((run / "population" / "_stage.json").read_text())
    assert man["status"] == "complete"
    c = man["counts"]
    assert c["bricks"] == 2 and c["lenses_scored"] == len(lenses)
    assert c["lenses_scored"] + c["lenses_dropped_quality"] == c["lenses_catalogued"] <= c["lenses_true"]
    op = man["extra"]["operating_threshold"]
    assert (lenses.detected == (lenses.score >= op)).all()
    gates = {g["name"]: g for g in man["gates"]}
    assert set(gates) == {"population_lenses_scored", "population_differs"}
    assert gates["population_differs"]["status"] == "pass"  # the second sky's sources are fainter
    truth = pd.read_parquet(run / "population" / "sky" / "truth.parquet")
    assert truth[truth.kind == "lens"].src_mag_r.min() >= 22.3 + 0.7 - 1e-9


def test_ensemble_and_mine_stages_run_only_when_enabled():
    from lensaudit.stages import pipeline_stages

    def names(*sets: str) -> list[str]:
        return [m.NAME for m in pipeline_stages(load_config(None, list(sets)))]

    assert "ensemble" not in names() and "mine" not in names()
    on = names("ensemble.enabled=true", "mine.rounds=1")
    assert on.index("failures") < on.index("ensemble") < on.index("mine") < on.index("report")
