"""Pass/fail cases of the catalog gates: a pool written as the build writes it (Parquet parts per split, the
HEALPix cells and splits from the catalogue's own functions) and positives crossmatched by
``crossmatch_positives``; each failing case edits one thing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.catalog.build import crossmatch_positives
from lensaudit.catalog.spatial import SPLITS, assign_split, healpix_columns
from lensaudit.utils import write_parquet_atomic
from lensaudit.validation import Inputs

N = 3000
NSIDE = "catalog.nside=1024"  # 3.4′ cells: ~1,200 over the 2°×2° field


def _pool(run: Run, seed: int = 1) -> pd.DataFrame:
    cfg = run.config.catalog
    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(150, 152, N), rng.uniform(1, 3, N)
    df = pd.DataFrame(
        {
            "galaxy_id": [f"1500p020_{i}" for i in range(N)],
            "ra": ra,
            "dec": dec,
            "type": np.array(["SER", "DEV", "REX"])[np.arange(N) % 3],
            **healpix_columns(ra, dec, cfg.nside, cfg.nside_analysis),
        }
    )
    df["split"] = assign_split(df.healpix, cfg.split_fractions, run.config.run.seed)
    n2 = np.arange(N) % 10 == 0
    df["n2_category"] = np.where(n2, "ring_proxy", "")
    df["pool"] = np.where(n2, "N2", "N1")
    return df


def _write_pool(run: Run, df: pd.DataFrame) -> None:
    root = run.path("catalog", "pool")
    for s in SPLITS:
        write_parquet_atomic(df[df.split == s], root / f"split={s}" / "part-sweep-000.parquet")


def make(root: Path, edit=None) -> Inputs:
    run = Run(root, NSIDE)
    df = _pool(run)
    _write_pool(run, edit(df) if edit else df)
    return run.inputs()


def _matched(root: Path, n_matched: int = 19, far: bool = False) -> Inputs:
    """20 positives with sweep coverage; ``n_matched`` within 1″ (the others at 2–4″, or 6″ when ``far``)."""
    run = Run(root, NSIDE)
    n = 20
    pos = pd.DataFrame({"positive_id": [f"L{i}" for i in range(n)], "ra": 150.0 + 0.01 * np.arange(n)})
    pos["dec"] = 2.0
    sep = np.where(np.arange(n) < n_matched, 0.05 + 0.02 * np.arange(n), 6.0 if far else 3.0)
    matches = pd.DataFrame(
        {
            "pos_index": np.arange(n),
            "sep_arcsec": sep,
            "covered": True,
            "galaxy_id": [f"1500p020_{i}" for i in range(n)],
        }
    )
    run.table("catalog", "positives_matched", crossmatch_positives(pos, matches, run.config.catalog, 42))
    return run.inputs()


def _move_into_other_split(df: pd.DataFrame) -> pd.DataFrame:
    """A test galaxy moved next to a train galaxy (its stored split and cell left as they were)."""
    df = df.copy()
    t, tr = df.index[df.split == "test"][0], df.index[df.split == "train"][0]
    df.loc[t, ["ra", "dec"]] = df.loc[tr, ["ra", "dec"]].to_numpy() + 1e-5
    return df


def _set(col: str, value):
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df[col] = df[col].astype(object)
        df.loc[df.index[0], col] = value
        return df

    return edit


CASES = {
    "pool_not_empty": (lambda p: make(p), lambda p: make(p, edit=lambda d: d.iloc[:0])),
    "unique_galaxy_id": (
        lambda p: make(p),
        lambda p: make(p, edit=lambda d: d.assign(galaxy_id=d.galaxy_id.where(d.index != 1, d.galaxy_id[0]))),
    ),
    "no_nulls_critical": (lambda p: make(p), lambda p: make(p, edit=_set("type", None))),
    "coordinates_in_range": (lambda p: make(p), lambda p: make(p, edit=_set("dec", 95.0))),
    "one_split_per_cell": (lambda p: make(p), lambda p: make(p, edit=_move_into_other_split)),
    "split_fraction_*": (lambda p: make(p), lambda p: make(p, edit=lambda d: d.assign(split="train"))),
    "n2_fraction": (
        lambda p: make(p),
        lambda p: make(p, edit=lambda d: d.assign(pool="N1", n2_category="")),
    ),
    "types_present": (lambda p: make(p), lambda p: make(p, edit=lambda d: d.assign(type="SER"))),
    "positive_match_rate": (lambda p: _matched(p), lambda p: _matched(p, n_matched=8)),
    "match_sep_p90_arcsec": (
        lambda p: _matched(p, n_matched=20),
        lambda p: _matched(p, n_matched=10, far=True),
    ),
}
