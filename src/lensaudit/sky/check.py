"""`sky check`: the measurements behind the realism gates of a synthetic sky against real DR10 measurements.

The gates themselves are declared in :mod:`lensaudit.validation.gates.sky` (each with its threshold):
- background MAD per band against the MAD its depth and PSF imply (±30%);
- r-band MAD, rescaled to the real sample's median depth (24.4) and PSF (1.36″), against the MAD of the real
  DR10 cutouts packaged in lensaudit/data/dr10_reference (±30%);
- star FWHM fitted on the images (Moffat with the brick's β) within 5% of the brick's PSF;
- median g−r and r−z of red galaxies within 0.1 mag of the real Tractor sample with the same cut;
- catalogued source density within a factor 2 of the real regions' median.

This module holds the measurements (functions of the sky's files and arrays); :func:`check_sky` evaluates the
registered realism gates on a sky directory (``lensaudit sky check``).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.data import reference_file, reference_names
from lensaudit.errors import InputError
from lensaudit.gates import Gate
from lensaudit.sky.model import PIX
from lensaudit.survey.bricks import brick_center
from lensaudit.survey.coadds import CoaddReader, _wcs

#: the realism gates (``check_sky``; the sky stage also gates the lenses it wrote)
REALISM_GATES = (
    "background_mad_*_vs_depth",
    "mad_r_vs_real_cutouts",
    "star_fwhm_vs_psf",
    "red_galaxy_median_*",
    "galaxy_density_vs_real",
)


def is_realism(gate_name: str) -> bool:
    """Whether a gate (or family member) name is one of :data:`REALISM_GATES`."""
    return any(fnmatch.fnmatchcase(gate_name, p) for p in REALISM_GATES)


#: the real sample's median r depth (mag) and PSF FWHM (″) that ``mad_r_vs_real_cutouts`` rescales to
REAL_DEPTH_R, REAL_FWHM_R = 24.4, 1.36
#: the sweep columns the catalogue gates read
SWEEP_COLS = ["BRICKNAME", "OBJID", "TYPE", "FLUX_G", "FLUX_R", "FLUX_Z", "RA", "DEC"]


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


@dataclass
class CoaddMeasures:
    """What the coadd gates measure, per brick and band."""

    #: measured / implied background pixel MAD, per band (one value per brick)
    mad_ratio: dict[str, list[float]] = field(default_factory=lambda: {b: [] for b in "grz"})
    #: r-band MAD rescaled to the real sample's median depth and PSF (nmgy, one value per brick)
    scaled_mad_r: list[float] = field(default_factory=list)
    #: fitted / brick FWHM of isolated 17–19 mag stars in r
    fwhm_ratio: list[float] = field(default_factory=list)
    #: pixels per brick side (of the first brick)
    npix: int = 0


def background_mad_ratio(image: np.ndarray, psfdepth_mag: float, fwhm: float, beta: float) -> float:
    """Measured background pixel MAD of one image over the MAD its depth and PSF imply."""
    from lensaudit.sky.render import pixel_sigma

    return _mad(image) / (0.6745 * pixel_sigma(psfdepth_mag, fwhm, beta))


def scaled_mad(image: np.ndarray, psfdepth_mag: float, fwhm: float) -> float:
    """Background MAD rescaled to the real sample's median depth and PSF."""
    return _mad(image) * 10 ** (0.4 * (psfdepth_mag - REAL_DEPTH_R)) * fwhm / REAL_FWHM_R


def star_fwhm_ratios(
    image: np.ndarray,
    header: dict[str, Any],
    stars: pd.DataFrame,
    others: pd.DataFrame,
    fwhm: float,
    beta: float,
) -> list[float]:
    """Fitted / nominal FWHM of each star (RA/Dec in ``stars``) with no other object (``others``) within 8″
    and at least 15 px from the image edges."""
    npix = image.shape[0]
    w = _wcs(header)
    out = []
    for s in stars.itertuples():
        x, y = w.wcs_world2pix([s.ra], [s.dec], 0)
        ix, iy = int(round(x[0])), int(round(y[0]))
        d = np.hypot((others.ra - s.ra) * np.cos(np.deg2rad(s.dec)), others.dec - s.dec) * 3600
        if (d < 8.0).sum() > 1 or not (15 <= ix < npix - 15 and 15 <= iy < npix - 15):
            continue
        st = image[iy - 12 : iy + 13, ix - 12 : ix + 13].astype(np.float64)
        if not np.isfinite(st).all():
            continue
        out.append(_fit_fwhm(st, beta) / fwhm)
    return out


