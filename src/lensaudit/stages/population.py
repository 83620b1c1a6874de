"""population: a second synthetic sky whose lens sources differ (``population.src_mag_offset`` fainter,
``population.src_size_scale`` larger), rendered into this stage's ``sky`` directory (resumable per brick like
the sky stage); its catalogued lenses are cut out, quality-checked as the cutouts stage does, and scored by
the frozen finder (hash checked against the train manifest) at the evaluate stage's operating threshold →
``lenses.parquet``. Synthetic data only; it runs in the pipeline when ``population.enabled``. The science
lives in :mod:`lensaudit.selection.population`, the gates in :mod:`lensaudit.validation.gates.population`."""

from __future__ import annotations

from lensaudit import validation
from lensaudit.config import PopulationConfig
from lensaudit.errors import ConfigError
from lensaudit.report.figures.selection import closure_plot
from lensaudit.run import Manifest, StageContext
from lensaudit.selection.conditional import Tables, closure_record, with_brackets
from lensaudit.selection.grid import grid_of
from lensaudit.selection.population import (
    catalogue_positions,
    catalogued_lenses,
    cut_out,
    population_counts,
    score_lenses,
    sky_truth,
    variant_sky,
)
from lensaudit.selection.scoring import check_frozen
from lensaudit.sky.build import build_sky, plan
from lensaudit.train.infer import FrozenModel, load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "population"
#: the second sky copies ``sky``; its stamps follow ``cutouts``; the finder runs on ``train.device``; the
#: brackets' tables are rebuilt on the ``inject`` grid
SECTIONS = ("population", "sky", "cutouts", "data.source", "train.device", "selection", "inject")
READS = (
    "train.best",
    "train.model_card",
    "evaluate.scores",
    "sky.truth",
    "selection.table",
    "selection.table_alt",
    "selection.marginal",
    "selection.injection_scores",
)
WRITES = ("sky", "lenses", "closure", "closure_plot")


def run(cfg: PopulationConfig, ctx: StageContext) -> Manifest:
    """Render the second sky, cut out and quality-check its catalogued lenses, score them, judge the run's
    selection function on them (the closure ladder), gate the result."""
    if ctx.config.data.source != "synthetic":
        raise ConfigError("the population stage renders a synthetic sky: it needs data.source=synthetic")
    sky_cfg, root = variant_sky(ctx.config.sky, cfg), ctx.output("sky")
    with ctx.progress(len(plan(sky_cfg, ctx.seed)), "population: rendering the second sky") as bar:
        sky_counts = build_sky(root, sky_cfg, ctx.seed, sky_cfg.workers, on_brick=lambda _: bar.advance(1))
    op = float(ctx.manifest("evaluate").extra["operating_threshold"])
    truth = sky_truth(root)
    lenses = catalogued_lenses(truth, catalogue_positions(root))
    with ctx.progress(len(lenses), "population: cutting out lenses") as bar:
        cuts = cut_out(lenses, ctx.config.full(), root, bar.advance)
    with ctx.progress(int(cuts.quality_ok.sum()), "population: scoring lenses") as bar:
        scored = score_lenses(lenses, cuts, _model(ctx), op, bar.advance)
    write_parquet_atomic(scored, ctx.output("lenses"))
    tables = Tables.read(
        *(ctx.artifact("selection", n) for n in ("table", "table_alt", "marginal", "injection_scores"))
    )
    tables = with_brackets(tables, grid_of(ctx.config.inject)[0], ctx.config.inject, ctx.config.selection)
    clo = closure_record(tables, ctx.config.selection, scored, op, where="the second sky", seed=ctx.seed)
    atomic_write_json(ctx.output("closure"), clo)
    closure_plot(clo, ctx.output("closure_plot"), "the second sky")
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    extra = {
        "operating_threshold": op,
        "dropped_by_reason": cuts.reasons,
        "sky": sky_cfg.model_dump(mode="json"),
    }
    return Manifest(counts=population_counts(sky_counts, truth, cuts, scored), gates=gates, extra=extra)


def _model(ctx: StageContext) -> FrozenModel:
    """The frozen finder, its hash checked against the train manifest."""
    model = load_frozen(
        best=ctx.artifact("train", "best"),
        card=ctx.artifact("train", "model_card"),
        device=ctx.config.train.device,
    )
    check_frozen(model, ctx.manifest("train").extra.get("frozen_sha256"))
    return model
