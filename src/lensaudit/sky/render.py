"""Render one synthetic brick: GalSim draws galaxies, stars and confusers through the brick's Moffat PSF;
lenstronomy ray-traces the lensed sources (independent of our own injection engine, so the selection-function
closure test is not circular). Then noise, defects and masks; then measured-like Tractor rows.

Noise model: white Gaussian noise smoothed by a Gaussian of σ = 0.45 px (standing in for the pixel-to-pixel
correlation of DR10's Lanczos-3 resampled coadds), scaled so that the PSF-weighted flux error equals the
PSFDEPTH of the brick exactly (``σ_flux = 5 / sqrt(PSFDEPTH)`` / 5). The per-pixel σ is then
``σ_flux·sqrt(ΣP²)·sqrt(Σk²)``; with σ_k = 0.45 px this reproduces the MAD of real DR10 cutouts at matched
depth (``sky check`` gates it), and ``invvar = 1/σ_pix²`` as in DR10 (which ignores the correlations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lensaudit.errors import ConfigError
from lensaudit.sky.model import BANDS, PIX, BrickConditions, SkyObject
from lensaudit.survey.coadds import _wcs, brick_wcs_header
from lensaudit.survey.sweeps import EXTINCTION, MASKBITS, mag_to_psfdepth
from lensaudit.utils import rng_for

SKY_EXTRA = ("galsim", "lenstronomy")  # optional dependencies: pip install 'lensaudit[sky]'
NOISE_CORR_SIGMA_PIX = 0.45
SATURATION_NMGY = 400.0
ARC_STAMP = 91


@dataclass
class BrickRender:
    images: dict[str, np.ndarray]
    invvars: dict[str, np.ndarray]
    maskbits: np.ndarray
    catalog: pd.DataFrame  # measured-like Tractor rows (lower-case sweep column names subset)
    truth: pd.DataFrame
    lenses: pd.DataFrame  # lenscat-format rows of catalogued lenses


def _sky_extra_error(missing: str) -> ConfigError:
    return ConfigError(
        f"the synthetic sky needs the [sky] extra ({missing} is not installed): pip install 'lensaudit[sky]'"
    )


def require_sky_extra() -> None:
    """Raise ConfigError, in one sentence, unless galsim and lenstronomy are installed (imports neither)."""
    import importlib.util

    for name in SKY_EXTRA:
        if importlib.util.find_spec(name) is None:
            raise _sky_extra_error(name)


def _galsim():
    """galsim, imported where it is needed; ConfigError instead of an ImportError when the extra is
    missing."""
    try:
        import galsim
    except ImportError as e:
        raise _sky_extra_error(e.name or "galsim") from e
    return galsim


def moffat_kernel(fwhm: float, beta: float, size: int = 41) -> np.ndarray:
    galsim = _galsim()
    k = galsim.Moffat(beta=beta, fwhm=fwhm).drawImage(nx=size, ny=size, scale=PIX).array.astype(np.float64)
    return k / k.sum()


def noise_correlation_factor() -> float:
    """sqrt(Σk²) of the noise-smoothing kernel: per-pixel σ reduction of the correlated noise."""
    from scipy.ndimage import gaussian_filter

    d = np.zeros((21, 21))
    d[10, 10] = 1
    k = gaussian_filter(d, NOISE_CORR_SIGMA_PIX, mode="constant", truncate=4.0)
    return float(np.sqrt((k**2).sum()))


def pixel_sigma(psfdepth_mag: float, fwhm: float, beta: float) -> float:
    """Per-pixel noise σ (nmgy) implied by a 5σ PSF depth, the PSF and the noise correlation."""
    sigma_flux = 1.0 / np.sqrt(mag_to_psfdepth(psfdepth_mag))
    p = moffat_kernel(fwhm, beta, 61)
    return float(sigma_flux * np.sqrt((p**2).sum()) * noise_correlation_factor())


def _profile(o: SkyObject, seed: int):
    """GalSim profile with unit flux for an object's catalogued light."""
    galsim = _galsim()

    gsp = galsim.GSParams(maximum_fft_size=16384, folding_threshold=5e-3)
    if o.tractor_type == "PSF" and o.kind in ("galaxy", "star"):
        return galsim.DeltaFunction(flux=1.0, gsparams=gsp)
    hlr = max(o.shape_r, 0.05)
    g = min(np.hypot(o.e1, o.e2), 0.9)
    shear = (
        galsim.Shear(
            g1=o.e1 * (g / max(np.hypot(o.e1, o.e2), 1e-9)), g2=o.e2 * (g / max(np.hypot(o.e1, o.e2), 1e-9))
        )
        if g > 0
        else None
    )
    p = o.params
    if o.kind == "ring":
        bulge = galsim.Sersic(n=2.0, half_light_radius=0.35, gsparams=gsp)
        ring = _interp(
            lambda r, t: np.exp(-0.5 * ((r - p["ring_radius"]) / p["ring_width"]) ** 2),
            p["ring_radius"] + 4 * p["ring_width"],
            gsp,
        )
        prof = galsim.Add([bulge.withFlux(p["bulge_frac"]), ring.withFlux(1 - p["bulge_frac"])])
    elif o.kind == "spiral":
        h = hlr / 1.68
        na, pitch, af = p["n_arms"], p["pitch"], p["arm_frac"]
        disk = _interp(
            lambda r, t: (
                np.exp(-r / h)
                * (
                    1
                    + 2.5
                    * af
                    * np.clip(np.cos(na * (t - np.log(np.maximum(r, 0.05)) / np.tan(pitch))), 0, None) ** 3
                )
            ),
            6 * h,
            gsp,
        )
        prof = galsim.Add(
            [
                galsim.Sersic(n=2.5, half_light_radius=0.3 * hlr, gsparams=gsp).withFlux(0.2),
                disk.withFlux(0.8),
            ]
        )
    elif o.kind == "edge_on":
        prof = galsim.InclinedExponential(
            p["inclination_deg"] * galsim.degrees,
            half_light_radius=hlr,
            scale_h_over_r=p["scale_height_frac"],
            gsparams=gsp,
        ).rotate(p["phi"] * galsim.radians)
        return prof.withFlux(1.0)
    elif o.kind == "merger":
        a = galsim.Sersic(n=2.5, half_light_radius=hlr * 0.6, gsparams=gsp)
        sx, sy = p["sep_arcsec"] * np.cos(p["angle"]), p["sep_arcsec"] * np.sin(p["angle"])
        b = galsim.Sersic(n=1.5, half_light_radius=hlr * 0.45, gsparams=gsp).shift(sx, sy)
        tail = _interp(
            lambda r, t: (
                np.exp(-0.5 * ((r - 1.6 * p["sep_arcsec"]) / 0.4) ** 2)
                * np.exp(-0.5 * ((t - p["angle"] - 0.8) / 0.7) ** 2)
            ),
            2.5 * p["sep_arcsec"] + 1.5,
            gsp,
        )
        w = np.array([1.0, p["flux_ratio"], p["tail_frac"]])
        w = w / w.sum()
        return galsim.Add([a.withFlux(w[0]), b.withFlux(w[1]), tail.withFlux(w[2])])
    elif o.kind == "blue_clumpy":
        knots = galsim.RandomKnots(
            p["n_knots"],
            half_light_radius=hlr,
            flux=p["knot_frac"],
            rng=galsim.BaseDeviate(seed),
            gsparams=gsp,
        )
        prof = galsim.Add(
            [galsim.Exponential(half_light_radius=hlr, gsparams=gsp).withFlux(1 - p["knot_frac"]), knots]
        )
    elif o.tractor_type in ("EXP", "REX"):
        prof = galsim.Exponential(half_light_radius=hlr, gsparams=gsp)
    elif o.tractor_type == "DEV":
        prof = galsim.DeVaucouleurs(half_light_radius=hlr, trunc=8 * hlr, gsparams=gsp)
    else:
        prof = galsim.Sersic(
            n=float(np.clip(o.sersic, 0.4, 6.0)), half_light_radius=hlr, trunc=8 * hlr, gsparams=gsp
        )
    if shear is not None:
        prof = prof.shear(shear)
    return prof.withFlux(1.0)


