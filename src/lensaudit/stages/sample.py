"""sample: pool → negatives per (nobs_z bin, TYPE, r-mag bin) stratum at the configured ratio to the
positives, N1:N2 within each stratum, hash-deterministic and order-free (two passes over the pool on Dask;
the workflow lives in :mod:`lensaudit.catalog.sampling`)."""

from __future__ import annotations

import pandas as pd

from lensaudit import validation
from lensaudit.catalog.pool import pool_parts
from lensaudit.catalog.sampling import draw_sample, exclude_independent, sample_counts, sampling_positives
from lensaudit.config import SampleConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.utils import write_parquet_atomic

NAME = "sample"
SECTIONS = ("sample", "catalog")
READS = ("catalog.positives_matched", "catalog.pool", "?positives.desi_sl_vac")
WRITES = ("sample", "strata")


def run(cfg: SampleConfig, ctx: StageContext) -> Manifest:
    """Matched positives through the parent cuts, pool quotas per stratum, the selected negatives."""
    matched = pd.read_parquet(ctx.artifact("catalog", "positives_matched"))
    pos, n_cut = sampling_positives(matched, ctx.config.catalog, cfg.mag_r_edges)
    parts = [str(p) for p in pool_parts(ctx.artifact("catalog", "pool"))]
    with ctx.progress(2 * len(parts), "sample: two passes over the pool") as bar:
        sample, q = draw_sample(ctx.dask_client(), pos, parts, cfg, ctx.seed, on_part=lambda: bar.advance(1))
    sample, n_vac = _without_vac(ctx, sample)
    write_parquet_atomic(sample, ctx.output("sample"))
    write_parquet_atomic(q, ctx.output("strata"))
    counts = {**sample_counts(sample, q), "positives_failing_parent_cuts": n_cut, **n_vac}
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    return Manifest(counts=counts, gates=gates, extra={"strata": q.to_dict(orient="records")})


def _without_vac(ctx: StageContext, sample: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The sample without the train rows near a DESI SL VAC system (catalog.exclusion_radius_arcsec), when
    the positives stage read a VAC (issue 20: the VAC is an independent validation set)."""
    vac = ctx.artifact("positives", "desi_sl_vac")
    if not vac.is_file():
        return sample, {}
    v = pd.read_parquet(vac)
    r = ctx.config.catalog.exclusion_radius_arcsec
    return exclude_independent(sample, v.ra.to_numpy(), v.dec.to_numpy(), r)
