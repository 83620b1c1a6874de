"""positives: lenscat (+ extra CSVs, + DESI SL VAC) → tiers, weights, duplicates merged →
positives.parquet."""

from __future__ import annotations

from pathlib import Path

from lensaudit import validation
from lensaudit.config import PositivesConfig, RunConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.sky.catalogues import VAC_FILE
from lensaudit.survey import positives as P
from lensaudit.survey.lenses import independent_path, merge_duplicates, read_desi_sl_vac, select_positives
from lensaudit.utils import write_parquet_atomic

NAME = "positives"
SECTIONS = ("positives", "data.source", "data.sky_dir")
READS: tuple[str, ...] = ()
WRITES = ("positives", "malformed_rows", "duplicates", "desi_sl_vac")


def inputs(cfg: RunConfig) -> list[Path]:
    paths = [p for _, p in P.sources(cfg)]
    vac = independent_path(cfg, cfg.positives.desi_sl_vac, VAC_FILE)
    if vac is not None:
        paths.append(vac)
    return [p for p in paths if p.is_file()]


def run(cfg: PositivesConfig, ctx: StageContext) -> Manifest:
    """Read, select, merge and locate the positives; write them, the malformed rows and the merged
    duplicates."""
    allrows, problems = P.read(ctx.config)
    sel = select_positives(
        allrows, cfg.ref_patterns, list(cfg.lens_types), {"A": cfg.tier_a_weight, "B": cfg.tier_b_weight}
    )
    merged, dup_report = merge_duplicates(sel, cfg.duplicate_radius_arcsec)
    merged = P.locate(merged, cfg.footprint_dec_max)
    write_parquet_atomic(merged, ctx.output("positives"))
    ctx.output("malformed_rows").write_text("\n".join(problems) + ("\n" if problems else ""))
    dup_report.to_csv(ctx.output("duplicates"), index=False)
    counts = P.counts(allrows, problems, sel, merged)
    vac_path = independent_path(ctx.config, cfg.desi_sl_vac, VAC_FILE)
    if vac_path is not None:
        vac = read_desi_sl_vac(vac_path)
        write_parquet_atomic(vac, ctx.output("desi_sl_vac"))
        counts["desi_sl_vac"] = len(vac)
    return Manifest(counts=counts, gates=validation.evaluate(NAME, validation.stage_inputs(ctx)))
