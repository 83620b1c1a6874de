"""The HTML report from hand-made artifacts (no pipeline run): tables with headers and captions, no Python
reprs in the text, catalogue strings escaped, NaN as an em dash, and missing stages listed as missing."""

from __future__ import annotations

import html as htmlmod
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from lensaudit.config import load_config
from lensaudit.gates import Gate
from lensaudit.report.html import SECTIONS as PAGE_SECTIONS
from lensaudit.report.html import UPSTREAM, build, fmt
from lensaudit.run import ARTIFACTS, STAGE_ORDER, Manifest, RunContext, run_stage
from lensaudit.stages import get_stage
from lensaudit.utils import atomic_write_json

EVIL = "<script>alert(1)</script>"


def _path(root: Path):
    """The resolver the stage gets from ``ctx.artifact`` (every stage rooted in the run directory here)."""
    return lambda stage, name: root / stage / ARTIFACTS[stage][name]


def _manifest(
    root: Path,
    stage: str,
    counts: dict,
    gates: list[Gate] | None = None,
    extra: dict | None = None,
    status: str = "complete",
) -> Manifest:
    m = Manifest(
        stage=stage,
        counts=counts,
        gates=gates or [],
        extra=extra or {},
        wall_s=12.345,
        seed=7,
        finished="2024-01-01T00:00:00+00:00",
        git_commit="0123456789abcdef",
        status=status,
    )
    atomic_write_json(root / stage / "_stage.json", m.to_dict())
    return m


