"""Pass/fail cases of the cutouts gates: a real tiny stamp store (Zarr, 101×101 grz with invvar and
maskbits) of background noise plus a Gaussian core, and its index built by the stage's own ``stamps_table``;
each failing case blanks pixels or brightens the positives' cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.stamps.fetch import stamps_table
from lensaudit.stamps.quality import radius_map
from lensaudit.stamps.store import StampStore
from lensaudit.validation import Inputs

N, S = 40, 101


def make(root: Path, *sets: str, n_blank: int = 0, blank_rows: int = 30, pos_core: float = 1.0) -> Inputs:
    """``N`` stamps, every other one a positive; the first ``n_blank`` have invvar 0 on their first
    ``blank_rows`` pixel rows (bad pixels); positives' cores are ``pos_core`` × the negatives'."""
    run = Run(root, *sets)
    rng = np.random.default_rng(5)
    label = np.arange(N) % 2
    core = 0.05 * np.exp(-(radius_map(S) ** 2) / (2 * 3.0**2))
    img = rng.normal(0, 0.003, (N, 3, S, S)) + core * np.where(label == 1, pos_core, 1.0)[:, None, None, None]
    iv = np.full((N, 3, S, S), 1 / 0.003**2)
    iv[:n_blank, :, :blank_rows] = 0.0
    store = StampStore.create(run.path("cutouts", "stamps"), N, S, "grz", shard_size=16)
    store.write(0, img, iv, np.zeros((N, S, S), np.int32))
    ids = [f"1500p020_{i}" for i in range(N)]
    fetched = pd.DataFrame(
        {"galaxy_id": ids, "status": "ok", "reason": "", "attempts": 1, "row": np.arange(N)}
    )
    sample = pd.DataFrame(
        {
            "galaxy_id": ids,
            "label": label,
            "pool": np.where(label == 1, "positive", "N1"),
            "split": "train",
            "psfsize_r": 1.2,
            "psfdepth_mag_r": 24.0,
        }
    )
    run.table("cutouts", "index", stamps_table(store, fetched, sample, run.config.cutouts))
    return run.inputs()


CASES = {
    # 2 of 40 stamps with 30% bad pixels pass (95% usable); 8 of 40 fail (80%)
    "fraction_ok": (lambda p: make(p, n_blank=2), lambda p: make(p, n_blank=8)),
    # with the cut at 20%, a stamp with 5% bad pixels trains: above the design's 2%
    "bad_pixel_frac_quality_ok": (
        lambda p: make(p, "cutouts.max_bad_pixel_frac=0.2"),
        lambda p: make(p, "cutouts.max_bad_pixel_frac=0.2", n_blank=1, blank_rows=5),
    ),
    # positives' inner cores 1.5× the negatives'
    "core_brightness_ratio_pos_neg": (lambda p: make(p), lambda p: make(p, pos_core=1.5)),
}
