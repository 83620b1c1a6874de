"""One consistent colour rendering of grz stamps for every gallery: Lupton et al. (2004) asinh RGB with fixed
stretch and Q, z→R, r→G, g→B, so that colours mean the same across the report."""

from __future__ import annotations

import numpy as np

STRETCH, Q = 0.05, 8.0
SCALES = (1.0, 1.1, 1.6)  # z, r, g multipliers (DR10-viewer-like balance)


def grz_rgb(img: np.ndarray) -> np.ndarray:
    """(3, S, S) g,r,z nanomaggies → (S, S, 3) uint8."""
    from astropy.visualization import make_lupton_rgb

    x = np.nan_to_num(np.asarray(img, float))
    g, r, z = x[0], x[1], x[2]
    return make_lupton_rgb(z * SCALES[0], r * SCALES[1], g * SCALES[2], stretch=STRETCH, Q=Q)
