"""The evaluate and failures stages on a tiny run: their contracts, artifacts, manifests, gates (recomputed
from the artifacts as ``lensaudit verify`` does) and the failure audit with and without the synthetic sky's
truth."""

from __future__ import annotations

import inspect
import json
import shutil

import pandas as pd
import pytest

from lensaudit import validation
from lensaudit.audit.evaluation import thresholds
from lensaudit.audit.failure_modes import TAXONOMY_COLUMNS, failure_audit
from lensaudit.audit.scoring import SCORE_COLUMNS
from lensaudit.config import EvaluateConfig, load_config
from lensaudit.run import ARTIFACTS, RunContext, StageContext, run_stage
from lensaudit.stages import evaluate, failures, get_stage
from lensaudit.stamps.store import StampStore
from lensaudit.validation import Inputs
from lensaudit.validation.gates.evaluate import SHORTCUT_GATES
from lensaudit.validation.verify import verify_run

METRIC_KEYS = [
    "model_sha256", "n_test", "n_test_pos", "auc_test", "auc_val", "auc_val_minus_test", "thresholds",
    "operating_point", "operating_threshold", "recall_tier_A", "recall_tier_B", "tpr0", "tpr10", "ece",
    "ece_calibrated", "temperature", "reliability", "fpr_by_category", "shortcuts", "desi_sl_vac",
    "auc_train", "n_train_scored", "red_flags", "calibration_by_stratum", "score_distributions",
    "independence", "galaxy_zoo",
]  # fmt: skip
SMALL = [
    "evaluate.n_bootstrap=20",
    "evaluate.top_k=3",
    "failures.gallery_size=2",
    "evaluate.operating_point=fpr=0.2",
]
EVALUATE_GATES = [
    "test_auc", "tier_A_recall_at_op", "ece", "fpr_ring_proxy", "fpr_edge_on_proxy", "fpr_spiral_proxy",
    "fpr_blue_clumpy", "fpr_large_galaxy", "core_only_auc", "inner_core_only_auc", "core_colour_auc",
    "annulus_only_auc", "core_brightness_ratio", "noise_mad_ratio", "val_test_auc_shift",
]  # fmt: skip


@pytest.mark.parametrize("mod", [evaluate, failures])
def test_stage_contract(mod):
    assert len(inspect.getsourcelines(mod.run)[0]) <= 30
    src = inspect.getsource(mod)
    assert "lensaudit.pipeline" not in src and "matplotlib" not in src
    for r in mod.READS:
        stage, _, name = r.lstrip("?").partition(".")
        assert name in ARTIFACTS[stage], r
    assert set(mod.WRITES) <= set(ARTIFACTS[mod.NAME])


@pytest.fixture(scope="module")
def ran(audit_world, tmp_path_factory):
    run = tmp_path_factory.mktemp("stages") / "run"
    shutil.copytree(audit_world["run"], run)
    ctx = RunContext(load_config(None, SMALL, run_dir=run), quiet=True)
    m_eval = run_stage(get_stage("evaluate"), ctx)
    m_fail = run_stage(get_stage("failures"), ctx)
    return run, ctx, m_eval, m_fail


def test_evaluate_stage_artifacts_and_manifest(ran):
    run, _, m, _ = ran
    assert m.status == "complete"
    assert set(m.outputs) == {v for k, v in ARTIFACTS["evaluate"].items() if k != "mined_negatives"}
    assert list(m.extra) == ["trustworthy", "operating_threshold", "model_sha256", "auc_test"]
    metrics = json.loads((run / "evaluate" / "metrics.json").read_text())
    assert list(metrics) == METRIC_KEYS and metrics["desi_sl_vac"] is None
    assert metrics["operating_threshold"] == m.extra["operating_threshold"]
    assert metrics["model_sha256"] == m.extra["model_sha256"]
    assert [g.name for g in m.gates] == EVALUATE_GATES and not any(g.blocking for g in m.gates)
    gates = {g.name: g for g in m.gates}
    assert gates["test_auc"].value == metrics["auc_test"]["value"]
    assert gates["inner_core_only_auc"].value == metrics["shortcuts"]["core_only"]["value"]
    assert gates["core_only_auc"].value is not None  # the r < 10 px aperture is in the cutouts index
    # the tiny world has no large_galaxy / blue_clumpy negative: those categories cannot be audited
    assert gates["fpr_large_galaxy"].status == "fail" and gates["fpr_ring_proxy"].ci is not None
    assert m.extra["trustworthy"] is not any(gates[n].status == "fail" for n in SHORTCUT_GATES)
    scores = pd.read_parquet(run / "evaluate" / "scores.parquet")
    assert list(scores.columns) == SCORE_COLUMNS and set(scores.split) == {"val", "test"}
    assert scores.row.is_monotonic_increasing
    strata = pd.read_parquet(run / "evaluate" / "stratified.parquet")
    assert list(strata.by.unique()) == ["psf_bin", "depth_bin", "nobs_z_bin", "type"]


