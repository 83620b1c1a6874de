"""The reliability suite (issue 22): kill-and-resume of every stage with work, bad inputs, a distributed
catalog run and the loss of a worker. Each test records its outcome with the ``reliability`` fixture; the
terminal summary prints one table (category, passed/total) so that CI's log shows it."""

from __future__ import annotations

from collections import defaultdict

import pytest

#: category → {case name: passed}
RESULTS: dict[str, dict[str, bool]] = defaultdict(dict)
CATEGORIES = {
    "kill-resume": "stages killed and resumed identical",
    "bad-input": "bad inputs with a clear error",
    "distributed": "distributed run identical",
    "worker-loss": "worker loss survived",
}


class Recorder:
    """``reliability.record(category, case, ok)``; use it as the last step of a test (after its asserts, or
    with ``ok`` the asserted condition) so that a failing test records a failure."""

    def record(self, category: str, case: str, ok: bool) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown reliability category {category!r}")
        RESULTS[category][case] = bool(ok)


@pytest.fixture
def reliability() -> Recorder:
    return Recorder()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("reliability")
    width = max(len(v) for v in CATEGORIES.values())
    tr.write_line(f"{'check':<{width}}  passed")
    for cat, label in CATEGORIES.items():
        res = RESULTS.get(cat, {})
        line = f"{sum(res.values())}/{len(res)}" if res else "not run"
        tr.write_line(f"{label:<{width}}  {line}")
        for case, ok in sorted(res.items()):
            if not ok:
                tr.write_line(f"  FAILED: {case}")
