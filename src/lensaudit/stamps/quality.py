"""Per-stamp quality metrics, vectorised over a batch (N, 3, S, S), and the shortcut diagnostics.

Radii in pixels from the stamp centre: core r < 4/8/12 (the predecessor's metadata), core r < 10 (2.6″:
the design's core-only aperture of the shortcut gate), inner core r < 2 and r < 3 (≤ 0.79″, inside the 0.8″
inner edge of the arc annulus used by the realism gates: the deflector's light, with as little arc light as
the PSF allows — the inner-core shortcut gates use these), annulus 4 ≤ r < 16, outer r ≥ 30. MAD is the
raw median absolute deviation (not scaled by 1.4826) of the outer region, as in the predecessor's metadata.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.survey.sweeps import MASKBITS

BANDS = "grz"
STAR_BITS = (1 << MASKBITS["BRIGHT"]) | (1 << MASKBITS["MEDIUM"])
BAD_BITS = (
    STAR_BITS
    | sum(1 << MASKBITS[f"SATUR_{b}"] for b in "GRZ")
    | sum(1 << MASKBITS[f"ALLMASK_{b}"] for b in "GRZ")
)


#: radii (px) of the core apertures ``core<r>_<band>``: mean flux within r < that radius
CORE_RADII = (2, 3, 4, 8, 10, 12)


def radius_map(size: int) -> np.ndarray:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(xx - c, yy - c)


def _masked_mean(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    v = np.where(m, x, np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanmean(v.reshape(len(x), -1), axis=1)


def pixel_defects(
    image: np.ndarray, invvar: np.ndarray, maskbits: np.ndarray, central_nan_radius: float = 8.0
) -> dict[str, np.ndarray]:
    """Per stamp: NaN pixels (any band), whether one lies within ``central_nan_radius`` of the centre, and the
    bad-pixel fraction (NaN, invvar ≤ 0 in any band, or a star/saturation/ALLMASK bit)."""
    n, _, s, _ = image.shape
    r = radius_map(s)
    nan = ~np.isfinite(image)
    bad = nan.any(axis=1) | (invvar <= 0).any(axis=1) | ((maskbits & BAD_BITS) != 0)
    return {
        "nan_pixel_count": nan.any(axis=1).reshape(n, -1).sum(axis=1),
        "central_nan": (nan.any(axis=1) & (r < central_nan_radius)).reshape(n, -1).any(axis=1),
        "bad_pixel_frac": bad.reshape(n, -1).mean(axis=1),
    }


def quality_metrics(
    image: np.ndarray, invvar: np.ndarray, maskbits: np.ndarray, central_nan_radius: float = 8.0
) -> pd.DataFrame:
    """Metrics for stamps image/invvar (N, 3, S, S) and maskbits (N, S, S)."""
    n, nb, s, _ = image.shape
    r = radius_map(s)
    out = pixel_defects(image, invvar, maskbits, central_nan_radius)
    out["star_mask_frac"] = ((maskbits & STAR_BITS) != 0).reshape(n, -1).mean(axis=1)
    with np.errstate(invalid="ignore"):
        for k, band in enumerate(BANDS[:nb]):
            x = image[:, k]
            for rad in CORE_RADII:
                out[f"core{rad}_{band}"] = _masked_mean(x, np.broadcast_to(r < rad, x.shape))
            out[f"annulus_{band}"] = _masked_mean(x, np.broadcast_to((r >= 4) & (r < 16), x.shape))
            outer = np.where(r >= 30, x, np.nan).reshape(n, -1)
            med = np.nanmedian(outer, axis=1)
            out[f"outer_{band}"] = med
            out[f"mad_{band}"] = np.nanmedian(np.abs(outer - med[:, None]), axis=1)
        xr = image[:, 1].reshape(n, -1)
        out["median_r"] = np.nanmedian(xr, axis=1)
        out["p01_r"] = np.nanpercentile(xr, 1, axis=1)
        out["p99_r"] = np.nanpercentile(xr, 99, axis=1)
        sig = 1.4826 * out["mad_r"]
        out["clip_frac_r"] = (np.abs(xr - out["outer_r"][:, None]) > 5 * sig[:, None]).mean(axis=1)
    return pd.DataFrame(out)
