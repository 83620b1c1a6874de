"""The per-partition pool builder: one pure function from raw sweep rows to pool rows and positive matches."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lensaudit.catalog.columns import canonical
from lensaudit.catalog.cuts import nobs_z_bin, parent_mask, type_bin
from lensaudit.catalog.n2_rules import classify
from lensaudit.catalog.spatial import ExclusionIndex, assign_split, healpix_columns, nearest_matches
from lensaudit.config import CatalogConfig

#: per-object Tractor measurements and observing conditions (lower-case pool names), in table column order
MEASUREMENTS = [
    "nobs_g",
    "nobs_r",
    "nobs_z",
    "psfsize_g",
    "psfsize_r",
    "psfsize_z",
    "psfdepth_g",
    "psfdepth_r",
    "psfdepth_z",
    "psfdepth_mag_g",
    "psfdepth_mag_r",
    "psfdepth_mag_z",
    "galdepth_g",
    "galdepth_r",
    "galdepth_z",
    "ebv",
    "flux_g",
    "flux_r",
    "flux_z",
    "flux_w1",
    "mag_g",
    "mag_r",
    "mag_z",
    "shape_r",
    "shape_e1",
    "shape_e2",
    "sersic",
    "maskbits",
    "g_r",
    "r_z",
    "ellipticity",
    "rchisq_r",
]
#: the Tractor row copied beside each positive's nearest match
TRACTOR_FOR_POSITIVES = [
    "galaxy_id",
    "release",
    "brickid",
    "brickname",
    "objid",
    "type",
    "ra",
    "dec",
    *MEASUREMENTS,
]


@dataclass
class PartitionResult:
    pool: pd.DataFrame
    matches: pd.DataFrame
    counts: dict


def build_partition(
    raw: pd.DataFrame,
    cfg: CatalogConfig,
    seed: int,
    exclusion: ExclusionIndex,
    pos_ra: np.ndarray,
    pos_dec: np.ndarray,
    provenance: dict,
) -> PartitionResult:
    """Raw sweep rows → (pool rows with N1/N2, strata, HEALPix, split, provenance;
    positive match candidates)."""
    df = canonical(raw)
    df["sweep_row"] = raw.index.to_numpy(np.int64)
    near = nearest_matches(pos_ra, pos_dec, df, cfg.match_report_radius_arcsec)
    cover = nearest_matches(pos_ra, pos_dec, df, 30.0)
    matches = pd.concat(
        [
            near.reset_index(drop=True),
            df.iloc[near.row.to_numpy()][TRACTOR_FOR_POSITIVES].reset_index(drop=True),
        ],
        axis=1,
    )
    matches = matches.drop(columns=["row"]).rename(columns={"ra": "tractor_ra", "dec": "tractor_dec"})
    matches["covered"] = True
    cov = pd.DataFrame({"pos_index": cover.pos_index, "covered": True})
    keep = parent_mask(df, cfg).to_numpy()
    excluded = exclusion.near(df.ra.to_numpy(), df.dec.to_numpy())
    pool = df[keep & ~excluded].copy()
    pool["nobs_z_bin"] = nobs_z_bin(pool.nobs_z, cfg.nobs_z_edges)
    pool["type_bin"] = type_bin(pool.type)
    for k, v in healpix_columns(pool.ra, pool.dec, cfg.nside, cfg.nside_analysis).items():
        pool[k] = v
    pool["split"] = assign_split(pool.healpix, cfg.split_fractions, seed)
    pool["n2_category"] = classify(pool, cfg.n2_rules).to_numpy()
    pool["pool"] = np.where(pool.n2_category == "", "N1", "N2")
    for k, v in provenance.items():
        pool[k] = v
    counts = {
        "rows": int(len(df)),
        "parent": int(keep.sum()),
        "excluded_near_lens": int((keep & excluded).sum()),
        "pool": int(len(pool)),
    }
    return PartitionResult(
        pool.reset_index(drop=True),
        pd.concat([matches, cov[~cov.pos_index.isin(matches.pos_index)]], ignore_index=True),
        counts,
    )


def pool_parts(pool_dir) -> list:
    """The pool's Parquet parts, sorted (``pool/split=<s>/part-*.parquet``)."""
    from pathlib import Path

    return sorted(Path(pool_dir).glob("split=*/part-*.parquet"))


def read_pool(pool_dir, columns: list[str] | None = None) -> pd.DataFrame:
    """Read the whole pool (all splits) into one DataFrame, sorted by galaxy_id."""
    frames = [pd.read_parquet(p, columns=columns) for p in pool_parts(pool_dir)]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=columns or [])
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values("galaxy_id", kind="stable").reset_index(drop=True) if "galaxy_id" in df else df
