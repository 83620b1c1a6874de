"""The synthetic sky: exact file formats, determinism, WCS, and the realism check."""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.io import fits

from lensaudit.config import SkyConfig
from lensaudit.sky.build import build_sky, lens_sources
from lensaudit.survey.bricks import brick_center, brickid_from_radec, brickname_from_radec
from lensaudit.survey.sweeps import SWEEP_COLUMNS, numpy_dtype, read_sweep


def test_sweep_files_have_the_exact_schema(tiny_sky):
    files = sorted((tiny_sky / "sweep").glob("sweep-*.fits"))
    assert files
    for f in files:
        with fits.open(f) as h:
            assert len(h) == 2 and h[0].data is None
            assert h[1].header["EXTNAME"] == "SWEEP"
            for k in ("RAMIN", "RAMAX", "DECMIN", "DECMAX"):
                assert k in h[0].header
            assert list(h[0].header.keys())[4:] == sorted(
                list(h[0].header.keys())[4:]
            )  # after the mandatory cards
            cols = h[1].columns
            assert cols.names == [c[0] for c in SWEEP_COLUMNS]
            for (name, tform, unit), col in zip(SWEEP_COLUMNS, cols):
                assert col.format == tform, name
                assert (col.unit or "") == unit, name
            data = h[1].data
            for name, tform, _ in SWEEP_COLUMNS:
                want = numpy_dtype(tform).base.kind
                assert data[name].dtype.base.kind in ({"S", "U"} if want == "S" else {want}), name
        ramin = fits.getheader(f)["RAMIN"]
        assert f.name.startswith(f"sweep-{ramin:03g}")


def test_catalogue_rows_are_consistent(tiny_sky):
    df = pd.concat([read_sweep(f) for f in sorted((tiny_sky / "sweep").glob("*.fits"))])
    assert set(df.TYPE) <= {"PSF", "REX", "EXP", "DEV", "SER"} and len(set(df.TYPE)) >= 4
    assert (brickname_from_radec(df.RA.to_numpy(), df.DEC.to_numpy()) == df.BRICKNAME.to_numpy()).all()
    assert (brickid_from_radec(df.RA.to_numpy(), df.DEC.to_numpy()) == df.BRICKID.to_numpy()).all()
    assert not df.duplicated(["BRICKID", "OBJID"]).any()
    assert (df.PSFDEPTH_R > 0).all() and (df.PSFSIZE_G > df.PSFSIZE_R).mean() > 0.4
    assert ((df.MASKBITS & 0b10) != 0).any() or ((df.MASKBITS & (1 << 11)) != 0).any()  # stars masked around


def test_coadd_files_layout_and_wcs_roundtrip(tiny_sky):
    truth = pd.read_parquet(tiny_sky / "truth.parquet")
    name = truth.brickname.iloc[0]
    b = brick_center(name)
    d = tiny_sky / "coadd" / name[:3] / name
    with fits.open(d / f"legacysurvey-{name}-image-r.fits.fz") as h:
        assert h[0].data is None and isinstance(h[1], fits.CompImageHDU)
        hdr = h[1].header
        assert hdr["BUNIT"] == "nanomaggy" and hdr["MAGZERO"] == 22.5 and hdr["BRICK"] == name
        assert hdr["CRVAL1"] == b.ra and hdr["CRVAL2"] == b.dec and hdr["CD1_1"] < 0
        assert hdr["CRPIX1"] == (hdr["NAXIS1"] + 1) / 2
        from astropy.wcs import WCS

        w = WCS(hdr)
        rng = np.random.default_rng(0)
        x, y = rng.uniform(0, hdr["NAXIS1"], 100), rng.uniform(0, hdr["NAXIS2"], 100)
        ra, dec = w.wcs_pix2world(x, y, 0)
        x2, y2 = w.wcs_world2pix(ra, dec, 0)
        assert np.max(np.hypot(x2 - x, y2 - y)) < 0.01
    with fits.open(d / f"legacysurvey-{name}-invvar-g.fits.fz") as h:
        assert h[1].header["BUNIT"] == "1/nanomaggy^2"
    with fits.open(d / f"legacysurvey-{name}-maskbits.fits.fz") as h:
        assert h[1].header["EXTNAME"] == "MASKBITS" and h[1].data.dtype.kind == "i"


def test_lenses_csv_is_lenscat_format_and_in_truth(tiny_sky):
    lenses = pd.read_csv(tiny_sky / "lenses.csv")
    assert list(lenses.columns) == ["name", "RA [deg]", "DEC [deg]", "zlens", "type", "grading", "ref"]
    assert len(lenses) >= 8 and set(lenses.grading) <= {"confident", "probable"}
    truth = pd.read_parquet(tiny_sky / "truth.parquet")
    lens_truth = truth[truth.in_lenses_csv]
    assert len(lens_truth) == len(lenses) and lens_truth.theta_e_arcsec.between(0.6, 3.0).all()
    assert (truth.kind == "ring").any() and (truth.kind == "star").any()


def test_truth_carries_each_lens_source_size_and_lens_sources_redraws_it(tiny_sky, tiny_sky_config):
    truth = pd.read_parquet(tiny_sky / "truth.parquet")
    lens = truth[truth.kind == "lens"]
    # the composite source's half-light radius: components of 0.06–0.3″ spread by 0.12″ offsets
    assert lens.src_rhalf_arcsec.between(0.04, 0.6).all()
    assert truth.loc[truth.kind != "lens", "src_rhalf_arcsec"].isna().all()
    # drawn again without rendering, the same lenses with the same sizes
    redrawn = lens_sources(tiny_sky_config, seed=7)
    key = ["brickname", "theta_e_arcsec", "src_mag_r", "src_rhalf_arcsec"]
    pd.testing.assert_frame_equal(
        redrawn.sort_values(key).reset_index(drop=True), lens[key].sort_values(key).reset_index(drop=True)
    )


def test_same_seed_same_bytes(tmp_path):
    cfg = SkyConfig(n_bricks=1, brick_pixels=300, lenses_per_brick=3, confusers_per_brick=5, workers=1)
    build_sky(tmp_path / "a", cfg, seed=3, workers=1)
    build_sky(tmp_path / "b", cfg, seed=3, workers=1)
    fa = sorted((tmp_path / "a" / "sweep").glob("*.fits"))
    assert fa and all(f.read_bytes() == (tmp_path / "b" / "sweep" / f.name).read_bytes() for f in fa)
    build_sky(tmp_path / "c", cfg, seed=4, workers=1)
    assert fa[0].read_bytes() != next((tmp_path / "c" / "sweep").glob("*.fits")).read_bytes()


def test_realism_check_runs_and_noise_matches_depth(tiny_sky):
    from lensaudit.sky.check import check_sky

    gates = {g.name: g for g in check_sky(tiny_sky)}
    for b in "grz":
        assert gates[f"background_mad_{b}_vs_depth"].status == "pass"
    assert gates["mad_r_vs_real_cutouts"].status == "pass"
