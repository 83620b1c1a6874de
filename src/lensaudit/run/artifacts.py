"""The artifact registry: every file a stage writes, by (stage, name).

A stage finds another stage's file only through ``ctx.artifact(stage, name)`` and its own through
``ctx.output(name)``; both resolve here. Paths are relative to the stage's root: ``<run_dir>/<stage>/`` for
every stage except ``sky``, whose root is the configured ``data.sky_dir``.

>>> ARTIFACTS["evaluate"]["scores"]
'scores.parquet'
>>> "report" in STAGE_ORDER
True
"""

from __future__ import annotations

STAGE_ORDER: tuple[str, ...] = (
    "sky",
    "positives",
    "catalog",
    "sample",
    "cutouts",
    "train",
    "evaluate",
    "inject",
    "selection",
    "population",
    "failures",
    "ensemble",
    "mine",
    "report",
)

CONFIG = "config.yaml"
MANIFEST = "_stage.json"
INPROGRESS = "_inprogress.json"

ARTIFACTS: dict[str, dict[str, str]] = {
    "sky": {
        "sweeps": "sweep",
        "coadds": "coadd",
        "survey_bricks": "survey-bricks.fits.gz",
        "conditions": "conditions.parquet",
        "truth": "truth.parquet",
        "lenses": "lenses.csv",
        "check": "sky_check.json",
        "galaxy_zoo": "gz_decals_volunteers_5.parquet",
        "desi_sl_vac": "desi-sl-vac-v1.fits",
    },
    "positives": {
        "positives": "positives.parquet",
        "malformed_rows": "malformed_rows.txt",
        "duplicates": "duplicates.csv",
        "desi_sl_vac": "desi_sl_vac.parquet",
    },
    "catalog": {
        "pool": "pool",
        "positives_matched": "positives_matched.parquet",
        "parts": "_parts",
    },
    "sample": {"sample": "sample.parquet", "strata": "strata.parquet"},
    "cutouts": {"stamps": "stamps.zarr", "index": "stamps.parquet", "shards": "_shards"},
    "train": {
        "best": "best.pt",
        "last": "last.pt",
        "model_card": "model_card.json",
        "history": "history.jsonl",
        "curves": "curves.png",
    },
    "evaluate": {
        "scores": "scores.parquet",
        "metrics": "metrics.json",
        "stratified": "stratified.parquet",
        "roc": "roc.png",
        "reliability": "reliability.png",
        "scores_by_category": "scores_by_category.png",
        "stratified_plot": "stratified.png",
        "gallery_top_negatives": "gallery_top_negatives.png",
        "gallery_lowest_tier_A": "gallery_lowest_tier_A.png",
        "mined_negatives": "mined_negatives.parquet",
    },
    "inject": {
        "psf_stars": "psf_stars.parquet",
        "injections": "injections.parquet",
        "stamps": "stamps.zarr",
        "realism": "realism.json",
        "realism_panel": "realism_panel.png",
        "batches": "_batches",
    },
    "selection": {
        "injection_scores": "injection_scores.parquet",
        "table_fits": "selection_function.fits",
        "table": "selection_function.parquet",
        "table_alt": "selection_function_alt.parquet",
        "marginal": "selection_marginal.parquet",
        "robustness": "robustness.parquet",
        "closure": "closure.json",
        "systematics": "systematics.json",
        "heatmaps": "heatmaps.png",
        "marginals": "marginals.png",
        "variants": "variants.png",
        "closure_plot": "closure.png",
    },
    "ensemble": {
        "members": "members",
        "metrics": "metrics.json",
        "scores": "scores.parquet",
        "selection_members": "selection_members.parquet",
    },
    "mine": {"rounds": "rounds", "mined": "mined.parquet", "metrics": "metrics.json"},
    "population": {
        "sky": "sky",
        "lenses": "lenses.parquet",
        "closure": "closure.json",
        "closure_plot": "closure.png",
    },
    "failures": {
        "taxonomy": "taxonomy.parquet",
        "summary": "failures.json",
        "fpr_by_category_conditions": "fpr_by_category_conditions.parquet",
        "collapse_cells": "collapse_cells.parquet",
        "galleries": "galleries",
    },
    "report": {"html": "index.html", "skymap": "skymap.png"},
}

#: artifacts that are work-in-progress bookkeeping (resume logs), not results
SCRATCH = {("catalog", "parts"), ("cutouts", "shards"), ("inject", "batches")}


def relpath(stage: str, name: str) -> str:
    """The path of an artifact relative to its stage's root; KeyError names the unknown artifact.

    >>> relpath("sample", "sample")
    'sample.parquet'
    """
    try:
        return ARTIFACTS[stage][name]
    except KeyError:
        raise KeyError(f"no artifact {stage}.{name} in the registry (lensaudit.run.artifacts)") from None
