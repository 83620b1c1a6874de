"""The ensemble and mine stages on the tiny audit world: the ensemble audited like the single finder next to
its members, and one mining round (retraining one epoch) whose mined negatives are train-split negatives."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from lensaudit.config import load_config
from lensaudit.report.independent import extra_tables
from lensaudit.run import RunContext, run_stage
from lensaudit.stages import get_stage

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
]


@pytest.fixture(scope="module")
def ran(audit_world, tmp_path_factory):
    run = tmp_path_factory.mktemp("issue20") / "run"
    shutil.copytree(audit_world["run"], run)
    s = pd.read_parquet(run / "sample" / "sample.parquet")
    s.assign(weight=1.0).to_parquet(run / "sample" / "sample.parquet", index=False)
    ctx = RunContext(load_config(None, SMALL, run_dir=run), quiet=True)
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


def test_mine_rounds_mine_train_negatives_and_are_reported(ran):
    run, _, m = ran
    assert m.status == "complete" and m.counts["mined"] == 5
    mined = pd.read_parquet(run / "mine" / "mined.parquet")
    assert (mined.split == "train").all() and (mined.label == 0).all() and (mined.weight > 1).all()
    mm = json.loads((run / "mine" / "metrics.json").read_text())
    assert [r["round"] for r in mm["rounds"]] == [0, 1]
    assert mm["rounds"][0]["model_sha256"] != mm["rounds"][1]["model_sha256"]
    em = json.loads((run / "ensemble" / "metrics.json").read_text())
    tables = extra_tables(em, mm)
    assert len(tables) == 3 and any(r[0] == "Tier-A recall" for r in tables[2].rows)
    assert [r[0] for r in tables[1].rows] == ["resnet18 crop 32 px (train stage)", "resnet18 crop 24 px"]