def test_failures_stage_artifacts_galleries_and_truth(ran):
    run, _, m_eval, m = ran
    assert m.status == "complete"
    assert set(m.outputs) == set(ARTIFACTS["failures"].values())
    summary = json.loads((run / "failures" / "failures.json").read_text())
    assert summary["operating_threshold"] == m_eval.extra["operating_threshold"]
    assert summary["galleries"] and sorted(
        p.name for p in (run / "failures" / "galleries").iterdir()
    ) == sorted(summary["galleries"])
    assert summary["taxonomy_accuracy"]["n"] > 0  # synthetic source and truth present: the rules are scored
    tax = pd.read_parquet(run / "failures" / "taxonomy.parquet")
    assert list(tax.columns) == TAXONOMY_COLUMNS
    assert m.counts["false_positives"] == int((tax.kind_of_failure == "false_positive").sum()) > 0
    collapse = pd.read_parquet(run / "failures" / "collapse_cells.parquet")
    assert collapse.cell.tolist() == [0, 3] and m.counts["collapse_cells"] == 2  # cell 2 is insufficient
    assert [g.name for g in m.gates] == [
        "taxonomy_accuracy_vs_truth", "missed_taxonomy_accuracy_vs_truth", "collapse_cells"
    ]  # fmt: skip
    gates = {g.name: g for g in m.gates}
    assert gates["collapse_cells"].value == 2 / 5  # of the 5 sufficient cells
    assert gates["taxonomy_accuracy_vs_truth"].value == pytest.approx(
        summary["taxonomy_accuracy"]["accuracy"]
    )


def test_gates_recompute_from_the_artifacts(ran):
    """What ``lensaudit verify`` does: every recorded gate of both stages is recomputed identically."""
    _, ctx, _, _ = ran
    checks = verify_run(ctx, ["evaluate", "failures"])
    assert len(checks) == len(EVALUATE_GATES) + 3
    assert [(c.gate, c.problem) for c in checks if not c.agrees] == []


def test_failure_audit_without_truth_is_unscored(ran):
    run, ctx, m_eval, _ = ran
    fa = failure_audit(
        run / "evaluate" / "scores.parquet",
        run / "cutouts" / "stamps.parquet",
        run / "sample" / "sample.parquet",
        run / "selection" / "selection_marginal.parquet",
        StampStore.open(run / "cutouts" / "stamps.zarr"),
        m_eval.extra["operating_threshold"],
        level=0.68,
        collapse_threshold=0.2,
        gallery_size=2,
    )
    assert fa.accuracy["n"] == 0 and fa.missed_accuracy["n"] == 0
    real = load_config(None, [*SMALL, "data.source=dr10"], run_dir=run)  # real data: no truth
    gates = {g.name: g for g in validation.evaluate("failures", Inputs(ctx.path, real, ctx.manifest))}
    for name in ("taxonomy_accuracy_vs_truth", "missed_taxonomy_accuracy_vs_truth"):
        assert gates[name].status == "fail" and "insufficient" in gates[name].message
    assert [name for name, _, _ in fa.galleries] == json.loads(
        (run / "failures" / "failures.json").read_text()
    )["galleries"]


def test_mine_writes_the_top_train_negatives(ran):
    run, ctx, m_eval, _ = ran
    out = evaluate.mine(StageContext(ctx, evaluate), top_k=5)
    mined = pd.read_parquet(out)
    assert out == run / "evaluate" / "mined_negatives.parquet"
    assert len(mined) == 5 and (mined.split == "train").all() and mined.score.is_monotonic_decreasing
    assert (mined.model_sha256 == m_eval.extra["model_sha256"]).all()


def test_thresholds_named_and_operating():
    cfg = EvaluateConfig(thresholds=[0.5], fixed_fprs=[0.25], operating_point="fpr=0.5")
    thr, op = thresholds(cfg, pd.Series([0.1, 0.2, 0.3, 0.4]).to_numpy())
    assert list(thr) == ["score=0.5", "fpr=0.25", "fpr=0.5"] and op == thr["fpr=0.5"]
    assert ((pd.Series([0.1, 0.2, 0.3, 0.4]) >= op).sum()) == 2
    assert thresholds(cfg, pd.Series([], dtype=float).to_numpy())[1] == 1.0
