"""The injection hosts' own PSF shape, measured on the survey's stars.

The catalogue gives each host its PSF FWHM per band (``psfsize_*``) but not the PSF's wings, and the finder
reads them: re-rendering the same injections at Moffat β 2.5 instead of 3.5 moved completeness by up to
0.8 in a cell (the ``psf_beta_bracket_max_shift`` gate, docs/selection.md), and on the demo sky the closure's
residuals ran with the bricks' β (pull −1.8 for β 2.5–3.0, +1.6 for β 3.5–4.0). One β for every injection
is therefore a method error wherever the survey's PSF varies from brick to brick, as DR10's does.

So each host's brick gets a Moffat β fitted to its own stars: isolated point sources (sweep ``TYPE`` PSF,
``MASKBITS`` 0, r in ``inject.psf_star_mag_r``, no other catalogued source within
``inject.psf_star_isolation_arcsec``), cut out of the r-band images by the run's cutout provider (the same
pixels the hosts came from), each fitted with a pixel-integrated Moffat profile on a flat background
(:func:`fit_moffat`), weighted by the stamp's inverse variance; the brick's β is the median of its good fits.
A brick with fewer than ``inject.psf_star_min`` good fits takes the median β of the measured bricks (and is
recorded as such); with none measured, ``inject.psf_beta``. Everything runs on what real DR10 provides
(sweeps and cutouts); nothing reads the synthetic sky's truth.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig, RunConfig
from lensaudit.errors import InputError

#: one row per fitted star (``inject/psf_stars.parquet``)
STAR_COLUMNS = ("brickname", "ra", "dec", "mag_r", "fwhm_arcsec", "beta", "chi2_dof", "ok", "reason")
#: half-width (pixels) of the fitted box around the star
HALF = 12
#: Moffat β a fit may take (a fit at a bound is not a measurement)
BETA_BOUNDS = (1.5, 8.0)


def moffat_image(
    n: int, x0: float, y0: float, fwhm_pix: float, beta: float, flux: float, sub: int = 3
) -> np.ndarray:
    """An n×n image of a unit-normalised circular Moffat profile of total ``flux``, integrated over each
    pixel by ``sub``×``sub`` sub-sampling; (x0, y0) in pixels from the image's corner pixel centre.

    >>> img = moffat_image(41, 20.0, 20.0, 5.0, 3.5, 100.0)
    >>> round(float(img.sum()), 1)
    99.9
    """
    alpha = fwhm_pix / (2 * np.sqrt(2 ** (1 / beta) - 1))
    off = (np.arange(sub) + 0.5) / sub - 0.5
    g = (np.arange(n)[:, None] + off[None, :]).ravel()
    yy, xx = np.meshgrid(g - y0, g - x0, indexing="ij")
    prof = (beta - 1) / (np.pi * alpha**2) * (1 + (xx**2 + yy**2) / alpha**2) ** (-beta)
    return flux * prof.reshape(n, sub, n, sub).mean(axis=(1, 3))


def fit_moffat(stamp: np.ndarray, invvar: np.ndarray, pixscale: float) -> dict[str, Any]:
    """Fit a pixel-integrated Moffat (flux, centre, FWHM, β) on a flat background to the central
    (2·:data:`HALF` + 1)² pixels of ``stamp``, weighted by ``invvar``. Returns the FWHM in arcsec, β, χ²/dof
    and ``ok`` with a ``reason`` when the fit is not a measurement (too few valid pixels, no convergence, a
    parameter at its bound).

    >>> rng = np.random.default_rng(1)
    >>> img = moffat_image(41, 20.3, 19.8, 5.0, 3.0, 2000.0) + rng.normal(0, 0.5, (41, 41))
    >>> f = fit_moffat(img, np.full((41, 41), 4.0), 0.262)
    >>> f["ok"], abs(f["beta"] - 3.0) < 0.2, round(f["fwhm_arcsec"] / 0.262, 1)
    (True, True, 5.0)
    """
    from scipy.optimize import least_squares

    c = stamp.shape[-1] // 2
    box = np.s_[c - HALF : c + HALF + 1, c - HALF : c + HALF + 1]
    img = np.asarray(stamp, np.float64)[box]
    w = np.sqrt(np.clip(np.asarray(invvar, np.float64)[box], 0, None))
    good = np.isfinite(img) & (w > 0)
    n = 2 * HALF + 1
    out: dict[str, Any] = {"fwhm_arcsec": np.nan, "beta": np.nan, "chi2_dof": np.nan, "ok": False}
    if good.sum() < 0.8 * n * n:
        return {**out, "reason": "masked or zero-weight pixels"}
    img, w = np.where(good, img, 0.0), np.where(good, w, 0.0)

    def resid(p: np.ndarray) -> np.ndarray:
        return ((moffat_image(n, p[1], p[2], p[3], p[4], p[0]) + p[5] - img) * w).ravel()

    bg0 = float(np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])))
    p0 = [max(float(img.sum() - bg0 * n * n), 1e-6), HALF, HALF, 4.0, 3.5, bg0]
    lo = [0.0, HALF - 3, HALF - 3, 1.5, BETA_BOUNDS[0], -np.inf]
    hi = [np.inf, HALF + 3, HALF + 3, 16.0, BETA_BOUNDS[1], np.inf]
    try:
        r = least_squares(resid, p0, bounds=(lo, hi), x_scale="jac", max_nfev=400)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {**out, "reason": f"fit failed: {exc}"}
    beta, fwhm = float(r.x[4]), float(r.x[3])
    at_bound = not (BETA_BOUNDS[0] + 1e-3 < beta < BETA_BOUNDS[1] - 1e-3) or not (
        1.5 + 1e-3 < fwhm < 16 - 1e-3
    )
    reason = "" if r.success and not at_bound else ("a parameter at its bound" if at_bound else r.message)
    return {
        "fwhm_arcsec": fwhm * pixscale,
        "beta": beta,
        "chi2_dof": float(2 * r.cost / max(int(good.sum()) - 6, 1)),
        "ok": bool(r.success and not at_bound),
        "reason": reason,
    }


def select_stars(sweep: pd.DataFrame, bricks: set[str], cfg: InjectConfig) -> pd.DataFrame:
    """Isolated, unmasked point sources of ``bricks`` in ``sweep`` (upper-case DR10 columns) within the star
    magnitude window, the ``inject.psf_stars_per_brick`` brightest per brick.

    >>> sw = pd.DataFrame({"BRICKNAME": ["b"] * 3, "RA": [10.0, 10.0, 10.01], "DEC": [0.0, 0.001, 0.0],
    ...                    "TYPE": ["PSF", "EXP", "PSF"], "FLUX_R": [30.0, 5.0, 20.0], "MASKBITS": [0, 0, 0]})
    >>> select_stars(sw, {"b"}, InjectConfig()).ra.tolist()  # the first has a neighbour at 3.6″
    [10.01]
    """
    from scipy.spatial import cKDTree

    s = sweep[sweep.BRICKNAME.isin(bricks)].reset_index(drop=True)
    if s.empty:
        return pd.DataFrame(columns=["brickname", "ra", "dec", "mag_r"])
    ra, dec = np.deg2rad(s.RA.to_numpy(float)), np.deg2rad(s.DEC.to_numpy(float))
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)
    chord = 2 * np.sin(np.deg2rad(cfg.psf_star_isolation_arcsec / 3600) / 2)
    n_near = np.array([len(x) for x in cKDTree(xyz).query_ball_point(xyz, chord)]) - 1
    mag = 22.5 - 2.5 * np.log10(np.clip(s.FLUX_R.to_numpy(float), 1e-9, None))
    lo, hi = cfg.psf_star_mag_r
    keep = (s.TYPE.astype(str).str.strip() == "PSF") & (s.MASKBITS == 0) & (n_near == 0)
    keep &= (mag >= lo) & (mag <= hi)
    st = pd.DataFrame(
        {"brickname": s.BRICKNAME.astype(str), "ra": s.RA.to_numpy(float), "dec": s.DEC.to_numpy(float)}
    ).assign(mag_r=mag)[keep.to_numpy()]
    st = st.sort_values(["brickname", "mag_r", "ra"], kind="mergesort")
    return st.groupby("brickname", sort=True).head(cfg.psf_stars_per_brick).reset_index(drop=True)


def sweep_files_for(location: str, bricks: list[str]) -> list[str]:
    """The sweep files of ``location`` that cover ``bricks`` (by DR10's 5°×5° sweep naming)."""
    from lensaudit.catalog.build import list_sweeps
    from lensaudit.survey.bricks import brick_center, sweep_filename

    files = list_sweeps(location)
    want = {sweep_filename(b.ra, b.dec) for b in map(brick_center, bricks)}
    return [f for f in files if Path(str(f)).name in want]


def measure_stars(
    cfg: RunConfig, bricks: list[str], on_done: Callable[[int], Any] | None = None
) -> pd.DataFrame:
    """Fit the stars of ``bricks`` (:data:`STAR_COLUMNS`): select them in the sweeps, cut them out with the
    run's provider, fit each (:func:`fit_moffat`)."""
    from lensaudit.stamps.providers import get_provider
    from lensaudit.survey.sweeps import read_sweep

    icfg = cfg.inject
    cols = ["BRICKNAME", "RA", "DEC", "TYPE", "FLUX_R", "MASKBITS"]
    parts = [read_sweep(f, cols) for f in sweep_files_for(cfg.sweeps_location, bricks)]
    if not parts:
        raise InputError(f"no sweep file under {cfg.sweeps_location} covers the injection hosts' bricks")
    stars = select_stars(pd.concat(parts, ignore_index=True), set(bricks), icfg)
    rows: list[dict[str, Any]] = []
    if len(stars):
        prov = get_provider(cfg.cutouts.provider, cfg)
        band = prov.bands.index("r")
        res = prov.fetch(stars.assign(galaxy_id=[f"star{i}" for i in range(len(stars))]))
        for i, s in enumerate(stars.itertuples()):
            fit: dict[str, Any]
            if res.index.status.iloc[i] != "ok":
                fit = {"fwhm_arcsec": np.nan, "beta": np.nan, "chi2_dof": np.nan, "ok": False}
                fit["reason"] = f"cutout failed: {res.index.reason.iloc[i]}"
            else:
                fit = fit_moffat(res.image[i, band], res.invvar[i, band], prov.pixscale)
            rows.append({"brickname": s.brickname, "ra": s.ra, "dec": s.dec, "mag_r": s.mag_r, **fit})
            if on_done is not None:
                on_done(1)
    return pd.DataFrame(rows, columns=list(STAR_COLUMNS))


def brick_betas(stars: pd.DataFrame, bricks: list[str], cfg: InjectConfig) -> pd.DataFrame:
    """Per brick: the median β of its good star fits (``n_stars`` of them; ``source`` "stars"), else the
    median of the measured bricks' β ("pool median") or ``inject.psf_beta`` ("config").

    >>> st = pd.DataFrame({"brickname": ["a"] * 3 + ["b"], "beta": [3.0, 3.2, 3.4, 4.0], "ok": True})
    >>> b = brick_betas(st, ["a", "b", "c"], InjectConfig(psf_star_min=2))
    >>> b.psf_beta.tolist(), b.n_stars.tolist(), b.source.tolist()
    ([3.2, 3.2, 3.2], [3, 1, 0], ['stars', 'pool median', 'pool median'])
    """
    good = stars[stars.ok.astype(bool)]
    med = good.groupby("brickname").beta.median()
    n = good.groupby("brickname").size()
    measured = med[n.reindex(med.index).fillna(0) >= cfg.psf_star_min]
    fallback, how = (
        (float(measured.median()), "pool median") if len(measured) else (float(cfg.psf_beta), "config")
    )
    out = pd.DataFrame({"brickname": bricks})
    ok = out.brickname.isin(measured.index)
    out["psf_beta"] = np.where(ok, out.brickname.map(measured), fallback).astype(float)
    out["n_stars"] = out.brickname.map(n).fillna(0).astype(int)
    out["source"] = np.where(ok, "stars", how)
    return out


def summary(stars: pd.DataFrame, betas: pd.DataFrame) -> dict[str, Any]:
    """What ``realism.json`` reports about the hosts' PSF shape."""
    b = betas.psf_beta.to_numpy(float)
    return {
        "psf_shape": "stars",
        "stars_fitted": int(len(stars)),
        "stars_ok": int(stars.ok.astype(bool).sum()),
        "bricks": int(len(betas)),
        "bricks_measured": int((betas.source == "stars").sum()),
        "beta_median": round(float(np.median(b)), 3) if len(b) else None,
        "beta_range": [round(float(b.min()), 3), round(float(b.max()), 3)] if len(b) else None,
    }
