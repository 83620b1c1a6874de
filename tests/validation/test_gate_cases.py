"""Every registered gate can pass and can fail: each has a passing and a failing case built from real (small)
artifacts in ``cases_<stage>.py`` (``CASES = {spec name: (make_pass, make_fail)}``, each taking a tmp dir and
returning :class:`Inputs`). A gate registered without both cases breaks the build."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from lensaudit.validation import specs

HERE = Path(__file__).parent


def _cases() -> dict[tuple[str, str], tuple]:
    out = {}
    for p in sorted(HERE.glob("cases_*.py")):
        spec = importlib.util.spec_from_file_location(f"gatecases_{p.stem}", p)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        stage = p.stem.removeprefix("cases_")
        for name, pair in mod.CASES.items():
            out[(stage, name)] = pair
    return out


CASES = _cases()
SPECS = {(s.stage, s.name): s for s in specs()}


def test_every_registered_gate_has_a_passing_and_a_failing_case():
    missing = sorted(f"{s}.{n}" for s, n in SPECS if (s, n) not in CASES)
    assert not missing, f"gates without pass/fail cases: {missing}"
    stale = sorted(f"{s}.{n}" for s, n in CASES if (s, n) not in SPECS)
    assert not stale, f"cases for gates that are not registered: {stale}"
    assert len(SPECS) >= 30


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda k: f"{k[0]}.{k[1]}")
def test_gate_passes_and_fails(key, tmp_path):
    spec = SPECS[key]
    make_pass, make_fail = CASES[key]
    good = spec.evaluate(make_pass(tmp_path / "pass"))
    assert good and all(g.status == "pass" for g in good), [
        (g.name, g.value, g.status, g.message) for g in good
    ]
    bad = spec.evaluate(make_fail(tmp_path / "fail"))
    assert any(g.status == "fail" for g in bad), [(g.name, g.value, g.status, g.message) for g in bad]