def measure_coadds(coadd_dir: str | Path, cond: pd.DataFrame, truth: pd.DataFrame) -> CoaddMeasures:
    """Background MADs and star FWHMs of every brick in ``cond`` (conditions.parquet), from its coadds."""
    reader = CoaddReader(coadd_dir, "grz", cache_bricks=2)
    m = CoaddMeasures()
    for name, c in cond.groupby("brickname"):
        data = reader.brick(brick_center(str(name)))
        if data is None:
            raise InputError(
                f"sky check: brick {name} is in conditions.parquet but has no coadds in {coadd_dir}"
            )
        m.npix = m.npix or data.npix
        for row in c.itertuples():
            img = data.image[row.band]
            m.mad_ratio[row.band].append(
                background_mad_ratio(img, row.psfdepth_mag, row.psf_fwhm_arcsec, row.moffat_beta)
            )
            if row.band == "r":
                m.scaled_mad_r.append(scaled_mad(img, row.psfdepth_mag, row.psf_fwhm_arcsec))
        r = c.set_index("band").loc["r"]
        here = truth[truth.brickname == name]
        stars = here[(here.kind == "star") & here.mag_r_true.between(17.0, 19.0)]
        m.fwhm_ratio += star_fwhm_ratios(
            data.image["r"], data.header, stars, here, float(r.psf_fwhm_arcsec), float(r.moffat_beta)
        )
    return m


def read_sweeps(sweep_dir: str | Path) -> pd.DataFrame:
    """The catalogue columns the gates need, from every sweep file of the sky."""
    from lensaudit.survey.sweeps import read_sweep

    files = sorted(Path(sweep_dir).glob("sweep-*.fits"))
    if not files:
        raise InputError(f"sky check: no sweep files in {sweep_dir}")
    return pd.concat([read_sweep(f, SWEEP_COLS) for f in files], ignore_index=True)


def red_galaxy_offsets(cat: pd.DataFrame, truth: pd.DataFrame) -> tuple[dict[str, float], int, int]:
    """Median g−r and r−z of our red galaxies minus the real Tractor sample's, at matched r.

    Returns ({"g_r": Δ, "r_z": Δ}, number of our red galaxies, number of real ones). Red galaxies: the
    red-sequence cut on catalogued DEV/SER field galaxies (confusers are not red galaxies, and a deflector's
    catalogue photometry is contaminated by its blue arcs). The real sample is an LRG selection concentrated
    at r ≈ 21, and red galaxies get redder in g−r with magnitude (redshift), so medians are differenced per
    0.5-mag bin (bins with ≥ 5 galaxies on both sides, weighted by ours).
    """
    gid = cat.BRICKNAME + "_" + cat.OBJID.astype(str)
    kind = gid.map(truth[truth.objid >= 0].set_index("galaxy_id").kind)
    with np.errstate(divide="ignore", invalid="ignore"):
        g, r_, z = (22.5 - 2.5 * np.log10(cat[f"FLUX_{b}"].clip(lower=1e-6)) for b in "GRZ")
    red = (
        cat.TYPE.isin(["DEV", "SER"])
        & r_.between(18, 21.5)
        & ((g - r_) > 1.0)
        & (kind == "galaxy").to_numpy()
    )
    with reference_file("lrg_tractor_sample.parquet") as f:
        lrg = pd.read_parquet(f)
    lrg = lrg[lrg.TYPE.isin(["DEV", "SER"]) & lrg.r_mag.between(18, 21.5) & ((lrg.g_mag - lrg.r_mag) > 1.0)]
    edges = np.arange(18.0, 21.51, 0.5)
    out = {}
    for name, ours, theirs in (("g_r", (g - r_), lrg.g_mag - lrg.r_mag), ("r_z", (r_ - z), lrg.r_minus_z)):
        diffs, weights = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            a = ours[red & r_.between(lo, hi)]
            b = theirs[lrg.r_mag.between(lo, hi)]
            if len(a) >= 5 and len(b) >= 5:
                diffs.append(float(np.median(a) - np.median(b)))
                weights.append(len(a))
        out[name] = float(np.average(diffs, weights=weights)) if diffs else float("nan")
    return out, int(red.sum()), len(lrg)


def real_galaxy_density() -> float:
    """The median catalogued galaxy density (per deg²) of the real DR10 reference regions."""
    with reference_file("regions_conditions.csv") as f:
        regions = pd.read_csv(f)
    return float((regions.total_n_gal / regions.total_area_deg2).median())


def galaxy_density(cat: pd.DataFrame, n_bricks: int, npix: int) -> float:
    """Catalogued non-PSF sources per deg² over ``n_bricks`` bricks of ``npix`` pixels a side."""
    area = n_bricks * (npix * PIX / 3600) ** 2
    return float((cat.TYPE != "PSF").sum() / area)


def check_sky(sky_dir: str | Path) -> list[Gate]:
    """The registered realism gates of the sky in ``sky_dir`` (its files under their registered names)."""
    from lensaudit.run.artifacts import relpath
    from lensaudit.validation import Inputs, specs

    sky = Path(sky_dir)
    inputs = Inputs(lambda stage, name: sky / relpath(stage, name), None, lambda stage: None)
    return [g for s in specs("sky") if is_realism(s.name) for g in s.evaluate(inputs)]
