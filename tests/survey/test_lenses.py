from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.errors import InputError
from lensaudit.survey.lenses import (
    merge_duplicates,
    packaged_lenscat_path,
    parse_zlens,
    read_lenscat_csv,
    select_positives,
)

DESI = [r"Huang et al\.", r"Storfer et al\."]


def test_parse_zlens_messy_values():
    z = parse_zlens(
        ["0.3?", "-", "measured", "0.49 | 0.49", "not measured", "L", "", " | 0.71", "nan | nan", "*"]
    )
    expect = [0.3, np.nan, np.nan, 0.49, np.nan, np.nan, np.nan, 0.71, np.nan, np.nan]
    np.testing.assert_array_equal(np.isnan(z), np.isnan(expect))
    np.testing.assert_allclose(z[~np.isnan(z)], [0.3, 0.49, 0.71])


def test_real_lenscat_desi_candidates_by_tier():
    """The packaged lenscat 1.1.3: DESI Legacy Surveys (Huang 2020/2021, Storfer 2022) galaxy-scale
    candidates."""
    cat = read_lenscat_csv(packaged_lenscat_path(), "lenscat")
    assert len(cat.table) == 32838 and not cat.problems
    pos = select_positives(cat.table, DESI, ["galaxy"], {"A": 1.0, "B": 0.5})
    assert len(pos) == 5095
    assert (pos.tier == "A").sum() == 433
    assert (pos.tier == "B").sum() == 4662
    assert set(pos.weight[pos.tier == "B"]) == {0.5}


def test_predecessor_candidates_file(dr10_reference):
    cat = read_lenscat_csv(dr10_reference / "desi_candidates.csv", "desi_candidates")
    assert len(cat.table) == 5104
    assert (cat.table.grading == "confident").sum() == 435


def test_malformed_rows_reported_with_line_numbers(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(
        "name,ra,dec,zlens,type,grading,ref\n"
        "A,10.0,5.0,0.3,galaxy,confident,Huang et al. (2020)\n"
        "B,nan,5.0,-,galaxy,probable,Huang et al. (2020)\n"
        ",11.0,5.0,-,galaxy,probable,Huang et al. (2020)\n"
        "D,12.0,95.0,-,galaxy,probable,Huang et al. (2020)\n"
        "E,370.0,1.0,-,galaxy,probable,Huang et al. (2020)\n"
    )
    cat = read_lenscat_csv(p, "bad")
    assert list(cat.table.name) == ["A"]
    joined = "\n".join(cat.problems)
    assert "bad.csv:3: RA" in joined and "bad.csv:4: empty name" in joined
    assert "bad.csv:5: Dec" in joined and "bad.csv:6: RA" in joined


def test_missing_file_and_columns_are_clear(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_lenscat_csv(tmp_path / "nope.csv", "x")
    p = tmp_path / "c.csv"
    p.write_text("name,ra\nA,1\n")
    with pytest.raises(InputError, match="lacks columns"):
        read_lenscat_csv(p, "x")


def test_duplicates_merged_keeping_best_tier():
    df = pd.DataFrame(
        {
            "name": ["a", "b", "c"],
            "ra": [10.0, 10.0 + 0.5 / 3600, 20.0],
            "dec": [0.0, 0.0, 0.0],
            "tier": ["B", "A", "B"],
        }
    )
    merged, report = merge_duplicates(df, 1.0)
    assert list(merged.name) == ["b", "c"] and list(merged.n_merged) == [1, 0]
    assert len(report) == 1 and report.n.iloc[0] == 2
