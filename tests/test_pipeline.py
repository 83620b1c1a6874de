"""The stage runner: manifests, skip-if-done, resume after a kill, fingerprint chaining, gates."""
from __future__ import annotations

import json
import sys
import types

import pytest

from lensaudit.config import load_config
from lensaudit.errors import GateFailed, UpstreamError
from lensaudit.gates import Gate, worst
from lensaudit.pipeline import INPROGRESS, Manifest, RunContext, run_stage


@pytest.fixture
def toy_stages(monkeypatch):
    """Two real stage modules registered under the names of real stages, counting their executions."""
    calls = {"positives": 0, "catalog": 0}

    def make(name, depends, body):
        mod = types.ModuleType(f"lensaudit.stages.{name}")
        mod.NAME, mod.SECTIONS, mod.DEPENDS, mod.run = name, (name,), depends, body
        monkeypatch.setitem(sys.modules, f"lensaudit.stages.{name}", mod)
        return mod

    def run_a(cfg, ctx):
        calls["positives"] += 1
        (ctx.stage_dir("positives") / "a.txt").write_text("a")
        return Manifest(counts={"n": 1}, gates=[Gate(name="g", value=1.0, warn=2.0, fail=3.0)])

    def run_b(cfg, ctx):
        calls["catalog"] += 1
        d = ctx.stage_dir("catalog")
        done = sorted(p.name for p in d.glob("shard-*"))
        for i in range(3):
            if f"shard-{i}" in done:
                continue
            if ctx.config.catalog.min_nobs_z == 7 and i == 1 and not (d / "killed").exists():
                (d / "killed").write_text("")
                raise KeyboardInterrupt  # simulate a kill after shard 0
            (d / f"shard-{i}").write_text(str(i))
        return Manifest(counts={"shards": 3, "reused": len(done)})

    make("positives", (), run_a)
    make("catalog", ("positives",), run_b)
    return calls


def _ctx(tmp_path, *overrides):
    return RunContext(load_config(None, list(overrides), run_dir=tmp_path), quiet=True)


def test_skip_if_done_and_manifest_content(tmp_path, toy_stages):
    ctx = _ctx(tmp_path)
    m1 = run_stage("positives", ctx)
    m2 = run_stage("positives", ctx)
    assert toy_stages["positives"] == 1 and m2.fingerprint == m1.fingerprint
    d = json.loads((tmp_path / "positives" / "_stage.json").read_text())
    for key in ("config_hash", "inputs", "version", "git_commit", "seed", "counts", "gates", "wall_s", "fingerprint"):
        assert key in d
    assert d["gates"][0]["status"] == "pass" and d["status"] == "complete"


def test_config_change_reruns_and_chains_downstream(tmp_path, toy_stages):
    run_stage("positives", _ctx(tmp_path))
    run_stage("catalog", _ctx(tmp_path))
    run_stage("positives", _ctx(tmp_path, "positives.tier_b_weight=0.4"))
    assert toy_stages["positives"] == 2
    run_stage("catalog", _ctx(tmp_path, "positives.tier_b_weight=0.4"))
    assert toy_stages["catalog"] == 2  # upstream fingerprint changed


def test_missing_upstream_is_a_clear_error(tmp_path, toy_stages):
    with pytest.raises(UpstreamError, match="positives"):
        run_stage("catalog", _ctx(tmp_path))


def test_resume_after_kill_reuses_finished_shards(tmp_path, toy_stages):
    run_stage("positives", _ctx(tmp_path, "catalog.min_nobs_z=7"))
    with pytest.raises(KeyboardInterrupt):
        run_stage("catalog", _ctx(tmp_path, "catalog.min_nobs_z=7"))
    assert (tmp_path / "catalog" / INPROGRESS).is_file()
    assert not (tmp_path / "catalog" / "_stage.json").exists()
    m = run_stage("catalog", _ctx(tmp_path, "catalog.min_nobs_z=7"))
    assert m.counts == {"shards": 3, "reused": 1}
    assert not (tmp_path / "catalog" / INPROGRESS).exists()


def test_changed_config_after_kill_clears_partial_work(tmp_path, toy_stages):
    run_stage("positives", _ctx(tmp_path, "catalog.min_nobs_z=7"))
    with pytest.raises(KeyboardInterrupt):
        run_stage("catalog", _ctx(tmp_path, "catalog.min_nobs_z=7"))
    run_stage("positives", _ctx(tmp_path))
    m = run_stage("catalog", _ctx(tmp_path))
    assert m.counts["reused"] == 0


def test_blocking_fail_gate_raises_and_marks_manifest(tmp_path, monkeypatch, toy_stages):
    mod = sys.modules["lensaudit.stages.positives"]
    monkeypatch.setattr(mod, "run", lambda cfg, ctx: Manifest(gates=[Gate(name="n2_fraction", value=0.0, lo=0.02, hi=0.6),
                                                                     Gate(name="soft", value=0.9, fail=0.5, blocking=False)]))
    with pytest.raises(GateFailed, match="n2_fraction=0"):
        run_stage("positives", _ctx(tmp_path))
    m = Manifest.load(tmp_path / "positives" / "_stage.json")
    assert m.status == "failed" and m.gate("n2_fraction").status == "fail"


def test_gate_semantics():
    assert Gate(name="auc", value=0.65, ci=(0.58, 0.72), warn=0.60, fail=0.70, use_ci_bound=True).status == "pass"
    assert Gate(name="auc", value=0.75, ci=(0.66, 0.84), warn=0.60, fail=0.70, use_ci_bound=True).status == "warn"
    assert Gate(name="rate", value=0.95, warn=0.9, fail=0.8, higher_is_better=True).status == "pass"
    assert Gate(name="rate", value=0.7, warn=0.9, fail=0.8, higher_is_better=True).status == "fail"
    assert Gate(name="r", value=1.05, lo=0.9, hi=1.1).status == "pass"
    assert Gate(name="r", value=float("nan"), lo=0.9, hi=1.1).status == "fail"
    assert worst([Gate.check("a", True), Gate.check("b", False, warn_only=True)]) == "warn"
    g = Gate(name="x", value=2.0, ci=(1.0, 3.0), warn=1.5)
    assert Gate.from_dict(g.to_dict()) == g
