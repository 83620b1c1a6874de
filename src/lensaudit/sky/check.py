"""`sky check`: realism gates of a synthetic sky against real DR10 measurements.

Each gate records the measured value and its threshold:
- background MAD per band against the MAD its depth and PSF imply (±30%);
- r-band MAD, rescaled to the real sample's median depth (24.4) and PSF (1.36″), against the MAD of the real
  DR10 cutouts packaged in lensaudit/data/dr10_reference (±30%);
- star FWHM fitted on the images (Moffat with the brick's β) within 5% of the brick's PSF;
- median g−r and r−z of red galaxies within 0.1 mag of the real Tractor sample with the same cut;
- catalogued source density within a factor 2 of the real regions' median.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.data import reference_file, reference_names
from lensaudit.errors import InputError
from lensaudit.gates import Gate
from lensaudit.sky.model import PIX
from lensaudit.survey.bricks import brick_center
from lensaudit.survey.coadds import CoaddReader, _wcs


def _mad(x: np.ndarray) -> float:
    x = x[np.isfinite(x) & (x != 0)]
    for _ in range(3):
        med = np.median(x)
        mad = np.median(np.abs(x - med))
        x = x[np.abs(x - med) < 5 * 1.4826 * mad]
    return float(np.median(np.abs(x - np.median(x))))


def real_cutout_mad_r() -> float:
    vals = []
    for name in reference_names("cutouts", ".npz"):
        with reference_file(name) as f, np.load(f) as d:
            c = d["cutout"][..., 1]
            vals.append(float(np.median(np.abs(c - np.median(c)))))
    return float(np.median(vals))


def _fit_fwhm(stamp: np.ndarray, beta: float) -> float:
    from scipy.optimize import curve_fit

    n = stamp.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]

    def moffat(coords, amp, x0, y0, fwhm):
        x, y = coords
        alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
        return amp * (1 + ((x - x0) ** 2 + (y - y0) ** 2) / alpha**2) ** (-beta)

    c = (n - 1) / 2
    p, _ = curve_fit(
        moffat, (xx.ravel(), yy.ravel()), stamp.ravel(), p0=[stamp.max(), c, c, 5.0], maxfev=4000
    )
    return float(abs(p[3]) * PIX)


def check_sky(sky_dir: str | Path) -> list[Gate]:
    from lensaudit.sky.render import pixel_sigma
    from lensaudit.survey.sweeps import read_sweep

    sky = Path(sky_dir)
    cond = pd.read_parquet(sky / "conditions.parquet")
    truth = pd.read_parquet(sky / "truth.parquet")
    reader = CoaddReader(sky / "coadd", "grz", cache_bricks=2)
    gates: list[Gate] = []
    ratios: dict[str, list[float]] = {b: [] for b in "grz"}
    scaled_r, fwhm_ratio = [], []
    for name, c in cond.groupby("brickname"):
        data = reader.brick(brick_center(name))
        if data is None:
            raise InputError(f"sky check: brick {name} is in conditions.parquet but has no coadds in {sky}")
        for row in c.itertuples():
            img = data.image[row.band]
            m = _mad(img)
            implied = 0.6745 * pixel_sigma(row.psfdepth_mag, row.psf_fwhm_arcsec, row.moffat_beta)
            ratios[row.band].append(m / implied)
            if row.band == "r":
                scaled_r.append(m * 10 ** (0.4 * (row.psfdepth_mag - 24.4)) * row.psf_fwhm_arcsec / 1.36)
        r = c.set_index("band").loc["r"]
        stars = truth[
            (truth.brickname == name) & (truth.kind == "star") & truth.mag_r_true.between(17.0, 19.0)
        ]
        w = _wcs(data.header)
        allpos = truth[truth.brickname == name]
        for s in stars.itertuples():
            x, y = w.wcs_world2pix([s.ra], [s.dec], 0)
            ix, iy = int(round(x[0])), int(round(y[0]))
            d = np.hypot((allpos.ra - s.ra) * np.cos(np.deg2rad(s.dec)), allpos.dec - s.dec) * 3600
            if (d < 8.0).sum() > 1 or not (15 <= ix < data.npix - 15 and 15 <= iy < data.npix - 15):
                continue
            st = data.image["r"][iy - 12 : iy + 13, ix - 12 : ix + 13].astype(np.float64)
            if not np.isfinite(st).all():
                continue
            fwhm_ratio.append(_fit_fwhm(st, r.moffat_beta) / r.psf_fwhm_arcsec)
    for b in "grz":
        v = float(np.median(ratios[b]))
        gates.append(
            Gate(
                name=f"background_mad_{b}_vs_depth",
                value=v,
                lo=0.7,
                hi=1.3,
                message="measured/implied pixel MAD",
            )
        )
    real = real_cutout_mad_r()
    v = float(np.median(scaled_r)) / real
    gates.append(
        Gate(
            name="mad_r_vs_real_cutouts",
            value=v,
            lo=0.7,
            hi=1.3,
            message=f"median MAD at depth 24.4 / real cutouts' {real:.5f} nmgy",
        )
    )
    v = float(np.median(fwhm_ratio)) if fwhm_ratio else float("nan")
    gates.append(
        Gate(
            name="star_fwhm_vs_psf",
            value=v,
            lo=0.95,
            hi=1.05,
            message=f"{len(fwhm_ratio)} isolated stars",
            detail={"n_stars": len(fwhm_ratio)},
        )
    )
    cat = pd.concat(
        [
            read_sweep(f, ["BRICKNAME", "OBJID", "TYPE", "FLUX_G", "FLUX_R", "FLUX_Z", "RA", "DEC"])
            for f in sorted((sky / "sweep").glob("sweep-*.fits"))
        ],
        ignore_index=True,
    )
    gid = cat.BRICKNAME + "_" + cat.OBJID.astype(str)
    kind = gid.map(truth[truth.objid >= 0].set_index("galaxy_id").kind)
    with np.errstate(divide="ignore", invalid="ignore"):
        g, r_, z = (22.5 - 2.5 * np.log10(cat[f"FLUX_{b}"].clip(lower=1e-6)) for b in "GRZ")
    # red galaxies: the red-sequence cut on catalogued DEV/SER field galaxies (confusers are not red
    # galaxies, and a
    # deflector's catalogue photometry is contaminated by its blue arcs)
    red = (
        cat.TYPE.isin(["DEV", "SER"])
        & r_.between(18, 21.5)
        & ((g - r_) > 1.0)
        & (kind == "galaxy").to_numpy()
    )
    with reference_file("lrg_tractor_sample.parquet") as f:
        lrg = pd.read_parquet(f)
    lrg = lrg[lrg.TYPE.isin(["DEV", "SER"]) & lrg.r_mag.between(18, 21.5) & ((lrg.g_mag - lrg.r_mag) > 1.0)]
    # compare at matched magnitude: the real sample is an LRG selection concentrated at r ≈ 21, and red
    # galaxies get redder in g−r with magnitude (redshift), so medians are differenced per 0.5-mag bin
    edges = np.arange(18.0, 21.51, 0.5)
    for name, ours, theirs in (("g_r", (g - r_), lrg.g_mag - lrg.r_mag), ("r_z", (r_ - z), lrg.r_minus_z)):
        diffs, weights = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            a = ours[red & r_.between(lo, hi)]
            b = theirs[lrg.r_mag.between(lo, hi)]
            if len(a) >= 5 and len(b) >= 5:
                diffs.append(float(np.median(a) - np.median(b)))
                weights.append(len(a))
        d = float(np.average(diffs, weights=weights)) if diffs else float("nan")
        gates.append(
            Gate(
                name=f"red_galaxy_median_{name}",
                value=d,
                lo=-0.1,
                hi=0.1,
                message=f"ours − real at matched r ({int(red.sum())} vs {len(lrg)} galaxies)",
            )
        )
    first = reader.brick(brick_center(cond.brickname.iloc[0]))
    if first is None:
        raise InputError(f"sky check: no coadds for brick {cond.brickname.iloc[0]} in {sky}")
    area = len(cond.brickname.unique()) * (first.npix * PIX / 3600) ** 2
    with reference_file("regions_conditions.csv") as f:
        regions = pd.read_csv(f)
    real_dens = float((regions.total_n_gal / regions.total_area_deg2).median())
    ours = (cat.TYPE != "PSF").sum() / area
    gates.append(
        Gate(
            name="galaxy_density_vs_real",
            value=float(ours / real_dens),
            lo=0.5,
            hi=2.0,
            message=f"{ours:.0f} vs {real_dens:.0f} per deg²",
        )
    )
    return gates
