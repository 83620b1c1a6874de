"""inject: simulated arcs (our engine) in real held-out N1 hosts over the θE × PSF × depth grid, then the
realism gates (GO/NO-GO). Batches are fixed by the config and recorded in a resume log as they finish, so a
restart resumes (:mod:`lensaudit.selection.injection`). The gates are computed from the written artifacts
(:mod:`lensaudit.validation.gates.inject`); the verdict is NO-GO when a realism gate fails."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lensaudit import validation
from lensaudit.config import InjectConfig
from lensaudit.gates import Gate
from lensaudit.report.figures.selection import realism_panel
from lensaudit.run import Manifest, StageContext
from lensaudit.selection import injection, psfshape, realism
from lensaudit.selection.hosts import host_pool
from lensaudit.stamps.store import StampStore
from lensaudit.utils import atomic_write_json, write_parquet_atomic
from lensaudit.validation.gates import inject as gates_of

NAME = "inject"
SECTIONS = ("inject", "cutouts", "data", "evaluate.operating_point")
READS = (
    "sample.sample",
    "cutouts.index",
    "cutouts.stamps",
    "train.best",
    "train.model_card",
    "evaluate.scores",
    "evaluate.metrics",
    "?sky.sweeps",
)
WRITES = ("psf_stars", "injections", "stamps", "realism", "realism_panel", "batches")


def run(cfg: InjectConfig, ctx: StageContext) -> Manifest:
    """Plan the injections, render them batch by batch into ``stamps.zarr``, then judge their realism."""
    sample, index = (
        pd.read_parquet(ctx.artifact("sample", "sample")),
        pd.read_parquet(ctx.artifact("cutouts", "index")),
    )
    betas, psf_info = _host_psf(cfg, ctx, sample, index)
    inp = validation.stage_inputs(ctx)
    grid, pl, host_info = injection.plan(cfg, sample, index, ctx.seed, betas, gates_of.excluded_hosts(inp))
    host_info["psf"] = psf_info
    if pl.empty:
        write_parquet_atomic(pd.DataFrame({"row": np.zeros(0, np.int64)}), ctx.output("injections"))
        gates = validation.evaluate(NAME, inp)
        atomic_write_json(ctx.output("realism"), _summary(gates, None, host_info))
        return Manifest(counts={"injections": 0}, gates=gates, extra={"verdict": gates_of.verdict(gates)})
    hosts = StampStore.open(ctx.artifact("cutouts", "stamps"))
    with ctx.progress(len(pl), f"inject: {len(pl)} injections in {pl.cell.nunique()} cells") as bar:
        client = ctx.dask_client() if cfg.distributed else None
        inj, _ = injection.inject_all(
            cfg, pl, hosts, ctx.output("stamps"), ctx.shards("batches"), ctx.seed, bar.advance, client
        )
    write_parquet_atomic(inj, ctx.output("injections"))
    gates = validation.evaluate(NAME, inp)
    comp = gates_of.comparison(inp)  # the gates' own draw (cached): the panel shows what they compared
    if comp is not None:
        stamps, titles, k = realism.panel(comp, inj)
        realism_panel(stamps, titles, ctx.output("realism_panel"), k)
    atomic_write_json(ctx.output("realism"), _summary(gates, comp, host_info))
    counts = injection.counts(grid, inj, host_info)
    return Manifest(counts=counts, gates=gates, extra={"verdict": gates_of.verdict(gates)})


def _host_psf(
    cfg: InjectConfig, ctx: StageContext, sample: pd.DataFrame, index: pd.DataFrame
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The host bricks' Moffat β from their stars (``psf_stars.parquet``), or None with ``psf_shape``
    'fixed' (every injection at ``inject.psf_beta``)."""
    if cfg.psf_shape == "fixed":
        return None, {"psf_shape": "fixed", "beta": cfg.psf_beta}
    cand, _ = host_pool(sample, index, "all", cfg.host_splits)
    bricks = sorted(set(cand.brickname.astype(str))) if len(cand) else []
    with ctx.progress(None, f"inject: fitting the PSF stars of {len(bricks)} host bricks") as bar:
        stars = psfshape.measure_stars(ctx.config.full(), bricks, bar.advance) if bricks else None
    stars = stars if stars is not None else pd.DataFrame(columns=list(psfshape.STAR_COLUMNS))
    write_parquet_atomic(stars, ctx.output("psf_stars"))
    betas = psfshape.brick_betas(stars, bricks, cfg)
    return betas, psfshape.summary(stars, betas)


def _summary(gates: list[Gate], comp: realism.Comparison | None, host_info: dict) -> dict[str, Any]:
    """``realism.json``: the realism gates, the probe, what was compared, the verdict and the host pool."""
    real = [g for g in gates if gates_of.is_realism(g.name)]
    by_name = {g.name: g for g in real}
    snr = [by_name.get(f"arc_snr_p{p}_ratio") for p in (10, 50, 90)]
    probe = by_name.get("discriminator_auc")
    return {
        "gates": [g.to_dict() for g in real],
        "probe": {"value": probe.value, "ci68": probe.ci, **probe.detail} if probe is not None else None,
        "n_real": len(comp.pos) if comp is not None else 0,
        "n_inj_compared": len(comp.pick) if comp is not None else 0,
        "matching": "injections drawn with weights reproducing the real positives' (PSF, depth) cells",
        "real_snr_percentiles": [g.detail.get("real") if g else None for g in snr] if comp else None,
        "inj_snr_percentiles": [g.detail.get("injected") if g else None for g in snr] if comp else None,
        "verdict": gates_of.verdict(gates),
        "hosts": host_info,
    }
