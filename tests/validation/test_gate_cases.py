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


def test_no_gate_reading_the_injections_passes_without_any(tmp_path):
    """With no injections (no host matched any cell), every inject gate that reads them is a failure or
    unmeasured, never a pass: a gate that passes on no data cannot fail."""
    spec = importlib.util.spec_from_file_location("gatecases_inject_empty", HERE / "cases_inject.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    inputs = mod._run(tmp_path, empty=True)
    reading = [s for (stage, _), s in SPECS.items() if stage == "inject" and "inject.injections" in s.reads]
    assert len(reading) >= 5
    passed = [(g.name, g.value) for s in reading for g in s.evaluate(inputs) if g.status == "pass"]
    assert not passed, passed
