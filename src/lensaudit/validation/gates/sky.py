"""Gates of the sky stage: the synthetic sky's realism against real DR10 measurements (the measurements are
in :mod:`lensaudit.sky.check`), and the lenses it wrote for the positives stage.

Every threshold here is ours: the design asks for a DR10-like sky without numbers; the bands are what the
real-data comparisons can resolve."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit.gates import Gate
from lensaudit.sky import check as C
from lensaudit.validation.registry import Threshold, register

STAGE = "sky"


def _coadds(inp: Any) -> C.CoaddMeasures:
    """The coadd measurements (MADs, star FWHMs), measured once per Inputs."""
    return inp._cached(
        ("sky", "coadd_measures"),
        lambda: C.measure_coadds(
            inp.path(STAGE, "coadds"), inp.table(STAGE, "conditions"), inp.table(STAGE, "truth")
        ),
    )


def _catalogue(inp: Any) -> pd.DataFrame:
    return inp._cached(("sky", "sweeps"), lambda: C.read_sweeps(inp.path(STAGE, "sweeps")))


def _median(x: list[float]) -> float:
    return float(np.median(x)) if len(x) else float("nan")


@register(
    "background_mad_*_vs_depth",
    STAGE,
    "median over bricks of the measured background pixel MAD over the MAD the brick's depth and PSF imply, "
    "per band (g, r, z)",
    reads=("sky.coadds", "sky.conditions", "sky.truth"),
    threshold=Threshold(
        "fail outside [0.7, 1.3]", "ours", "±30%: the noise model's depth calibration, well above the scatter"
    ),
)
def background_mad(inp: Any) -> list[Gate]:
    m = _coadds(inp)
    return [
        Gate(
            name=f"background_mad_{b}_vs_depth",
            value=_median(m.mad_ratio[b]),
            lo=0.7,
            hi=1.3,
            message="measured/implied pixel MAD",
        )
        for b in "grz"
    ]


@register(
    "mad_r_vs_real_cutouts",
    STAGE,
    "median r-band background MAD rescaled to depth 24.4 and PSF 1.36″, over the MAD of the packaged real "
    "DR10 cutouts",
    reads=("sky.coadds", "sky.conditions", "sky.truth"),
    threshold=Threshold(
        "fail outside [0.7, 1.3]", "ours", "±30%: the real cutouts span a range of depths and seeing"
    ),
)
def mad_r_vs_real(inp: Any) -> Gate:
    real = C.real_cutout_mad_r()
    return Gate(
        name="mad_r_vs_real_cutouts",
        value=_median(_coadds(inp).scaled_mad_r) / real,
        lo=0.7,
        hi=1.3,
        message=f"median MAD at depth {C.REAL_DEPTH_R} / real cutouts' {real:.5f} nmgy",
    )


@register(
    "star_fwhm_vs_psf",
    STAGE,
    "median fitted Moffat FWHM of isolated 17–19 mag stars in r over the brick's PSF FWHM",
    reads=("sky.coadds", "sky.conditions", "sky.truth"),
    threshold=Threshold(
        "fail outside [0.95, 1.05]; fail without isolated stars", "ours", "the PSF must be the one recorded"
    ),
)
def star_fwhm(inp: Any) -> Gate:
    m = _coadds(inp)
    return Gate(
        name="star_fwhm_vs_psf",
        value=_median(m.fwhm_ratio),
        lo=0.95,
        hi=1.05,
        message=f"{len(m.fwhm_ratio)} isolated stars",
        detail={"n_stars": len(m.fwhm_ratio)},
    )


@register(
    "red_galaxy_median_*",
    STAGE,
    "median g−r and r−z of our red galaxies minus the real Tractor LRG sample's, at matched r (per 0.5 mag)",
    reads=("sky.sweeps", "sky.truth"),
    threshold=Threshold(
        "fail outside [−0.1, 0.1] mag; fail without 5 red galaxies in a magnitude bin",
        "ours",
        "colours within 0.1 mag of the real red sequence",
    ),
)
def red_galaxy_colours(inp: Any) -> list[Gate]:
    diffs, n_red, n_real = C.red_galaxy_offsets(_catalogue(inp), inp.table(STAGE, "truth"))
    return [
        Gate(
            name=f"red_galaxy_median_{name}",
            value=d,
            lo=-0.1,
            hi=0.1,
            message=f"ours − real at matched r ({n_red} vs {n_real} galaxies)",
        )
        for name, d in diffs.items()
    ]


@register(
    "galaxy_density_vs_real",
    STAGE,
    "catalogued non-PSF sources per deg² over the median of the real DR10 reference regions",
    reads=("sky.sweeps", "sky.conditions", "sky.coadds", "sky.truth"),
    threshold=Threshold("fail outside [0.5, 2]", "ours", "a factor 2: real regions vary that much"),
)
def galaxy_density(inp: Any) -> Gate:
    cond = inp.table(STAGE, "conditions")
    ours = C.galaxy_density(_catalogue(inp), cond.brickname.nunique(), _coadds(inp).npix)
    real = C.real_galaxy_density()
    return Gate(
        name="galaxy_density_vs_real",
        value=ours / real,
        lo=0.5,
        hi=2.0,
        message=f"{ours:.0f} vs {real:.0f} per deg²",
    )


@register(
    "lenses_in_lenses_csv",
    STAGE,
    "catalogued lenses the sky wrote to lenses.csv (the positives stage's input)",
    reads=("sky.lenses",),
    threshold=Threshold("fail < 1", "ours", "without lenses there is nothing to train on"),
)
def lenses_in_csv(inp: Any) -> Gate:
    n = len(pd.read_csv(inp.path(STAGE, "lenses")))
    return Gate(name="lenses_in_lenses_csv", value=n, fail=0.5, higher_is_better=True)
