"""Scoring labelled stamps with the frozen finder, and hard-negative mining.

:func:`score_table` is the one scored view of the quality-ok stamps used by the audit (the val and test
splits) and by hard-negative mining (the train split); :func:`mine_negatives` picks the negatives a next
training round could add as an extra N2 category ``mined`` (nothing does so automatically).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import FrozenModel, sigmoid

#: observing conditions and positions copied from the sample into ``evaluate/scores.parquet``
COND = [
    "psfsize_g",
    "psfsize_r",
    "psfsize_z",
    "psfdepth_mag_g",
    "psfdepth_mag_r",
    "psfdepth_mag_z",
    "nobs_z",
    "nobs_z_bin",
    "type",
    "ebv",
    "mag_r",
    "ra",
    "dec",
    "healpix",
]
#: the columns of ``evaluate/scores.parquet``, in order
SCORE_COLUMNS = ["row", "galaxy_id", "label", "tier", "pool", "n2_category", "split", "logit", "score"] + COND
#: the columns of ``evaluate/mined_negatives.parquet`` taken from the scored table, in order
MINED_COLUMNS = ["galaxy_id", "ra", "dec", "score", "n2_category", "split"]

#: ``progress(total)`` → a context manager whose value has ``advance(n)``
#: (e.g. ``lambda n: ctx.progress(n, "evaluate: scoring")``)
Progress = Callable[[int], AbstractContextManager[Any]]


def _table(x: str | Path | pd.DataFrame) -> pd.DataFrame:
    return x if isinstance(x, pd.DataFrame) else pd.read_parquet(x)


def score_table(
    sample: str | Path | pd.DataFrame,
    stamps: str | Path | pd.DataFrame,
    store: StampStore,
    model: FrozenModel,
    splits: Iterable[str],
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Logits and scores of every quality-ok stamp of ``splits``, joined with its sample row and the cutouts
    stage's quality measurements (:func:`~lensaudit.stamps.labelled.labelled_stamps` with
    ``quality_columns=True``), sorted by store row.

    ``sample`` and ``stamps`` are ``sample.parquet`` and the cutouts index ``stamps.parquet`` (paths or
    tables); ``store`` holds the stamps (nanomaggies). The stamps are read and scored 256 rows at a time
    (:meth:`FrozenModel.score_rows`); ``score = sigmoid(logit)`` (:func:`lensaudit.train.infer.sigmoid`).
    ``progress(total)`` is entered around the scoring, and advanced by the stamps scored.
    """
    df = labelled_stamps(_table(sample), _table(stamps), splits, quality_columns=True)
    rows = df.row.to_numpy()
    if progress is None:
        z = model.score_rows(store, rows)
    else:
        with progress(len(df)) as bar:
            z = model.score_rows(store, rows, on_batch=bar.advance)
    df["logit"], df["score"] = z, sigmoid(z)
    return df


def mine_negatives(scored: pd.DataFrame, top_k: int, model_sha: str) -> pd.DataFrame:
    """The ``top_k`` highest-scoring TRAIN-split negatives of a :func:`score_table` (descending score), with
    the columns of ``evaluate/mined_negatives.parquet``: :data:`MINED_COLUMNS`,
    ``proposed_n2_category='mined'`` and the frozen model's ``model_sha256``.

    >>> df = pd.DataFrame({"galaxy_id": list("abcd"), "ra": 0.0, "dec": 0.0, "n2_category": "",
    ...                    "score": [0.2, 0.9, 0.5, 0.7], "label": [0, 1, 0, 0],
    ...                    "split": ["train", "train", "train", "test"]})
    >>> mine_negatives(df, 5, "abc")[["galaxy_id", "score", "proposed_n2_category"]].values.tolist()
    [['c', 0.5, 'mined'], ['a', 0.2, 'mined']]
    """
    neg = scored[(scored.label == 0) & (scored.split == "train")].nlargest(top_k, "score")
    return neg[MINED_COLUMNS].assign(proposed_n2_category="mined", model_sha256=model_sha)
