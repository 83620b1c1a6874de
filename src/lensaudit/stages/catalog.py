"""catalog: DR10 sweeps → parent cuts → N1/N2 → 11″ known-lens exclusion → HEALPix split (on Dask);
plus the positives ↔ Tractor crossmatch. The build lives in :mod:`lensaudit.catalog.build`; a restarted run
skips the (sweep file, chunk) tasks its ``parts`` ShardLog recorded.

The sweeps come from ``data`` (``ctx.config.sweeps_location``): the synthetic sky's when there is one, whose
fingerprint the optional read ``?sky.sweeps`` chains in.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lensaudit import validation
from lensaudit.catalog.build import (
    build_pool,
    catalog_summary,
    crossmatch_positives,
    exclusion_paths,
    exclusion_positions,
    list_sweeps,
    local_sweeps,
)
from lensaudit.catalog.spatial import ExclusionIndex
from lensaudit.config import CatalogConfig, RunConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.utils import write_parquet_atomic

NAME = "catalog"
SECTIONS = ("catalog", "data", "engine.partitions_per_file")
READS = ("positives.positives", "?sky.sweeps")
WRITES = ("pool", "positives_matched", "parts")


def inputs(cfg: RunConfig) -> list[Path]:
    """The exclusion catalogues and the local sweep files (their checksums enter the fingerprint)."""
    out = exclusion_paths(cfg) + local_sweeps(cfg.sweeps_location)
    return [p for p in out if Path(p).is_file()]


def run(cfg: CatalogConfig, ctx: StageContext) -> Manifest:
    """Build the pool on Dask, crossmatch the positives, gate the catalogue."""
    if ctx.config.data.source == "synthetic":
        ctx.manifest("sky")  # the synthetic sky must have been built: a clear UpstreamError otherwise
    files = list_sweeps(ctx.config.sweeps_location)
    positives = pd.read_parquet(ctx.artifact("positives", "positives"))
    excl = ExclusionIndex(*exclusion_positions(exclusion_paths(ctx.config)), cfg.exclusion_radius_arcsec)
    nparts, parts, pool = ctx.config.engine.partitions_per_file, ctx.shards("parts"), ctx.output("pool")
    with ctx.progress(len(files) * nparts, f"catalog: {len(files)} sweep files") as bar:
        client = ctx.dask_client()
        counts = build_pool(client, files, nparts, pool, parts, cfg, ctx.seed, excl, positives, bar.advance)
    matched = crossmatch_positives(positives, parts.table(), cfg, ctx.seed)
    write_parquet_atomic(matched, ctx.output("positives_matched"))
    extra = catalog_summary(pool, matched, counts)
    covered, n_matched = int(matched.covered.sum()), int(matched.matched.sum())
    counts.update(sweep_files=len(files), positives_covered=covered, positives_matched=n_matched)
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts=counts, gates=gates, extra=extra)
