"""cutouts: sample → 101×101 grz stamps (+ invvar, maskbits) in a sharded Zarr store → quality gates.

Row i of the store is row i of sample.parquet. The fetching, the quality table and the gates live in
:mod:`lensaudit.stamps.fetch`; a restarted run fetches only the shards its ``shards`` ShardLog lacks.
"""

from __future__ import annotations

import pandas as pd

from lensaudit import validation
from lensaudit.config import CutoutsConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.stamps.fetch import (
    failure_reasons,
    fetch_stamps,
    open_store,
    stamps_counts,
    stamps_table,
)
from lensaudit.utils import write_parquet_atomic

NAME = "cutouts"
#: the providers read cutouts.*, data.* (service URL and layer, coadd_dir) and run.seed
SECTIONS = ("cutouts", "data")
READS = ("sample.sample",)
WRITES = ("stamps", "index", "shards")


def run(cfg: CutoutsConfig, ctx: StageContext) -> Manifest:
    """Fill the stamp store from the configured provider, measure every stamp, gate the fraction usable."""
    sample = pd.read_parquet(ctx.artifact("sample", "sample"))
    store = open_store(ctx.output("stamps"), len(sample), cfg)
    log = ctx.shards("shards")
    with ctx.progress(len(sample), f"cutouts ({cfg.provider}): stamps") as bar:
        fetch_stamps(store, sample, ctx.config.full(), log, ctx.dask_client, bar.advance)
    stamps = stamps_table(store, log.table(), sample, cfg)
    write_parquet_atomic(stamps, ctx.output("index"))
    extra = {"failures_by_reason": failure_reasons(stamps)}
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts=stamps_counts(stamps), gates=gates, extra=extra)
