"""The ensemble and mine stages on the tiny audit world: the ensemble audited like the single finder next to
its members, one mining round (retraining one epoch) whose mined negatives are train-split negatives, and the
selection function of each member and ensemble from a small injection set (the audit world's own stamps laid
out as the inject stage writes them: 8 grid cells, main-prior rows, and a paired variant that must not
count)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from lensaudit.config import load_config
from lensaudit.report.independent import extra_tables
from lensaudit.run import Manifest, RunContext, run_stage
from lensaudit.selection.grid import grid_of
from lensaudit.stages import get_stage
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen, sigmoid
from lensaudit.utils import atomic_write_json

SMALL = [
    "evaluate.n_bootstrap=20",
    "evaluate.operating_point=fpr=0.2",
    "ensemble.enabled=true",
    "ensemble.members=[resnet18]",
    "ensemble.crop_ablation=[24]",
    "mine.rounds=1",
    "mine.top_k=5",
    "train.stem=standard",
    "train.crop_pix=32",
    "train.epochs=1",
    "train.min_epochs=1",
    "train.batch_size=32",
    "train.threads=2",
    "train.device=cpu",
    "inject.theta_e_grid=[1.0, 2.0, 1.0]",
    "inject.psf_grid=[1.2, 1.5, 0.3]",
    "inject.depth_grid=[24.5, 25.0, 0.5]",
    "selection.n_min=8",
]
#: injections per cell: main-prior rows, and rows of a paired variant (not counted by the selection function)
N_MAIN, N_PAIRED = 12, 3


def _inject_world(run, cfg) -> pd.DataFrame:
    """inject/injections.parquet and inject/stamps.zarr (row i = store row i) from the audit world's stamps,
    with a completed inject manifest."""
    grid, _ = grid_of(cfg.inject)
    rng = np.random.default_rng(5)
    rows = []
    for c in grid.cell:
        rows += [(c, "main")] * N_MAIN + [(c, "psf_beta_2.5")] * N_PAIRED
    inj = pd.DataFrame(rows, columns=["cell", "variant"])
    n = len(inj)
    inj["src_mag_r"] = rng.uniform(*cfg.inject.src_mag_r_range, n)
    inj["arc_mag_r"] = inj.src_mag_r - 2.5 * np.log10(rng.uniform(2, 20, n))
    src = StampStore.open(run / "cutouts" / "stamps.zarr")
    img = src.read_images(rng.integers(0, src.n, n))
    dst = StampStore.create(run / "inject" / "stamps.zarr", n, shard_size=64)
    dst.write(0, img, np.ones_like(img), np.zeros((n, 101, 101)))
    inj.to_parquet(run / "inject" / "injections.parquet", index=False)
    atomic_write_json(
        run / "inject" / "_stage.json",
        Manifest(stage="inject", fingerprint="inject", extra={"verdict": "GO"}).to_dict(),
    )
    return inj


@pytest.fixture(scope="module")
def ran(audit_world, tmp_path_factory):
    run = tmp_path_factory.mktemp("issue20") / "run"
    shutil.copytree(audit_world["run"], run)
    s = pd.read_parquet(run / "sample" / "sample.parquet")
    s.assign(weight=1.0).to_parquet(run / "sample" / "sample.parquet", index=False)
    cfg = load_config(None, SMALL, run_dir=run)
    (run / "inject").mkdir()
    _inject_world(run, cfg)
    ctx = RunContext(cfg, quiet=True)
    return run, run_stage(get_stage("ensemble"), ctx), run_stage(get_stage("mine"), ctx)


def test_ensemble_is_audited_like_a_member(ran):
    run, m, _ = ran
    assert m.status == "complete"
    em = json.loads((run / "ensemble" / "metrics.json").read_text())
    assert set(em["summary"]) == {"member:resnet18", "ensemble:mean_logit", "ensemble:meta", "crop:24"}
    # one member: its mean-logit ensemble is the member itself, audited by the same code
    a, b = em["full"]["member:resnet18"], em["full"]["ensemble:mean_logit"]
    assert a["auc_test"] == b["auc_test"] and a["fpr_by_category"] == b["fpr_by_category"]
    assert set(a) == set(em["full"]["ensemble:meta"])
    sc = pd.read_parquet(run / "ensemble" / "scores.parquet")
    assert set(sc.split) == {"val", "test"}
    assert "logit[ensemble:meta]" in sc
    status = {g.name: g.status for g in m.gates}
    assert set(status) == {"members_scored_same_rows", "meta_fitted_on_val", "auc_drop_vs_finder"}
    assert status["members_scored_same_rows"] == status["meta_fitted_on_val"] == "pass"


def test_mine_rounds_mine_train_negatives_and_are_reported(ran):
    run, _, m = ran
    assert m.status == "complete" and m.counts["mined"] == 5
    mined = pd.read_parquet(run / "mine" / "mined.parquet")
    assert (mined.split == "train").all() and (mined.label == 0).all() and (mined.weight > 1).all()
    status = {g.name: g.status for g in m.gates}
    assert (
        status["mined_from_train_only"] == status["mined_count"] == "pass" and "tier_a_recall_drop" in status
    )
    mm = json.loads((run / "mine" / "metrics.json").read_text())
    assert [r["round"] for r in mm["rounds"]] == [0, 1]
    assert mm["rounds"][0]["model_sha256"] != mm["rounds"][1]["model_sha256"]
    em = json.loads((run / "ensemble" / "metrics.json").read_text())
    tables = extra_tables(em, mm)
    assert len(tables) == 3 and any(r[0] == "Tier-A recall" for r in tables[2].rows)
    assert [r[0] for r in tables[1].rows] == ["resnet18 crop 32 px (train stage)", "resnet18 crop 24 px"]


def test_selection_function_of_each_member_and_ensemble(ran):
    run, _, _ = ran
    t = pd.read_parquet(run / "ensemble" / "selection_members.parquet")
    em = json.loads((run / "ensemble" / "metrics.json").read_text())
    models = ["member:resnet18", "ensemble:mean_logit", "ensemble:meta"]
    assert list(dict.fromkeys(t.model)) == models and len(t) == 8 * len(models)
    # only the main-prior rows count, as in the selection stage
    assert (t.n == N_MAIN).all()
    # each model at its own operating threshold, the one its evaluate() audit chose
    sel = em["selection_members"]
    assert sel["available"] and sel["realism_verdict"] == "GO"
    for m in models:
        thr = em["full"][m]["operating_threshold"]
        assert sel["models"][m]["threshold"] == thr and (t[t.model == m].threshold == thr).all()
    # the member's detections recomputed from its checkpoint, independently of the stage
    inj = pd.read_parquet(run / "inject" / "injections.parquet")
    model = load_frozen(run / "train", "cpu")
    logit = model.score_rows(StampStore.open(run / "inject" / "stamps.zarr"), np.arange(len(inj)))
    det = sigmoid(logit) >= sel["models"]["member:resnet18"]["threshold"]
    k = pd.Series(det[inj.variant == "main"]).groupby(inj.cell[inj.variant == "main"].to_numpy()).sum()
    assert t[t.model == "member:resnet18"].k.tolist() == k.tolist()
    assert ((t.c_lo68 <= t.c_mean) & (t.c_mean <= t.c_hi68)).all()
    # one member: its mean-logit ensemble is the member itself, so their selection functions agree exactly
    same = sel["pairs"]["member:resnet18 | ensemble:mean_logit"]
    assert same["n_cells"] == 8 and same["max_abs_dc"] == 0.0 and same["n_beyond_1sigma"] == 0
    assert set(sel["pairs"]) == {f"{a} | {b}" for i, a in enumerate(models) for b in models[i + 1 :]}
    # the report's block
    from lensaudit.report.html import _selection_members

    models_t, pairs_t = _selection_members(em)
    assert [r[0] for r in models_t.rows] == models and len(pairs_t.rows) == 3
