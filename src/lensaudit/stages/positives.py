"""positives: lenscat (+ extra CSVs, + DESI SL VAC) → tiers, weights, duplicates merged → positives.parquet."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.config import PositivesConfig, RunConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext, log
from lensaudit.survey.bricks import brickid_from_radec, brickname_from_radec
from lensaudit.survey.lenses import (merge_duplicates, packaged_lenscat_path, positive_id, read_desi_sl_vac,
                                     read_lenscat_csv, select_positives)
from lensaudit.utils import write_parquet_atomic

NAME = "positives"
SECTIONS = ("positives",)
DEPENDS: tuple[str, ...] = ()


def _sources(cfg: RunConfig) -> list[tuple[str, Path]]:
    pc = cfg.positives
    out = [("lenscat", packaged_lenscat_path() if pc.lenscat == "packaged" else cfg.resolve_path(pc.lenscat))]
    for p in pc.extra_csv:
        rp = cfg.resolve_path(p)
        out.append((rp.stem, rp))
    return out


def inputs(cfg: RunConfig) -> list[Path]:
    paths = [p for _, p in _sources(cfg)]
    if cfg.positives.desi_sl_vac:
        paths.append(cfg.resolve_path(cfg.positives.desi_sl_vac))
    return [p for p in paths if p.is_file()]


def run(cfg: PositivesConfig, ctx: RunContext) -> Manifest:
    out_dir = ctx.stage_dir(NAME)
    tables, problems = [], []
    for name, path in _sources(ctx.config):
        read = read_lenscat_csv(path, source_catalog=name)
        log.info("positives: read %d rows from %s (%d malformed)", len(read.table) + len(read.problems), path, len(read.problems))
        tables.append(read.table)
        problems += read.problems
    allrows = pd.concat(tables, ignore_index=True)
    sel = select_positives(allrows, cfg.ref_patterns, list(cfg.lens_types),
                           {"A": cfg.tier_a_weight, "B": cfg.tier_b_weight})
    merged, dup_report = merge_duplicates(sel, cfg.duplicate_radius_arcsec)
    merged.insert(0, "positive_id", positive_id(merged.ra, merged.dec))
    merged["brickname"] = brickname_from_radec(merged.ra.to_numpy(), merged.dec.to_numpy()) if len(merged) else []
    merged["brickid"] = brickid_from_radec(merged.ra.to_numpy(), merged.dec.to_numpy()).astype(np.int32)
    merged["in_footprint"] = merged.dec < cfg.footprint_dec_max
    write_parquet_atomic(merged, out_dir / "positives.parquet")
    (out_dir / "malformed_rows.txt").write_text("\n".join(problems) + ("\n" if problems else ""))
    dup_report.to_csv(out_dir / "duplicates.csv", index=False)
    outputs = ["positives.parquet", "malformed_rows.txt", "duplicates.csv"]
    counts = {"input_rows": int(len(allrows) + len(problems)), "selected": int(len(sel)), "positives": int(len(merged)),
              "tier_A": int((merged.tier == "A").sum()), "tier_B": int((merged.tier == "B").sum()),
              "in_footprint": int(merged.in_footprint.sum()), "outside_footprint": int((~merged.in_footprint).sum()),
              "duplicates_merged": int(merged.n_merged.sum()), "malformed_rows": len(problems)}
    for src, n in merged.source_catalog.value_counts().items():
        counts[f"from_{src}"] = int(n)
    if ctx.config.positives.desi_sl_vac:
        vac = read_desi_sl_vac(ctx.config.resolve_path(ctx.config.positives.desi_sl_vac))
        write_parquet_atomic(vac, out_dir / "desi_sl_vac.parquet")
        outputs.append("desi_sl_vac.parquet")
        counts["desi_sl_vac"] = len(vac)
    ra, dec = merged.ra.to_numpy(), merged.dec.to_numpy()
    gates = [
        Gate(name="n_tier_A", value=counts["tier_A"], fail=0.5, higher_is_better=True, message="Tier-A positives present"),
        Gate(name="n_positives_in_footprint", value=counts["in_footprint"], fail=0.5, higher_is_better=True),
        Gate.check("no_nan_coordinates", bool(np.isfinite(ra).all() and np.isfinite(dec).all()), value=int((~np.isfinite(ra)).sum())),
        Gate.check("ra_dec_in_range", bool(((ra >= 0) & (ra < 360)).all() and (np.abs(dec) <= 90).all())),
        Gate.check("unique_positive_id", not merged.positive_id.duplicated().any(), value=int(merged.positive_id.duplicated().sum())),
        Gate.check("malformed_rows", not problems, value=len(problems), warn_only=True,
                   message=f"excluded with line numbers in malformed_rows.txt" if problems else ""),
        Gate(name="duplicates_merged", value=counts["duplicates_merged"], forced="pass",
             message=f"within {cfg.duplicate_radius_arcsec}″; see duplicates.csv"),
    ]
    return Manifest(counts=counts, gates=gates, outputs=outputs)
