"""Arc signal-to-noise: the quantity the realism gate compares between injections and real lenses.

Definition (annulus aperture SNR, r band by default): the arc flux summed over the pixels of the annulus
``|r − θE| ≤ w`` around the lens centre, with ``w = 0.5·FWHM + 0.3″``, divided by ``σ_pix·sqrt(N_pix)``,
where σ_pix is the per-pixel noise (from invvar, or 1.4826·MAD of the outer annulus). Real coadd noise is
correlated, so this is not the true aperture S/N; it is a fixed, reproducible estimator applied identically
to injections, to the synthetic sky's lenses and to real lenses (after subtracting a smooth host model).
Works on numpy arrays and torch tensors.
"""

from __future__ import annotations

import numpy as np


def annulus_mask(
    size: int, theta_e_arcsec, fwhm_arcsec, pixscale_arcsec: float = 0.262, x0_arcsec=0.0, y0_arcsec=0.0
):
    """Boolean (B, size, size) masks of the SNR annulus for B systems (all arguments broadcast to (B,))."""
    theta_e, fwhm, x0, y0 = (
        np.atleast_1d(np.asarray(v, dtype=np.float64))
        for v in (theta_e_arcsec, fwhm_arcsec, x0_arcsec, y0_arcsec)
    )
    b = max(len(theta_e), len(fwhm), len(x0), len(y0))
    theta_e, fwhm, x0, y0 = (np.broadcast_to(v, (b,)) for v in (theta_e, fwhm, x0, y0))
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    x = (xx[None] - c) * pixscale_arcsec - x0[:, None, None]
    y = (yy[None] - c) * pixscale_arcsec - y0[:, None, None]
    r = np.hypot(x, y)
    w = 0.5 * fwhm + 0.3
    return np.abs(r - theta_e[:, None, None]) <= w[:, None, None]


def arc_snr(
    arc, sigma_pix, theta_e_arcsec, fwhm_arcsec, pixscale_arcsec: float = 0.262, x0_arcsec=0.0, y0_arcsec=0.0
):
    """Annulus aperture SNR of noiseless arcs ``arc`` (B, H, W) [one band] with per-system pixel noise
    (B,)."""
    is_torch = type(arc).__module__.startswith("torch")
    a = arc.detach().cpu().numpy() if is_torch else np.asarray(arc)
    if a.ndim == 2:
        a = a[None]
    m = annulus_mask(a.shape[-1], theta_e_arcsec, fwhm_arcsec, pixscale_arcsec, x0_arcsec, y0_arcsec)
    sig = np.broadcast_to(
        np.atleast_1d(
            np.asarray(
                sigma_pix.detach().cpu().numpy()
                if type(sigma_pix).__module__.startswith("torch")
                else sigma_pix,
                dtype=np.float64,
            )
        ),
        (a.shape[0],),
    )
    s = (a * m).sum(axis=(-2, -1))
    n = sig * np.sqrt(np.maximum(m.sum(axis=(-2, -1)), 1))
    return s / n
