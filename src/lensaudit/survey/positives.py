"""The positives workflow: read lenscat and extra CSVs (malformed rows reported with line numbers), select
tiers, merge duplicates, locate each lens in its DR10 brick and the footprint, count (the gates are in
:mod:`lensaudit.validation.gates.positives`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

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


def source_rows(cfg: Any) -> int:
    """Data rows (well-formed or not) of every configured source CSV: the denominator of the malformed
    fraction."""
    return sum(len(pd.read_csv(path, dtype=str, keep_default_na=False)) for _, path in sources(cfg))


def malformed_row_keys(lines: list[str]) -> set[str]:
    """The distinct ``<file>:<line>`` of the malformed-row messages (a row can have several problems).

    >>> sorted(malformed_row_keys(["a.csv:3: empty name (…)", "a.csv:3: RA is not … (…)", "b.csv:9: x"]))
    ['a.csv:3', 'b.csv:9']
    """
    return {ln.split(": ", 1)[0] for ln in lines if ln.strip()}
