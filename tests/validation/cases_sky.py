"""Pass/fail cases of the sky gates: a minimal real sky on disk (one DR10 brick of 400 px: compressed coadds
in the exact layout, a sweep file with the exact schema, conditions, truth and lenses.csv), rendered here with
white noise at the depth's pixel σ and Moffat stars at the brick's PSF; each failing case edits one thing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.data import reference_file
from lensaudit.survey.bricks import brick_at, sweep_filename
from lensaudit.survey.coadds import _wcs, brick_wcs_header, write_coadd_brick
from lensaudit.survey.sweeps import empty_sweep_table, write_sweep

NPIX = 400
BRICK = brick_at(150.1, 2.1)
#: per band: PSF FWHM (″), Moffat β, 5σ PSF depth (mag); r at the real sample's median depth and seeing
COND = {"g": (1.5, 3.5, 24.9), "r": (1.36, 3.5, 24.4), "z": (1.3, 3.5, 23.4)}
#: the bin of the real LRG sample our red galaxies sit in
RED_BIN = (20.5, 21.0)


def _lrg_medians() -> tuple[float, float]:
    with reference_file("lrg_tractor_sample.parquet") as f:
        lrg = pd.read_parquet(f)
    gr = lrg.g_mag - lrg.r_mag
    sel = lrg.TYPE.isin(["DEV", "SER"]) & lrg.r_mag.between(*RED_BIN) & (gr > 1.0)
    return float(np.median(gr[sel])), float(np.median(lrg.r_minus_z[sel]))


def _objects(n_red: int, n_other: int, colour_shift: float) -> pd.DataFrame:
    """Catalogued objects: 4 isolated r≈18 stars (right half), red DEV galaxies with the real sample's median
    colours and bluer REX galaxies (left half)."""
    gr, rz = _lrg_medians()
    rows = []
    for x, y in [(280, 80), (330, 180), (280, 280), (330, 350)]:
        rows.append(dict(x=x, y=y, kind="star", type="PSF", r=18.0, gr=0.6, rz=0.3))
    grid = [(20 + 22 * (i % 8), 20 + 22 * (i // 8)) for i in range(n_red + n_other)]
    for i, (x, y) in enumerate(grid):
        red = i < n_red
        rows.append(
            dict(
                x=x,
                y=y,
                kind="galaxy",
                type="DEV" if red else "REX",
                r=sum(RED_BIN) / 2 if red else 21.5,
                gr=gr + colour_shift if red else 0.5,
                rz=rz if red else 0.3,
            )
        )
    df = pd.DataFrame(rows)
    w = _wcs(brick_wcs_header(BRICK, NPIX))
    df["ra"], df["dec"] = w.wcs_pix2world(df.x.to_numpy(float), df.y.to_numpy(float), 0)
    df["objid"] = np.arange(len(df))
    return df


def make_sky(
    root: Path,
    noise_scale: float = 1.0,
    fwhm_scale: float = 1.0,
    colour_shift: float = 0.0,
    n_other: int = 20,
    n_lenses: int = 2,
) -> Run:
    from lensaudit.sky.render import moffat_kernel, pixel_sigma

    run = Run(root)
    objs = _objects(8, n_other, colour_shift)
    rng = np.random.default_rng(1)
    images, invvars = {}, {}
    for band, (fwhm, beta, depth) in COND.items():
        sig = pixel_sigma(depth, fwhm, beta)
        img = rng.normal(0.0, sig * noise_scale, (NPIX, NPIX))
        kern = moffat_kernel(fwhm * fwhm_scale, beta, 25)
        for o in objs[objs.kind == "star"].itertuples():
            mag = {"g": o.r + o.gr, "r": o.r, "z": o.r - o.rz}[band]
            img[o.y - 12 : o.y + 13, o.x - 12 : o.x + 13] += kern * 10 ** ((22.5 - mag) / 2.5)
        images[band] = img.astype(np.float32)
        invvars[band] = np.full((NPIX, NPIX), 1 / sig**2, np.float32)
    write_coadd_brick(run.path("sky", "coadds"), BRICK, images, invvars, np.zeros((NPIX, NPIX), np.int32))
    run.table(
        "sky",
        "conditions",
        pd.DataFrame(
            [
                dict(brickname=BRICK.brickname, band=b, psf_fwhm_arcsec=f, moffat_beta=be, psfdepth_mag=d)
                for b, (f, be, d) in COND.items()
            ]
        ),
    )
    run.table(
        "sky",
        "truth",
        pd.DataFrame(
            {
                "brickname": BRICK.brickname,
                "objid": objs.objid,
                "galaxy_id": BRICK.brickname + "_" + objs.objid.astype(str),
                "ra": objs.ra,
                "dec": objs.dec,
                "kind": objs.kind,
                "mag_r_true": objs.r,
            }
        ),
    )
    rows = empty_sweep_table(len(objs))
    rows["BRICKNAME"] = BRICK.brickname
    rows["BRICKID"] = BRICK.brickid
    rows["OBJID"] = objs.objid
    rows["TYPE"] = objs.type
    rows["RA"], rows["DEC"] = objs.ra, objs.dec
    for b, mag in (("G", objs.r + objs.gr), ("R", objs.r), ("Z", objs.r - objs.rz)):
        rows[f"FLUX_{b}"] = 10 ** ((22.5 - mag) / 2.5)
    write_sweep(
        run.path("sky", "sweeps") / sweep_filename(BRICK.ra, BRICK.dec),
        rows,
        BRICK.ra1,
        BRICK.dec1,
        BRICK.ra2,
        BRICK.dec2,
    )
    lenses = pd.DataFrame(
        {
            "name": [f"L{i}" for i in range(n_lenses)],
            "RA [deg]": objs.ra[:n_lenses],
            "DEC [deg]": objs.dec[:n_lenses],
            "zlens": "",
            "type": "galaxy",
            "grading": "confident",
            "ref": "lensaudit synthetic sky",
        }
    )
    lenses.to_csv(run.path("sky", "lenses"), index=False)
    return run


CASES = {
    "background_mad_*_vs_depth": (
        lambda p: make_sky(p).inputs(),
        lambda p: make_sky(p, noise_scale=2.0).inputs(),  # noise twice what the depth implies
    ),
    "mad_r_vs_real_cutouts": (
        lambda p: make_sky(p).inputs(),
        lambda p: make_sky(p, noise_scale=0.5).inputs(),  # noise half the real cutouts' at this depth
    ),
    "star_fwhm_vs_psf": (
        lambda p: make_sky(p).inputs(),
        lambda p: make_sky(p, fwhm_scale=1.2).inputs(),  # stars 20% wider than the recorded PSF
    ),
    "red_galaxy_median_*": (
        lambda p: make_sky(p).inputs(),
        lambda p: make_sky(p, colour_shift=0.3).inputs(),  # red galaxies 0.3 mag too red in g−r
    ),
    "galaxy_density_vs_real": (
        lambda p: make_sky(p).inputs(),
        lambda p: make_sky(p, n_other=0).inputs(),  # only the 8 red galaxies: ~0.2× the real density
    ),
    "lenses_in_lenses_csv": (
        lambda p: make_sky(p).inputs(),
        lambda p: make_sky(p, n_lenses=0).inputs(),  # lenses.csv with its header only
    ),
}
