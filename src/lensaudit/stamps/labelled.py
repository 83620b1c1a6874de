"""The one labelled-stamps view: quality-ok stamps of the cutouts store joined with their sample rows."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

#: columns the cutouts index copies from the sample for convenience; the sample's own values win in the join
COPIED = ["label", "pool", "split", "psfsize_r", "psfdepth_mag_r"]


def labelled_stamps(
    sample: pd.DataFrame,
    stamps: pd.DataFrame,
    splits: Iterable[str] | None = None,
    quality_columns: bool = False,
) -> pd.DataFrame:
    """Quality-ok stamps (``stamps.parquet``) joined one-to-one with ``sample.parquet`` on ``galaxy_id``,
    optionally restricted to ``splits``, sorted by store row (index reset).

    ``quality_columns`` keeps the cutouts stage's per-stamp quality measurements (core and annulus fluxes, …)
    beside the sample's columns; otherwise only the store ``row`` is added to the sample's columns.

    >>> smp = pd.DataFrame({"galaxy_id": ["a", "b"], "label": [1, 0], "split": ["test", "train"]})
    >>> st = pd.DataFrame({"row": [1, 0], "galaxy_id": ["a", "b"], "quality_ok": [True, True],
    ...                    "label": [1, 0]})
    >>> labelled_stamps(smp, st, splits=["test"])[["row", "galaxy_id", "label"]].values.tolist()
    [[1, 'a', 1]]
    """
    q = stamps[stamps.quality_ok]
    q = q.drop(columns=COPIED, errors="ignore") if quality_columns else q[["row", "galaxy_id"]]
    df = q.merge(sample, on="galaxy_id", how="inner", validate="one_to_one")
    if splits is not None:
        df = df[df.split.isin(list(splits))]
    return df.sort_values("row").reset_index(drop=True)
