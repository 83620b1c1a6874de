"""Sweep columns the catalog stage reads, and their canonical lower-case pool names."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.survey.sweeps import psfdepth_to_mag

SWEEP_READ = [
    "RELEASE",
    "BRICKID",
    "BRICKNAME",
    "OBJID",
    "TYPE",
    "RA",
    "DEC",
    "EBV",
    "FLUX_G",
    "FLUX_R",
    "FLUX_Z",
    "FLUX_W1",
    "FLUX_IVAR_R",
    "NOBS_G",
    "NOBS_R",
    "NOBS_Z",
    "RCHISQ_G",
    "RCHISQ_R",
    "RCHISQ_Z",
    "PSFSIZE_G",
    "PSFSIZE_R",
    "PSFSIZE_Z",
    "PSFDEPTH_G",
    "PSFDEPTH_R",
    "PSFDEPTH_Z",
    "GALDEPTH_G",
    "GALDEPTH_R",
    "GALDEPTH_Z",
    "SHAPE_R",
    "SHAPE_E1",
    "SHAPE_E2",
    "SERSIC",
    "MASKBITS",
    "FRACFLUX_R",
]


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Lower-case names, magnitudes, depth in mag, ellipticity, and galaxy_id = f"{brickname}_{objid}"."""
    out = df.rename(columns=str.lower).copy()
    out["brickname"] = out["brickname"].astype(str)
    out["type"] = out["type"].astype(str).str.strip()
    out["galaxy_id"] = out["brickname"] + "_" + out["objid"].astype(str)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in "grz":
            f = out[f"flux_{b}"].to_numpy(np.float64)
            out[f"mag_{b}"] = np.where(f > 0, 22.5 - 2.5 * np.log10(np.where(f > 0, f, 1)), np.nan)
            out[f"psfdepth_mag_{b}"] = psfdepth_to_mag(out[f"psfdepth_{b}"])
    e = np.hypot(out["shape_e1"].to_numpy(np.float64), out["shape_e2"].to_numpy(np.float64))
    out["ellipticity"] = e
    out["axis_ratio"] = (1 - e) / (1 + e)
    out["g_r"] = out["mag_g"] - out["mag_r"]
    out["r_z"] = out["mag_r"] - out["mag_z"]
    return out