def _interp(fn, extent_arcsec: float, gsp):
    galsim = _galsim()

    scale = 0.05
    n = int(2 * extent_arcsec / scale) | 1
    c = (n - 1) / 2
    yy, xx = np.mgrid[0:n, 0:n]
    x, y = (xx - c) * scale, (yy - c) * scale
    arr = fn(np.hypot(x, y), np.arctan2(y, x)).astype(np.float64)
    arr = np.clip(arr, 0, None)
    return galsim.InterpolatedImage(galsim.Image(arr / arr.sum(), scale=scale), gsparams=gsp)


def _add(img: np.ndarray, stamp: np.ndarray, ix: int, iy: int) -> None:
    h = stamp.shape[0] // 2
    y0, x0 = iy - h, ix - h
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(stamp.shape[0], img.shape[0] - y0), min(stamp.shape[1], img.shape[1] - x0)
    if ye > ys and xe > xs:
        img[y0 + ys : y0 + ye, x0 + xs : x0 + xe] += stamp[ys:ye, xs:xe]


def _stamp_size(o: SkyObject, fwhm: float, flux_r: float) -> int:
    ext = 4 * max(o.shape_r, 0.1) + 3 * fwhm
    if o.kind == "star":
        ext = fwhm * (3 + 2 * max(0.0, np.log10(max(flux_r, 1.0))))
    if o.kind in ("ring", "spiral", "merger"):
        ext += 4.0
    n = int(2 * ext / PIX) | 1
    return int(np.clip(n, 15, 401))