def _artifacts(root: Path) -> dict[str, Manifest]:
    """A small run: manifests for sample, evaluate, selection and failures, and their JSON artifacts."""
    mans = {
        "sample": _manifest(root, "sample", {"rows": 1342, "tier_A": 220, "train_pos": 404, "shortfall": 3}),
        "evaluate": _manifest(
            root,
            "evaluate",
            {"scored": 400, "test": 195},
            [
                Gate(
                    name="test_auc",
                    value=0.91234,
                    ci=(0.9, 0.93),
                    warn=0.8,
                    fail=0.5,
                    higher_is_better=True,
                    message=f"lens {EVIL}",
                )
            ],
            {"trustworthy": True},
        ),
        "selection": _manifest(
            root,
            "selection",
            {"cells": 96, "cells_sufficient": 90},
            [Gate(name="closure_total_pull", value=float("nan"), lo=-2.0, hi=2.0)],
            {"forced": False, "operating_threshold": 0.5},
        ),
        "failures": _manifest(root, "failures", {"false_positives": 4, "missed_tier_A": 2}),
    }
    smp = pd.DataFrame(
        {
            "split": ["train", "val", "test", "test"],
            "pool": ["positive", "N1", "N2", "N2"],
            "n2_category": ["", "", "ring_proxy", EVIL],
            "ra": [1.0, 2.0, 3.0, 3.1],
            "dec": [0.0, 0.5, 1.0, 1.1],
        }
    )
    smp.to_parquet(root / "sample" / "sample.parquet")
    rate = {"k": 3, "n": 4, "rate": 0.75, "lo": 0.5, "hi": 0.9}
    atomic_write_json(
        root / "evaluate" / "metrics.json",
        {
            "n_test": 195,
            "n_test_pos": 89,
            "auc_test": {"value": 0.91234, "ci68": [0.9, 0.93]},
            "auc_val": {"value": 0.9, "ci68": [0.88, 0.92]},
            "auc_val_minus_test": {"value": -0.012, "ci68": None},
            "thresholds": {"score=0.5": 0.5},
            "operating_point": "score=0.5",
            "operating_threshold": 0.5,
            "recall_tier_A": {"score=0.5": rate},
            "recall_tier_B": {"score=0.5": rate},
            "tpr0": 0.1,
            "tpr10": 0.3,
            "ece": 0.05,
            "ece_calibrated": 0.04,
            "temperature": 1.1,
            "fpr_by_category": {EVIL: rate},
            "shortcuts": {"core_only": {"value": 0.55, "ci68": [0.5, 0.6]}, "noise_mad_ratio": 1.01},
            "desi_sl_vac": {"n_vac": 12, "n_matched_stamps": 4, "recall_at_op": rate},
        },
    )
    atomic_write_json(
        root / "selection" / "closure.json",
        {
            "available": True,
            "axis": "src_mag",
            "condition_on": "src_mag",
            "mag_column": "src_mag_r",
            "n_lenses": 10,
            "fraction_within_1sigma": 0.5,
            "fraction_within_2sigma": 1.0,
            "chi2": 1.0,
            "chi2_dof": 1,
            "chi2_pvalue": 0.32,
            "note": "independent renderer",
            "theta_bins": [
                {
                    "lo": 0.25,
                    "hi": 0.75,
                    "n": 4,
                    "expected": 2.0,
                    "observed": 3,
                    "sigma": 1.0,
                    "sigma_binomial": 0.9,
                    "sigma_table": 0.4,
                    "pull": 1.0,
                },
                {
                    "lo": 0.75,
                    "hi": 1.25,
                    "n": 6,
                    "expected": 3.0,
                    "observed": 3,
                    "sigma": 0.0,
                    "sigma_binomial": 0.0,
                    "sigma_table": 0.0,
                    "pull": float("nan"),
                },
            ],
            "mag_bins": [
                {
                    "lo": 22.0,
                    "hi": 23.0,
                    "n": 10,
                    "expected": 5.0,
                    "observed": 6,
                    "sigma": 1.0,
                    "sigma_binomial": 0.9,
                    "sigma_table": 0.4,
                    "pull": 1.0,
                },
            ],
            "total": {
                "expected": 5.0,
                "observed": 6,
                "sigma": 1.0,
                "sigma_binomial": 0.9,
                "sigma_table": 0.4,
                "pull": 1.0,
            },
            "ladder": [
                {
                    "rung": "marginal",
                    "what": "(a) marginal",
                    "expected": 4.0,
                    "observed": 6,
                    "sigma_binomial": 1.0,
                    "sigma_table": 0.2,
                    "pull": 2.0,
                    "chi2_pvalue": 0.1,
                    "fraction_within_1sigma": 0.5,
                },
                {
                    "rung": "src_mag",
                    "what": "(b) at m_src",
                    "expected": 5.0,
                    "observed": 6,
                    "sigma_binomial": 0.9,
                    "sigma_table": 0.4,
                    "pull": 1.0,
                    "chi2_pvalue": 0.32,
                    "fraction_within_1sigma": 0.5,
                },
            ],
        },
    )
    pd.DataFrame({"cell": [0, 1], "binning_shift": [0.1, 0.2], "prior_shift": [0.05, math.nan]}).to_parquet(
        root / "selection" / "robustness.parquet"
    )
    atomic_write_json(
        root / "failures" / "failures.json",
        {
            "operating_threshold": 0.5,
            "collapse_cells": 1,
            "rules": "1. masked_or_edge",
            "mode_counts": [
                {"kind_of_failure": "false_positive", "mode": EVIL, "n": 4},
                {"kind_of_failure": "missed_tier_A", "mode": "faint_arc", "n": 2},
            ],
            "taxonomy_accuracy": {"n": 0, "accuracy": float("nan")},
            "missed_taxonomy_accuracy": {
                "n": 2,
                "accuracy": 0.5,
                "confusion": {"faint_arc": {"faint_arc": 1, "other": 1}},
            },
            "galleries": [f"gallery_{EVIL}.png"],
        },
    )
    return mans


@pytest.fixture()
def page(tmp_path) -> str:
    mans = _artifacts(tmp_path)
    return build(
        _path(tmp_path), mans, "run:\n  seed: 7\n", f"report {EVIL}", tmp_path / "report" / "skymap.png"
    )


