"""The injection grid θE × PSF × depth (cell centres from the config's start/stop/step, inclusive)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig


def axis(spec: tuple[float, float, float]) -> np.ndarray:
    start, stop, step = spec
    n = int(round((stop - start) / step)) + 1
    return np.round(start + step * np.arange(n), 6)


def cells(theta_e: np.ndarray, psf: np.ndarray, depth: np.ndarray) -> pd.DataFrame:
    """One row per cell: cell index, indices on each axis and the centre values."""
    it, ip, idp = np.meshgrid(
        np.arange(len(theta_e)), np.arange(len(psf)), np.arange(len(depth)), indexing="ij"
    )
    df = pd.DataFrame({"i_theta_e": it.ravel(), "i_psf": ip.ravel(), "i_depth": idp.ravel()})
    df["theta_e"], df["psf_fwhm"], df["depth"] = theta_e[df.i_theta_e], psf[df.i_psf], depth[df.i_depth]
    df.insert(0, "cell", np.arange(len(df)))
    return df


def assign_cell(values: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (−1 beyond half a step outside the axis)."""
    values = np.asarray(values, float)
    step = centres[1] - centres[0] if len(centres) > 1 else 1.0
    idx = np.clip(np.rint((values - centres[0]) / step).astype(int), 0, len(centres) - 1)
    out = np.where(np.abs(values - centres[idx]) <= step / 2 + 1e-9, idx, -1)
    return out


def grid_of(cfg: InjectConfig) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The configured grid: its cells and the (θE [arcsec], PSF FWHM r [arcsec], depth r [mag]) axes."""
    te, ps, dp = axis(cfg.theta_e_grid), axis(cfg.psf_grid), axis(cfg.depth_grid)
    return cells(te, ps, dp), (te, ps, dp)
