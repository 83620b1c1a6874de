"""How well do the hosts' PSF fits recover the PSF the synthetic sky rendered?

``selection/psfshape.py`` fits a Moffat (FWHM, β) to each host brick's isolated catalogued stars, cut out by
the run's provider, and gives each brick the median β of its good fits. On the synthetic sky the truth is
known (``sky/conditions.parquet``: the brick's Moffat β and FWHM per band, used by GalSim to render every
object), so the fits can be judged brick by brick. Every brick of the sky is fitted, not only the hosts'.

    python benchmarks/psf_stars.py RUN [OUT]  → OUT (default results/psf_stars.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.config import load_config
from lensaudit.selection import psfshape

OUT = Path(__file__).parent / "results" / "psf_stars.json"


def main(run: Path, out: Path = OUT) -> dict:
    t0 = time.perf_counter()
    cfg = load_config(run / "config.yaml", [])
    cond = pd.read_parquet(run / "sky" / "conditions.parquet")
    bricks = sorted(cond.brickname.unique())
    stars = psfshape.measure_stars(cfg, bricks)
    fit = psfshape.brick_betas(stars, bricks, cfg.inject)
    r = cond[cond.band == "r"].set_index("brickname")
    fwhm = stars[stars.ok].groupby("brickname").fwhm_arcsec.median()
    fit = fit.assign(
        beta_true=fit.brickname.map(r.moffat_beta),
        fwhm_r_fit=fit.brickname.map(fwhm),
        fwhm_r_true=fit.brickname.map(r.psf_fwhm_arcsec),
    )
    db = (fit.psf_beta - fit.beta_true).to_numpy()
    dfw = (fit.fwhm_r_fit / fit.fwhm_r_true - 1).to_numpy()
    res = {
        "run": str(run),
        "bricks": len(fit),
        "stars_fitted": int(len(stars)),
        "stars_ok": int(stars.ok.sum()),
        "beta_true_range": [float(fit.beta_true.min()), float(fit.beta_true.max())],
        "beta_error": {
            "median": float(np.median(db)),
            "median_abs": float(np.median(np.abs(db))),
            "max_abs": float(np.max(np.abs(db))),
        },
        "fwhm_r_relative_error": {"median": float(np.median(dfw)), "max_abs": float(np.max(np.abs(dfw)))},
        "per_brick": fit.round(4).to_dict("records"),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    res = main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
    print(
        f"{res['bricks']} bricks, {res['stars_ok']}/{res['stars_fitted']} good star fits; "
        f"β − true: median {res['beta_error']['median']:+.3f}, max |·| {res['beta_error']['max_abs']:.3f}; "
        f"r FWHM: median {res['fwhm_r_relative_error']['median']:+.2%}"
    )
