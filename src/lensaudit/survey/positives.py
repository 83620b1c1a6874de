"""The positives workflow: read lenscat and extra CSVs (malformed rows reported with line numbers), select
tiers, merge duplicates, locate each lens in its DR10 brick and the footprint, count and gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from lensaudit.config import PositivesConfig
from lensaudit.gates import Gate
from lensaudit.run import log
from lensaudit.survey.bricks import brickid_from_radec, brickname_from_radec
from lensaudit.survey.lenses import packaged_lenscat_path, positive_id, read_lenscat_csv


def config_path(cfg: Any, value: str) -> Path:
    """A configured path, ``{run_dir}`` substituted."""
    return cast(Path, cfg.resolve_path(value))


def sources(cfg: Any) -> list[tuple[str, Path]]:
    """(source_catalog name, path) of the lenscat and every extra CSV."""
    pc = cfg.positives
    out = [("lenscat", packaged_lenscat_path() if pc.lenscat == "packaged" else config_path(cfg, pc.lenscat))]
    for p in pc.extra_csv:
        rp = config_path(cfg, p)
        out.append((rp.stem, rp))
    return out


def read(cfg: Any) -> tuple[pd.DataFrame, list[str]]:
    """Every source's rows (concatenated) and the malformed-row messages (with line numbers)."""
    tables, problems = [], []
    for name, path in sources(cfg):
        read = read_lenscat_csv(path, source_catalog=name)
        log.info(
            "positives: read %d rows from %s (%d malformed)",
            len(read.table) + len(read.problems),
            path,
            len(read.problems),
        )
        tables.append(read.table)
        problems += read.problems
    return pd.concat(tables, ignore_index=True), problems


def locate(merged: pd.DataFrame, dec_max: float) -> pd.DataFrame:
    """Add the positive_id (first column), the DR10 brick and the footprint flag (Dec < ``dec_max`` deg)."""
    merged.insert(0, "positive_id", positive_id(merged.ra, merged.dec))
    merged["brickname"] = (
        brickname_from_radec(merged.ra.to_numpy(), merged.dec.to_numpy()) if len(merged) else []
    )
    merged["brickid"] = brickid_from_radec(merged.ra.to_numpy(), merged.dec.to_numpy()).astype(np.int32)
    merged["in_footprint"] = merged.dec < dec_max
    return merged


def counts(
    allrows: pd.DataFrame, problems: list[str], sel: pd.DataFrame, merged: pd.DataFrame
) -> dict[str, int]:
    counts = {
        "input_rows": int(len(allrows) + len(problems)),
        "selected": int(len(sel)),
        "positives": int(len(merged)),
        "tier_A": int((merged.tier == "A").sum()),
        "tier_B": int((merged.tier == "B").sum()),
        "in_footprint": int(merged.in_footprint.sum()),
        "outside_footprint": int((~merged.in_footprint).sum()),
        "duplicates_merged": int(merged.n_merged.sum()),
        "malformed_rows": len(problems),
    }
    for src, n in merged.source_catalog.value_counts().items():
        counts[f"from_{src}"] = int(n)
    return counts


def gates(
    merged: pd.DataFrame, counts: dict[str, int], problems: list[str], cfg: PositivesConfig
) -> list[Gate]:
    ra, dec = merged.ra.to_numpy(), merged.dec.to_numpy()
    dup_ids = int(merged.positive_id.duplicated().sum())
    return [
        Gate(
            name="n_tier_A",
            value=counts["tier_A"],
            fail=0.5,
            higher_is_better=True,
            message="Tier-A positives present",
        ),
        Gate(name="n_positives_in_footprint", value=counts["in_footprint"], fail=0.5, higher_is_better=True),
        Gate.check(
            "no_nan_coordinates",
            bool(np.isfinite(ra).all() and np.isfinite(dec).all()),
            value=int((~np.isfinite(ra)).sum()),
        ),
        Gate.check("ra_dec_in_range", bool(((ra >= 0) & (ra < 360)).all() and (np.abs(dec) <= 90).all())),
        Gate.check("unique_positive_id", not merged.positive_id.duplicated().any(), value=dup_ids),
        Gate.check(
            "malformed_rows",
            not problems,
            value=len(problems),
            warn_only=True,
            message="excluded with line numbers in malformed_rows.txt" if problems else "",
        ),
        Gate(
            name="duplicates_merged",
            value=counts["duplicates_merged"],
            forced="pass",
            message=f"within {cfg.duplicate_radius_arcsec}″; see duplicates.csv",
        ),
    ]
