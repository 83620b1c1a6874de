"""Host degradation for grid cells without a native host: convolve a better-seeing host to the target PSF
with the Moffat-difference kernel (approximated by the Gaussian of σ_k² = σ_target² − σ_host², exact for
Gaussian PSFs and within 3% in FWHM for Moffat β ≥ 2.5 at the DR10 seeing range), then add white noise so
that the pixel noise reaches the target depth's σ:
σ_target = σ_host·10^(0.4(d_host − d_target))·FWHM_host/FWHM_target (pixel σ ∝ PSF-flux error / FWHM at
fixed correlation)."""

from __future__ import annotations

import numpy as np

FWHM_TO_SIGMA = 1 / (2 * np.sqrt(2 * np.log(2)))


def target_sigma(
    sigma_host: float, fwhm_host: float, depth_host: float, fwhm_target: float, depth_target: float
) -> float:
    return float(sigma_host * 10 ** (0.4 * (depth_host - depth_target)) * fwhm_host / fwhm_target)


def degrade(
    img: np.ndarray,
    invvar: np.ndarray,
    fwhm_host: float,
    depth_host: float,
    fwhm_target: float,
    depth_target: float,
    rng: np.random.Generator,
    pixscale: float = 0.262,
) -> tuple[np.ndarray, np.ndarray]:
    """(B, S, S) image and invvar of one host → degraded image and invvar at (fwhm_target, depth_target)."""
    from scipy.ndimage import gaussian_filter

    if fwhm_target < fwhm_host - 1e-6 or depth_target > depth_host + 1e-6:
        raise ValueError("degradation can only broaden the PSF and make the image shallower")
    sk = np.sqrt(max(fwhm_target**2 - fwhm_host**2, 0.0)) * FWHM_TO_SIGMA / pixscale
    out = np.stack(
        [
            gaussian_filter(np.nan_to_num(b), sk, mode="nearest") if sk > 0.05 else np.nan_to_num(b)
            for b in img
        ]
    )
    # noise of the smoothed host, then top up to the target
    d = np.zeros((41, 41))
    d[20, 20] = 1
    red = float(np.sqrt((gaussian_filter(d, sk) ** 2).sum())) if sk > 0.05 else 1.0
    new_iv = np.empty_like(invvar)
    for k in range(len(img)):
        iv = invvar[k][invvar[k] > 0]
        sig_h = 1 / np.sqrt(np.median(iv)) if iv.size else 0.0
        sig_t = target_sigma(sig_h, fwhm_host, depth_host, fwhm_target, depth_target)
        add = np.sqrt(max(sig_t**2 - (sig_h * red) ** 2, 0.0))
        out[k] = out[k] + rng.normal(0, add, out[k].shape)
        new_iv[k] = np.where(invvar[k] > 0, 1 / max(sig_t, 1e-12) ** 2, 0.0)
    return out.astype(np.float32), new_iv.astype(np.float32)
