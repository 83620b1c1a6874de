"""End to end: the whole pipeline (`lensaudit demo`) on a small synthetic sky, a second run that is a no-op,
and the HTML report checked in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lensaudit.cli import app
from lensaudit.report.html import SECTIONS as PAGE_SECTIONS
from lensaudit.run import STAGE_ORDER

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_run(small_demo):
    return small_demo


def test_every_stage_ran_and_wrote_gates(demo_run):
    run, _, out = demo_run
    for stage in STAGE_ORDER:
        if stage in (
            "ensemble",
            "mine",
        ):  # optional (issue 20): off in the demo, on in configs/demo-full.yaml
            assert not (run / stage / "_stage.json").exists(), stage
            continue
        m = json.loads((run / stage / "_stage.json").read_text())
        assert m["status"] == "complete" and m["gates"], stage
    train = json.loads((run / "train" / "_stage.json").read_text())
    assert train["extra"]["best_val_auc"] > 0.55  # a real, if small, finder: clearly above chance
    # what trained the finder (another CPU kernel set trains another finder): card, manifest and report
    card = json.loads((run / "train" / "model_card.json").read_text())
    assert card["environment"] == train["extra"]["environment"]
    assert f"torch {torch.__version__}" in card["environment"]
    assert "trained with" in (run / "report" / "index.html").read_text()
    assert (run / "selection" / "selection_function.fits").is_file()
    assert "report:" in out


def test_the_table_declares_its_size_prior_and_both_ladders_have_the_size_rung(demo_run):
    """The FITS header declares the injected source-size prior; the sky's truth carries each lens's source
    size, so the demo sky's and the second sky's closure ladders have rung (e)."""
    from astropy.io import fits

    run, _, _ = demo_run
    with fits.open(run / "selection" / "selection_function.fits") as h:
        assert h["SELECTION"].header["PRIORRE"] == "uniform(0.1,0.5)"
    for stage in ("selection", "population"):
        clo = json.loads((run / stage / "closure.json").read_text())
        assert {r["rung"]: r for r in clo["ladder"]}["src_size"]["what"].startswith("(e)"), stage
        # the same lenses as rung (b) (the small demo's sparse 4-D cells may leave every one of them out)
        size, mag = clo["rungs"]["src_size"], clo["rungs"]["src_mag"]
        assert size["n_lenses"] + size["n_excluded"] == mag["n_lenses"] + mag["n_excluded"] > 0, stage


def test_systematics_reach_the_artifacts_and_the_report(demo_run):
    """Issue 21: the β bracket, the inner-image ablation and the stress set, each with intervals, in
    systematics.json and the report; the full injection metadata; robustness over host TYPE and nobs_z."""
    import pandas as pd

    from lensaudit.selection.injection import PARAMETER_COLUMNS

    run, _, _ = demo_run
    sysm = json.loads((run / "selection" / "systematics.json").read_text())
    assert [v["variant"] for v in sysm["paired"]] == ["psf_beta_2.5", "psf_beta_4.5", "no_inner"]
    for v in sysm["paired"]:
        assert v["n_pairs"] > 0 and v["lo"] <= v["delta"] <= v["hi"]
    st = sysm["stress"]
    assert st["n"] == 48 and st["lo"] <= st["recall"] <= st["hi"]
    inj = pd.read_parquet(run / "inject" / "injections.parquet")
    assert set(PARAMETER_COLUMNS) <= set(inj.columns) and (inj.n_images >= 1).all()
    robust = pd.read_parquet(run / "selection" / "robustness.parquet")
    assert {"psf_beta_shift", "nobs_shift", "type_shift"} <= set(robust.columns)
    html = (run / "report" / "index.html").read_text()
    assert "Paired systematics" in html and "SLACS/BELLS-like stress set" in html


def test_second_run_is_a_noop(demo_run):
    run, args, _ = demo_run
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0
    assert r.output.count("up to date") >= 10


def test_report_in_headless_chromium(demo_run, tmp_path):
    run, _, _ = demo_run
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "Debian chromium is required (CI installs it in .ci/run)"
    from playwright.sync_api import sync_playwright

    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((run / "report" / "index.html").as_uri())
        for sid, _ in PAGE_SECTIONS:
            assert page.locator(f"section#{sid} h2").count() == 1, sid
        n_img = page.locator("figure img").count()
        loaded = page.evaluate(
            "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert n_img >= 10 and loaded == n_img
        assert page.locator("table.gates tr").count() > 20
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert not errors, errors


def test_mine_negatives_exports_train_split_negatives(demo_run):
    import pandas as pd

    run, args, _ = demo_run
    r = CliRunner().invoke(
        app,
        [
            "mine-negatives",
            str(REPO / "configs" / "demo.yaml"),
            "--run-dir",
            str(run),
            "--top-k",
            "5",
            *args[4:],  # the demo's --set overrides
        ],
    )
    assert r.exit_code == 0, r.output[-2000:]
    mined = pd.read_parquet(run / "evaluate" / "mined_negatives.parquet")
    assert len(mined) == 5 and (mined.split == "train").all() and mined.score.is_monotonic_decreasing