def render_lensed_source(
    o: SkyObject, band: str, kernel: np.ndarray, dx_pix: float, dy_pix: float, supersample: int = 3
) -> np.ndarray:
    """The lensed arcs of a lens (nmgy/pixel, ARC_STAMP²) with lenstronomy: SIE + SHEAR, multi-Sersic source,
    pixelised Moffat PSF. (dx_pix, dy_pix) is the lens centre's sub-pixel offset from the stamp centre."""
    try:
        from lenstronomy.Data.imaging_data import ImageData
        from lenstronomy.Data.psf import PSF
        from lenstronomy.ImSim.image_model import ImageModel
        from lenstronomy.LensModel.lens_model import LensModel
        from lenstronomy.LightModel.light_model import LightModel
    except ImportError as e:
        raise _sky_extra_error(e.name or "lenstronomy") from e

    p = o.params
    n = ARC_STAMP
    c = (n - 1) / 2
    data = ImageData(
        image_data=np.zeros((n, n)),
        ra_at_xy_0=c * PIX,
        dec_at_xy_0=-c * PIX,
        transform_pix2angle=np.array([[-PIX, 0.0], [0.0, PIX]]),
    )
    cx, cy = -dx_pix * PIX, dy_pix * PIX  # lenstronomy ra grows to the left
    lens = LensModel(["SIE", "SHEAR"])
    kl = [
        {"theta_E": p["theta_e"], "e1": p["lens_e1"], "e2": p["lens_e2"], "center_x": cx, "center_y": cy},
        {"gamma1": p["gamma1"], "gamma2": p["gamma2"], "ra_0": cx, "dec_0": cy},
    ]
    comps = p["components"]
    light = LightModel(["SERSIC_ELLIPSE"] * len(comps))
    ks = []
    for comp in comps:
        ks.append(
            {
                "amp": 1.0,
                "R_sersic": comp["reff"],
                "n_sersic": comp["n"],
                "e1": comp["e1"],
                "e2": comp["e2"],
                "center_x": cx + p["src_x"] + comp["dx"],
                "center_y": cy + p["src_y"] + comp["dy"],
            }
        )
    unit = light.total_flux(ks, norm=False)
    total = p["src_flux"][band]
    for k, comp, u in zip(ks, comps, unit):
        k["amp"] = comp["frac"] * total / u
    psf = PSF(psf_type="PIXEL", kernel_point_source=kernel)
    model = ImageModel(
        data,
        psf,
        lens_model_class=lens,
        source_model_class=light,
        kwargs_numerics={"supersampling_factor": supersample, "supersampling_convolution": False},
    )
    return np.asarray(model.image(kwargs_lens=kl, kwargs_source=ks), dtype=np.float64)


