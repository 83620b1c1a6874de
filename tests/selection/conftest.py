"""Shared pieces of the selection tests' synthetic worlds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from lensaudit.config import load_config
from lensaudit.selection.grid import grid_of


@pytest.fixture(scope="session")
def grid_injections() -> Callable:
    """``make(overrides, n, rng)`` → (inject config, selection config, grid, injections): ``n`` main-variant
    injections per cell of the config's grid, each with its cell's θE and PSF, a source magnitude uniform over
    the injection prior (drawn from ``rng``) and an arc 2.5 mag brighter."""

    def make(overrides: list[str], n: int, rng: np.random.Generator) -> tuple:
        cfg = load_config(None, overrides)
        icfg, scfg = cfg.inject, cfg.selection
        grid, _ = grid_of(icfg)
        inj = grid.loc[grid.index.repeat(n), ["cell", "theta_e", "psf_fwhm"]].reset_index(drop=True)
        inj["src_mag_r"] = rng.uniform(*icfg.src_mag_r_range, len(inj))
        inj["arc_mag_r"] = inj.src_mag_r - 2.5
        inj["variant"] = "main"
        return icfg, scfg, grid, inj

    return make
