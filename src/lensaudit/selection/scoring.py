"""Scoring the injections with the frozen finder at the evaluate stage's operating threshold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.errors import InputError
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import FrozenModel, sigmoid

#: columns of ``selection/injection_scores.parquet``, in order
SCORE_COLUMNS = [
    "row",
    "variant",
    "source_model",
    "cell",
    "index",
    "theta_e",
    "psf_cell",
    "depth_cell",
    "host_galaxy_id",
    "degraded",
    "host_type",
    "host_nobs_z",
    "psf_r",
    "psf_beta",
    "src_mag_r",
    "arc_mag_r",
    "src_reff",
    "magnification",
    "arc_snr",
    "score",
    "detected",
]


def check_frozen(model: FrozenModel, expected_sha256: str | None) -> None:
    """InputError when the checkpoint differs from the one the train stage froze (its manifest's hash)."""
    if expected_sha256 and model.sha256 != expected_sha256:
        raise InputError(
            f"frozen model hash {model.sha256[:12]} differs from the train manifest's {expected_sha256[:12]}"
        )


def score_injections(
    inj: pd.DataFrame,
    model: FrozenModel,
    store: StampStore,
    threshold: float,
    on_batch: Callable[[int], Any] | None = None,
) -> pd.DataFrame:
    """``inj`` (row i = store row i) with ``score`` (sigmoid of the logits, float32) and ``detected``
    (score ≥ ``threshold``) appended; stamps are read and scored 256 rows at a time."""
    score = sigmoid(model.score_rows(store, np.arange(len(inj)), on_batch=on_batch))
    inj = inj.assign(score=score)
    return inj.assign(detected=inj.score >= threshold)
