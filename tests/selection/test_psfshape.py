"""The hosts' PSF β from their bricks' stars: the fit recovers a profile drawn by an independent renderer
(GalSim), rejects what is not a Moffat, and the plan renders every grid and stress row at its host's β."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.config import InjectConfig
from lensaudit.selection import psfshape
from lensaudit.selection.injection import plan, with_host_beta

galsim = pytest.importorskip("galsim")
PIX = 0.262


def _star(beta: float, fwhm: float, flux: float, seed: int, profile: str = "moffat") -> np.ndarray:
    """A star drawn by GalSim (pixel-integrated, sub-pixel offset) with white noise of σ = 1."""
    rng = np.random.default_rng(seed)
    psf = (
        galsim.Moffat(beta=beta, fwhm=fwhm) if profile == "moffat" else galsim.Gaussian(fwhm=fwhm)
    ).withFlux(flux)
    off = galsim.PositionD(*rng.uniform(-0.5, 0.5, 2))
    img = psf.drawImage(nx=51, ny=51, scale=PIX, offset=off).array
    return img + rng.normal(0, 1.0, img.shape)


@pytest.mark.parametrize("beta", [2.5, 3.5, 4.5])
def test_fit_recovers_galsim_moffat_beta_and_fwhm(beta):
    fits = [psfshape.fit_moffat(_star(beta, 1.3, 3e4, s), np.ones((51, 51)), PIX) for s in range(5)]
    assert all(f["ok"] for f in fits)
    assert abs(np.median([f["beta"] for f in fits]) - beta) < 0.15
    assert abs(np.median([f["fwhm_arcsec"] for f in fits]) - 1.3) < 0.03


def test_a_gaussian_star_is_not_a_measurement():
    f = psfshape.fit_moffat(_star(0, 1.3, 3e4, 0, "gaussian"), np.ones((51, 51)), PIX)
    assert not f["ok"] and f["reason"] == "a parameter at its bound"


def test_masked_stamp_is_refused():
    iv = np.ones((51, 51))
    iv[:, :30] = 0
    f = psfshape.fit_moffat(_star(3.5, 1.3, 3e4, 0), iv, PIX)
    assert not f["ok"] and "zero-weight" in f["reason"]


def test_star_selection_keeps_isolated_unmasked_point_sources_in_the_window():
    cfg = InjectConfig(psf_stars_per_brick=2)
    sw = pd.DataFrame(
        {
            "BRICKNAME": ["a"] * 6 + ["z"],
            "RA": [10.0, 10.1, 10.2, 10.3, 10.4, 10.4005, 50.0],
            "DEC": [0.0] * 7,
            "TYPE": ["PSF", "PSF", "DEV", "PSF", "PSF", "EXP", "PSF"],
            # r 18, 19.5, 18, 21 (too faint), 18 (a neighbour at 1.8″), —, 18 (other brick)
            "FLUX_R": [10 ** (-0.4 * (m - 22.5)) for m in (18.0, 19.5, 18.0, 21.0, 18.0, 22.0, 18.0)],
            "MASKBITS": [0, 0, 0, 0, 0, 0, 0],
        }
    )
    got = psfshape.select_stars(sw, {"a"}, cfg)
    assert got.ra.tolist() == [10.0, 10.1]
    masked = sw.assign(MASKBITS=[2, 0, 0, 0, 0, 0, 0])
    assert psfshape.select_stars(masked, {"a"}, cfg).ra.tolist() == [10.1]


def test_brick_betas_fall_back_to_the_config_when_nothing_is_measured():
    st = pd.DataFrame({"brickname": ["a"], "beta": [np.nan], "ok": [False]})
    b = psfshape.brick_betas(st, ["a", "b"], InjectConfig(psf_beta=3.1))
    assert b.psf_beta.tolist() == [3.1, 3.1] and set(b.source) == {"config"}


def _sample_and_index(n: int = 60) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(3)
    bricks = np.where(np.arange(n) % 2 == 0, "0001p000", "0002p000")
    gid = [f"{b}_{i}" for i, b in enumerate(bricks)]
    sample = pd.DataFrame(
        {
            "galaxy_id": gid,
            "brickname": bricks,
            "label": np.r_[np.ones(10, int), np.zeros(n - 10, int)],
            "pool": np.r_[["pos"] * 10, ["N1"] * (n - 10)],
            "split": "val",
            "type": "DEV",
            "mag_r": rng.uniform(19.0, 20.0, n),
            "g_r": rng.uniform(1.2, 1.6, n),
            "r_z": np.r_[np.linspace(0.9, 1.4, 10), rng.uniform(0.95, 1.35, n - 10)],
            "psfsize_g": 1.3,
            "psfsize_r": 1.3,
            "psfsize_z": 1.3,
            "psfdepth_mag_r": 24.5,
            "psfdepth_mag_g": 25.0,
            "psfdepth_mag_z": 23.5,
            "nobs_z": 4,
        }
    )
    index = pd.DataFrame({"galaxy_id": gid, "row": np.arange(n), "quality_ok": True})
    return sample, index


def test_plan_renders_each_host_at_its_bricks_beta():
    sample, index = _sample_and_index()
    cfg = InjectConfig(
        theta_e_grid=(1.0, 1.0, 0.5),
        psf_grid=(1.3, 1.3, 0.1),
        depth_grid=(24.5, 24.5, 0.5),
        n_per_cell=8,
        stress_n=4,
        psf_beta_bracket=(2.5,),
    )
    betas = pd.DataFrame({"brickname": ["0001p000", "0002p000"], "psf_beta": [2.7, 4.2]})
    try:
        _, pl, _ = plan(cfg, sample, index, 0, betas)
    except (KeyError, ValueError) as exc:  # the fixture must match labelled_stamps' inputs
        pytest.fail(f"plan could not run on the fixture: {exc}")
    want = pl.host_galaxy_id.str[:8].map({"0001p000": 2.7, "0002p000": 4.2})
    grid = pl.variant.isin(["main", "morphology", "allhosts", "stress"])
    assert grid.sum() > 0 and np.allclose(pl.psf_beta[grid], want[grid])
    assert (pl.psf_beta[pl.variant == "psf_beta_2.5"] == 2.5).all()
    fixed = with_host_beta(sample, None, 3.5)
    assert (fixed.psf_beta == 3.5).all()


def test_the_demo_fits_every_host_brick_and_recovers_the_skys_beta(small_demo):
    """On a real run: each host brick's β comes from its own stars, matches the β the sky rendered it with,
    and every main injection renders at its host brick's fitted β."""
    run, _, _ = small_demo
    stars = pd.read_parquet(run / "inject" / "psf_stars.parquet")
    cond = pd.read_parquet(run / "sky" / "conditions.parquet").drop_duplicates("brickname")
    good = stars[stars.ok]
    fitted = good.groupby("brickname").beta.median()
    assert len(fitted) >= 2 and good.groupby("brickname").size().min() >= InjectConfig().psf_star_min
    true = fitted.index.map(cond.set_index("brickname").moffat_beta)
    assert np.abs(fitted.to_numpy() - true.to_numpy(float)).max() < 0.2
    inj = pd.read_parquet(run / "inject" / "injections.parquet")
    main = inj[inj.variant == "main"]
    sample = pd.read_parquet(run / "sample" / "sample.parquet").set_index("galaxy_id")
    want = main.host_galaxy_id.map(sample.brickname).map(fitted)
    assert want.notna().all() and np.allclose(main.psf_beta, want)
