"""The CLI end to end for the foundation: positives stage, 'up to date', clear errors."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from lensaudit import __version__
from lensaudit.cli import app

runner = CliRunner()


def _write_cfg(tmp_path, lenscat: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(f"run:\n  run_dir: {tmp_path / 'run'}\npositives:\n  lenscat: {lenscat}\n")
    return str(p)


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_positives_stage_on_real_lenscat_then_up_to_date(tmp_path):
    cfg = _write_cfg(tmp_path, "packaged")
    r = runner.invoke(app, ["positives", cfg])
    assert r.exit_code == 0, r.output
    pos = pd.read_parquet(tmp_path / "run" / "positives" / "positives.parquet")
    assert (pos.tier == "A").sum() == 433 and (pos.tier == "B").sum() == 4662
    assert pos.positive_id.is_unique and pos.ra.between(0, 360).all()
    assert (~pos.in_footprint).sum() > 0  # marked, not dropped
    assert (tmp_path / "run" / "positives" / "_stage.json").is_file()
    r2 = runner.invoke(app, ["positives", cfg])
    assert r2.exit_code == 0 and "up to date" in r2.output


def test_malformed_rows_are_reported_not_silent(tmp_path):
    good = "".join(f"G{i},{20 + i}.0,5.0,0.4,galaxy,probable,Huang et al. (2020)\n" for i in range(20))
    csv = tmp_path / "l.csv"
    csv.write_text(
        "name,RA [deg],DEC [deg],zlens,type,grading,ref\n"
        "X1,10.0,5.0,0.3?,galaxy,confident,Huang et al. (2020)\n"
        "X2,,5.0,-,galaxy,probable,Huang et al. (2020)\n"
        "X3,11.0,6.0,0.49 | 0.49,galaxy,probable,Storfer et al. (2022)\n" + good
    )
    r = runner.invoke(app, ["positives", _write_cfg(tmp_path, str(csv))])
    assert r.exit_code == 0, r.output  # 1 of 23 rows (4%): reported, not fatal
    bad = (tmp_path / "run" / "positives" / "malformed_rows.txt").read_text()
    assert "l.csv:3" in bad
    pos = pd.read_parquet(tmp_path / "run" / "positives" / "positives.parquet")
    assert sorted(pos.name)[-2:] == ["X1", "X3"] and len(pos) == 22
    assert pos.set_index("name").zlens.round(2)[["X1", "X3"]].tolist() == [0.3, 0.49]
    assert "malformed_rows" in r.output and "WARN" in r.output


def test_mostly_malformed_catalogue_stops_with_one_sentence(tmp_path):
    csv = tmp_path / "l.csv"
    csv.write_text(
        "name,RA [deg],DEC [deg],zlens,type,grading,ref\n"
        "X1,10.0,5.0,0.3,galaxy,confident,Huang et al. (2020)\n"
        "X2,,5.0,-,galaxy,probable,Huang et al. (2020)\n"
    )
    r = runner.invoke(app, ["positives", _write_cfg(tmp_path, str(csv))])
    assert r.exit_code == 4 and "malformed_rows" in r.output and "Traceback" not in r.output
    assert "l.csv:3" in (tmp_path / "run" / "positives" / "malformed_rows.txt").read_text()


def test_missing_file_gives_one_sentence(tmp_path):
    r = runner.invoke(app, ["positives", _write_cfg(tmp_path, str(tmp_path / "missing.csv"))])
    assert r.exit_code == 3
    assert "lens catalogue not found" in r.output and "Traceback" not in r.output


def test_bad_config_exit_code(tmp_path):
    r = runner.invoke(app, ["config", "show", "--set", "train.lr=7"])
    assert r.exit_code == 2 and "train.lr" in r.output