def render_brick(cond: BrickConditions, objs: list[SkyObject], npix: int, seed: int) -> BrickRender:
    from scipy.ndimage import gaussian_filter

    from lensaudit.lensing.snr import arc_snr

    galsim = _galsim()
    b = cond.brick
    wcs = _wcs(brick_wcs_header(b, npix))
    ra = np.array([o.ra for o in objs])
    dec = np.array([o.dec for o in objs])
    px, py = wcs.wcs_world2pix(ra, dec, 0)
    ix, iy = np.rint(px).astype(int), np.rint(py).astype(int)
    images = {band: np.zeros((npix, npix)) for band in BANDS}
    arcs_flux = np.zeros((len(objs), 3))
    arc_snrs = np.full(len(objs), np.nan)
    kernels = {band: moffat_kernel(cond.psf_fwhm[band], cond.beta) for band in BANDS}
    sig = {band: pixel_sigma(cond.psfdepth_mag[band], cond.psf_fwhm[band], cond.beta) for band in BANDS}
    for i, o in enumerate(objs):
        prof = _profile(o, seed + i)
        for k, band in enumerate(BANDS):
            psf = galsim.Moffat(beta=cond.beta, fwhm=cond.psf_fwhm[band])
            n = _stamp_size(o, cond.psf_fwhm[band], o.flux["r"])
            st = galsim.Convolve([prof, psf]).drawImage(
                nx=n, ny=n, scale=PIX, offset=(px[i] - ix[i], py[i] - iy[i])
            )
            _add(images[band], st.array * o.flux[band], ix[i], iy[i])
            if o.kind == "lens":
                arc = render_lensed_source(o, band, kernels[band], px[i] - ix[i], py[i] - iy[i])
                arcs_flux[i, k] = arc.sum()
                _add(images[band], arc, ix[i], iy[i])
                if band == "r":
                    arc_snrs[i] = float(
                        arc_snr(
                            arc,
                            sig["r"],
                            o.params["theta_e"],
                            cond.psf_fwhm["r"],
                            x0_arcsec=-(px[i] - ix[i]) * PIX,
                            y0_arcsec=(py[i] - iy[i]) * PIX,
                        )[0]
                    )
    rng = rng_for(seed, "sky", "noise", b.brickname)
    corr = noise_correlation_factor()
    maskbits = np.zeros((npix, npix), np.int32)
    invvars = {}
    for band in BANDS:
        white = rng.normal(0.0, sig[band] / corr, size=(npix, npix))
        images[band] += gaussian_filter(white, NOISE_CORR_SIGMA_PIX, mode="wrap", truncate=4.0)
        sat = images[band] > SATURATION_NMGY
        images[band][sat] = SATURATION_NMGY
        maskbits[sat] |= 1 << MASKBITS[f"SATUR_{band.upper()}"]
        invvars[band] = np.full((npix, npix), 1.0 / sig[band] ** 2)
    yy, xx = np.mgrid[0:npix, 0:npix]
    for i, o in enumerate(objs):
        if o.kind != "star":
            continue
        mag_r = 22.5 - 2.5 * np.log10(o.flux["r"])
        if mag_r < 13.0:
            rad = 40.0 * 10 ** (-0.2 * (mag_r - 10.0)) / PIX
            _disk(maskbits, xx, yy, px[i], py[i], rad, 1 << MASKBITS["BRIGHT"])
        elif mag_r < 16.0:
            _disk(
                maskbits,
                xx,
                yy,
                px[i],
                py[i],
                12.0 * 10 ** (-0.2 * (mag_r - 13.0)) / PIX,
                1 << MASKBITS["MEDIUM"],
            )
    nocov = np.zeros((npix, npix), bool)
    if cond.defect:
        drng = rng_for(seed, "sky", "defect", b.brickname)
        w = int(npix * drng.uniform(0.05, 0.12))
        side = int(drng.integers(4))
        sl = [
            (slice(None), slice(0, w)),
            (slice(None), slice(npix - w, None)),
            (slice(0, w), slice(None)),
            (slice(npix - w, None), slice(None)),
        ][side]
        nocov[sl] = True
        cy, cx = drng.integers(npix // 4, 3 * npix // 4, size=2)
        nanpatch = (slice(cy, cy + 12), slice(cx, cx + 12))
    for band in BANDS:
        images[band][nocov] = 0.0
        invvars[band][nocov] = 0.0
        if cond.defect:
            images[band][nanpatch] = np.nan
            invvars[band][nanpatch] = 0.0
    allmask = np.zeros((npix, npix), bool)
    if cond.defect:
        allmask[nanpatch] = True
        for band in BANDS:
            maskbits[allmask] |= 1 << MASKBITS[f"ALLMASK_{band.upper()}"]
    inside = (ix >= 0) & (iy >= 0) & (ix < npix) & (iy < npix)
    mb_at = np.where(inside, maskbits[np.clip(iy, 0, npix - 1), np.clip(ix, 0, npix - 1)], 0)
    cov_at = np.where(inside, ~nocov[np.clip(iy, 0, npix - 1), np.clip(ix, 0, npix - 1)], False)
    cat, truth, lenses = _catalogue(cond, objs, arcs_flux, arc_snrs, mb_at, cov_at, sig, seed)
    return BrickRender(
        {k: v.astype(np.float32) for k, v in images.items()},
        {k: v.astype(np.float32) for k, v in invvars.items()},
        maskbits,
        cat,
        truth,
        lenses,
    )


def _disk(mask, xx, yy, x, y, r, bit):
    r = int(np.ceil(r))
    x0, x1 = max(0, int(x) - r), min(mask.shape[1], int(x) + r + 1)
    y0, y1 = max(0, int(y) - r), min(mask.shape[0], int(y) + r + 1)
    if x1 <= x0 or y1 <= y0:
        return
    sub = (xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2 <= r * r
    mask[y0:y1, x0:x1][sub] |= bit


def _catalogue(cond: BrickConditions, objs: list[SkyObject], arcs_flux, arc_snrs, mb_at, cov_at, sig, seed):
    """Measured-like Tractor rows (truth + noise at the brick's depth), truth rows and lenscat rows."""
    rng = rng_for(seed, "sky", "measure", cond.brick.brickname)
    b = cond.brick
    rows, truth, lens_rows = [], [], []
    objid = 0
    for i, o in enumerate(objs):
        depth = {band: float(mag_to_psfdepth(cond.psfdepth_mag[band])) for band in BANDS}
        size_fac = np.sqrt(1.0 + (o.shape_r / 0.45) ** 2) if o.tractor_type != "PSF" else 1.0
        true_flux = {
            band: o.flux[band] + (0.15 * arcs_flux[i, k] if o.kind == "lens" else 0.0)
            for k, band in enumerate(BANDS)
        }
        err = {band: size_fac / np.sqrt(depth[band]) for band in BANDS}
        meas = {band: true_flux[band] + rng.normal(0, err[band]) for band in BANDS}
        detected = bool(cov_at[i]) and meas["r"] / err["r"] > 5.0 and o.catalogued
        this_id = objid if detected else -1
        if detected:
            objid += 1
            rows.append(_row(cond, o, this_id, meas, err, depth, int(mb_at[i]), rng))
        gid = f"{b.brickname}_{this_id}" if detected else ""
        p = o.params
        truth.append(
            {
                "brickname": b.brickname,
                "objid": this_id,
                "galaxy_id": gid,
                "ra": o.ra,
                "dec": o.dec,
                "kind": o.kind,
                "is_lens": o.kind == "lens",
                "in_lenses_csv": bool(p.get("in_lenses_csv", False)) and detected,
                "tractor_type": o.tractor_type,
                "mag_r_true": 22.5 - 2.5 * np.log10(o.flux["r"]),
                "shape_r_true": o.shape_r,
                "sersic_true": o.sersic,
                "theta_e_arcsec": p.get("theta_e", np.nan),
                "src_mag_r": p.get("src_mag_r", np.nan),
                "src_rhalf_arcsec": p.get("src_rhalf_arcsec", np.nan),
                "arc_flux_r": arcs_flux[i, 1] if o.kind == "lens" else np.nan,
                "arc_snr": arc_snrs[i],
                "psf_fwhm_r": cond.psf_fwhm["r"],
                "psfdepth_mag_r": cond.psfdepth_mag["r"],
                "sigma_pix_r": sig["r"],
            }
        )
        if o.kind == "lens" and p.get("in_lenses_csv") and detected:
            lens_rows.append(
                {
                    "name": p["name"],
                    "RA [deg]": round(o.ra, 6),
                    "DEC [deg]": round(o.dec, 6),
                    "zlens": f"{rng.uniform(0.2, 0.8):.3f}",
                    "type": "galaxy",
                    "grading": p["grading"],
                    "ref": p["ref"],
                }
            )
    return (
        pd.DataFrame(rows),
        pd.DataFrame(truth),
        pd.DataFrame(lens_rows, columns=["name", "RA [deg]", "DEC [deg]", "zlens", "type", "grading", "ref"]),
    )


def _row(cond: BrickConditions, o: SkyObject, objid: int, meas, err, depth, maskbits: int, rng) -> dict:
    b = cond.brick
    r = {
        "RELEASE": 10000,
        "BRICKID": b.brickid,
        "BRICKNAME": b.brickname,
        "OBJID": objid,
        "TYPE": o.tractor_type,
        "RA": o.ra + rng.normal(0, 0.02) / 3600,
        "DEC": o.dec + rng.normal(0, 0.02) / 3600,
        "RA_IVAR": 1 / (0.02 / 3600) ** 2,
        "DEC_IVAR": 1 / (0.02 / 3600) ** 2,
        "EBV": cond.ebv,
        "MASKBITS": maskbits,
        "REF_EPOCH": 0.0,
    }
    for band in BANDS:
        B = band.upper()
        r[f"FLUX_{B}"] = meas[band]
        r[f"FLUX_IVAR_{B}"] = 1.0 / err[band] ** 2
        r[f"MW_TRANSMISSION_{B}"] = 10 ** (-0.4 * EXTINCTION[B] * cond.ebv)
        r[f"NOBS_{B}"] = cond.nobs[band]
        r[f"PSFSIZE_{B}"] = cond.psf_fwhm[band] * (1 + rng.normal(0, 0.01))
        r[f"PSFDEPTH_{B}"] = depth[band] * (1 + rng.normal(0, 0.03))
        r[f"GALDEPTH_{B}"] = depth[band] * 0.55 * (1 + rng.normal(0, 0.03))
        r[f"FIBERFLUX_{B}"] = meas[band] * 0.4
        r[f"FIBERTOTFLUX_{B}"] = meas[band] * 0.45
        r[f"RCHISQ_{B}"] = abs(rng.normal(1.0, 0.2)) * (
            1.8 if o.kind in ("ring", "spiral", "merger", "blue_clumpy", "lens") else 1.0
        )
        r[f"FRACIN_{B}"] = 1.0
    r["FLUX_W1"] = meas["z"] * (2.5 if o.kind in ("lens",) or o.tractor_type == "DEV" else 1.2)
    r["FLUX_IVAR_W1"] = 1.0 / (0.5 + 0.05 * r["FLUX_W1"]) ** 2
    r["MW_TRANSMISSION_W1"] = 10 ** (-0.4 * 0.184 * cond.ebv)
    r["NOBS_W1"] = 50
    if o.tractor_type != "PSF":
        r["SHAPE_R"] = max(0.05, o.shape_r * (1 + rng.normal(0, 0.06)))
        r["SHAPE_R_IVAR"] = 1.0 / (0.06 * r["SHAPE_R"]) ** 2
        if o.tractor_type != "REX":
            r["SHAPE_E1"] = float(np.clip(o.e1 + rng.normal(0, 0.02), -0.95, 0.95))
            r["SHAPE_E2"] = float(np.clip(o.e2 + rng.normal(0, 0.02), -0.95, 0.95))
            r["SHAPE_E1_IVAR"] = r["SHAPE_E2_IVAR"] = 1.0 / 0.02**2
    r["SERSIC"] = {"PSF": 0.0, "REX": 1.0, "EXP": 1.0, "DEV": 4.0}.get(o.tractor_type, o.sersic)
    if o.tractor_type == "SER":
        r["SERSIC_IVAR"] = 1.0 / 0.1**2
    r["DCHISQ"] = np.sort(np.abs(rng.normal(1000, 300, 5)) * max(meas["r"], 0.1))
    if o.kind == "star" and meas["r"] > 10 ** (-0.4 * (19 - 22.5)):
        r["REF_CAT"] = "G2"
        r["GAIA_PHOT_G_MEAN_MAG"] = 22.5 - 2.5 * np.log10(max(meas["r"], 1e-3)) + 0.1
    return r
