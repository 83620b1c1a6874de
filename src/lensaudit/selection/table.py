"""The selection-function lookup table: FITS (astronomers) and Parquet, and its query API.

    sf = SelectionFunction.load("selection/selection_function.fits")
    c = sf.completeness(theta_e, psf_fwhm, depth)      # vectorised multilinear interpolation
    lo, hi = sf.interval(theta_e, psf_fwhm, depth)     # 68% credible interval (interpolated bounds)

Points outside the grid raise ValueError (no extrapolation). Insufficient cells are NaN and propagate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = {
    "theta_e": "arcsec",
    "psf_fwhm": "arcsec",
    "depth": "mag",
    "n": "",
    "k": "",
    "c_mean": "",
    "c_lo68": "",
    "c_hi68": "",
    "c_lo95": "",
    "c_hi95": "",
    "insufficient": "",
}


@dataclass
class SelectionFunction:
    table: pd.DataFrame
    meta: dict = field(default_factory=dict)

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.sort(self.table[c].unique()) for c in ("theta_e", "psf_fwhm", "depth"))  # type: ignore[return-value]

    def _cube(self, col: str) -> np.ndarray:
        te, ps, dp = self.axes
        cube = np.full((len(te), len(ps), len(dp)), np.nan)
        t = self.table
        i = np.searchsorted(te, t.theta_e)
        j = np.searchsorted(ps, t.psf_fwhm)
        k = np.searchsorted(dp, t.depth)
        v = t[col].to_numpy(float).copy()
        v[t.insufficient.to_numpy(bool)] = np.nan
        cube[i, j, k] = v
        return cube

    def _interp(self, col: str, theta_e, psf_fwhm, depth) -> np.ndarray:
        """Multilinear interpolation; corners with zero weight are ignored, so an insufficient (NaN) cell only
        affects points that actually use it."""
        pts = np.column_stack(
            [
                np.atleast_1d(np.asarray(a, float)).ravel()
                for a in np.broadcast_arrays(theta_e, psf_fwhm, depth)
            ]
        )
        axes = self.axes
        lo_idx, frac = [], []
        for d, (name, ax) in enumerate(zip(("theta_e", "psf_fwhm", "depth"), axes)):
            bad = (pts[:, d] < ax[0] - 1e-9) | (pts[:, d] > ax[-1] + 1e-9)
            if bad.any():
                raise ValueError(f"{name}={pts[bad, d][0]:g} is outside the grid [{ax[0]:g}, {ax[-1]:g}]")
            if len(ax) == 1:
                lo_idx.append(np.zeros(len(pts), int))
                frac.append(np.zeros(len(pts)))
                continue
            i = np.clip(np.searchsorted(ax, pts[:, d], side="right") - 1, 0, len(ax) - 2)
            lo_idx.append(i)
            frac.append(np.clip((pts[:, d] - ax[i]) / (ax[i + 1] - ax[i]), 0.0, 1.0))
        cube = self._cube(col)
        out = np.zeros(len(pts))
        for corner in np.ndindex(2, 2, 2):
            w = np.ones(len(pts))
            idx = []
            for d, c in enumerate(corner):
                w = w * (frac[d] if c else 1 - frac[d])
                idx.append(np.minimum(lo_idx[d] + c, cube.shape[d] - 1))
            v = cube[idx[0], idx[1], idx[2]]
            out = out + np.where(w > 0, w * v, 0.0)
        return out

    def completeness(self, theta_e, psf_fwhm, depth) -> np.ndarray:
        """Posterior-mean completeness at the given conditions (arrays broadcast)."""
        return self._interp("c_mean", theta_e, psf_fwhm, depth)

    def interval(self, theta_e, psf_fwhm, depth, level: int = 68) -> tuple[np.ndarray, np.ndarray]:
        return self._interp(f"c_lo{level}", theta_e, psf_fwhm, depth), self._interp(
            f"c_hi{level}", theta_e, psf_fwhm, depth
        )

    # -- I/O -------------------------------------------------------------------------------------------------
    def write(self, fits_path: str | Path, parquet_path: str | Path | None = None) -> None:
        from astropy.io import fits
        from astropy.table import Table

        t = Table.from_pandas(self.table[list(COLUMNS)])
        for c, u in COLUMNS.items():
            if u:
                t[c].unit = u
        hdu = fits.table_to_hdu(t)
        hdu.name = "SELECTION"
        for k, v in self.meta.items():
            hdu.header[k[:8].upper()] = v
        p = Path(fits_path)
        tmp = p.with_name(f".{p.name}.tmp")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        tmp.replace(p)
        if parquet_path is not None:
            from lensaudit.utils import write_parquet_atomic

            write_parquet_atomic(self.table, parquet_path)

    @classmethod
    def load(cls, path: str | Path) -> SelectionFunction:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no selection function at {p}")
        if p.suffix == ".parquet":
            return cls(pd.read_parquet(p))
        from astropy.io import fits
        from astropy.table import Table

        with fits.open(p) as h:
            meta = {
                k: h["SELECTION"].header[k]
                for k in h["SELECTION"].header
                if k.startswith(("GRID", "PRIOR", "MODEL", "THRESH", "OPPOINT", "INTERVAL", "NMIN"))
            }
            tab = Table.read(h["SELECTION"]).to_pandas()
        tab["insufficient"] = tab["insufficient"].astype(bool)
        return cls(tab, meta)