def _text(page: str) -> str:
    """The page's visible text (tags and the embedded images dropped), unescaped."""
    body = re.sub(r"<style>.*?</style>|data:image/png;base64,[A-Za-z0-9+/=]+", "", page, flags=re.S)
    return htmlmod.unescape(re.sub(r"<[^>]+>", " ", body))


def _table(page: str, caption_word: str) -> str:
    for t in re.findall(r"<table.*?</table>", page, flags=re.S):
        if caption_word in t.split("</caption>")[0]:
            return t
    raise AssertionError(f"no table whose caption mentions {caption_word!r}")


def test_sections_are_tables_with_headers(page):
    for word, headers in (
        ("Stages of this run", ("stage", "status", "wall time (s)")),
        ("validation gate", ("stage", "gate", "status", "value", "thresholds", "message")),
        ("per true θE bin", ("range", "n", "expected ± σ", "σ binomial / table", "observed", "pull")),
        (
            "Closure ladder",
            ("rung", "expected", "observed", "σ binomial", "σ table", "pull", "χ² p", "within 1σ"),
        ),
        ("Audit metrics", ("metric", "value", "68% CI")),
        ("Recall per tier", ("threshold", "Tier A k/n")),
        ("Robustness", ("coarser depth binning",)),
        ("Taxonomy accuracy", ("population scored", "accuracy")),
        ("spatial split", ("split", "N1", "N2", "total")),
    ):
        t = _table(page, word)
        assert "<caption>" in t and "<th" in t
        for h in headers:
            assert f">{h}</th>" in t, (word, h)
    assert page.count("<caption>") >= 12


def test_no_python_reprs_in_the_text(page):
    text = _text(page)
    for bad in ("{'", "':", "[{", "\"{'"):
        assert bad not in text, (bad, text[max(0, text.find(bad) - 200) : text.find(bad) + 200])
    assert not re.search(r"\b(nan|NaN|None)\b", text)
    assert "Tier A" in text and "train positives" in text  # readable labels, not manifest keys


def test_catalogue_strings_are_escaped(page):
    assert "<script>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5  # title, gate message, category, mode, N2


def test_numbers_use_one_format(page):
    assert fmt(float("nan")) == fmt(None) == "—"
    closure = _table(page, "per true θE bin")
    assert "<td>—</td>" in closure or ">—<" in closure  # the NaN pull
    gates = _table(page, "validation gate")
    assert "0.912" in gates and "0.91234" not in gates and "[0.900, 0.930]" in gates
    assert "1,342" in page  # thousands separator
    assert "12.3" in _table(page, "Stages of this run")  # wall time


def test_missing_stages_render_and_are_listed(tmp_path):
    mans = _artifacts(tmp_path)
    page = build(_path(tmp_path), {"sample": mans["sample"]}, "", "t", tmp_path / "report" / "skymap.png")
    summary = _table(page, "Stages of this run")
    for s in UPSTREAM:
        assert f"<td>{s}</td>" in summary
    assert summary.count(">missing</td>") == len(UPSTREAM) - 1
    assert "Missing stages" in page and "train, evaluate" in page
    for sid in (sid for sid, _ in PAGE_SECTIONS):
        assert f'<section id="{sid}">' in page


def test_the_stage_reads_every_stage_and_warns_on_missing_ones(tmp_path):
    mod = get_stage("report")
    assert {r.lstrip("?").split(".")[0] for r in mod.READS} == set(STAGE_ORDER) - {"report"}
    assert all(r.startswith("?") for r in mod.READS)
    _artifacts(tmp_path)
    cfg = load_config(None, [], tmp_path)
    man = run_stage(mod, RunContext(cfg, quiet=True))
    g = man.gate("all_stages_reported")
    assert g is not None and g.status == "fail" and "train" in g.message and "sample" not in g.message
    assert (tmp_path / "report" / "index.html").is_file() and (tmp_path / "report" / "skymap.png").is_file()
    assert man.outputs == ["index.html", "skymap.png"]
