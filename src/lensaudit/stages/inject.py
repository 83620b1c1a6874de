"""inject: simulated arcs (our engine) in real N1 test-split hosts over the θE × PSF × depth grid, then the
realism gates (GO/NO-GO). Batches are fixed by the config and recorded in a resume log as they finish, so a
restart resumes (:mod:`lensaudit.selection.injection`); the realism comparison is
:func:`lensaudit.selection.realism.assess`."""

from __future__ import annotations

import pandas as pd

from lensaudit.config import InjectConfig
from lensaudit.report.figures.selection import realism_panel
from lensaudit.run import Manifest, StageContext
from lensaudit.selection import injection, realism
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "inject"
SECTIONS = ("inject", "selection.prior_variants", "train.device")
READS = ("sample.sample", "cutouts.index", "cutouts.stamps", "train.best", "train.model_card")
WRITES = ("injections", "stamps", "realism", "realism_panel", "batches")


def run(cfg: InjectConfig, ctx: StageContext) -> Manifest:
    """Plan the injections, render them batch by batch into ``stamps.zarr``, then judge their realism."""
    sample, index = (
        pd.read_parquet(ctx.artifact("sample", "sample")),
        pd.read_parquet(ctx.artifact("cutouts", "index")),
    )
    grid, pl, host_info = injection.plan(cfg, sample, index, ctx.seed, ctx.config.selection.prior_variants)
    if pl.empty:
        gate = injection.no_hosts_gate(host_info)
        return Manifest(counts={"injections": 0}, gates=[gate], extra={"verdict": "NO-GO"})
    hosts = StampStore.open(ctx.artifact("cutouts", "stamps"))
    with ctx.progress(len(pl), f"inject: {len(pl)} injections in {pl.cell.nunique()} cells") as bar:
        inj, noise, store = injection.inject_all(
            cfg, pl, hosts, ctx.output("stamps"), ctx.shards("batches"), ctx.seed, bar.advance
        )
    write_parquet_atomic(inj, ctx.output("injections"))
    model = load_frozen(ctx.artifact("train", "best").parent, ctx.config.train.device)
    res = realism.assess(cfg, inj, store, noise, realism.positives(sample, index), hosts, model, ctx.seed)
    realism_panel(res.panel, res.titles, ctx.output("realism_panel"), res.n_shown)
    gates = res.gates + injection.coverage_gates(grid, inj, host_info)
    atomic_write_json(ctx.output("realism"), {**res.summary, "hosts": host_info})
    counts = injection.counts(grid, inj, host_info)
    return Manifest(counts=counts, gates=gates, extra={"verdict": res.verdict})
