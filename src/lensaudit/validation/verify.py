"""``lensaudit verify RUN_DIR``: recompute every registered gate of every completed stage from the artifacts
on
disk and compare value and status with what the stage recorded in its manifest.

A disagreement (a value or status that differs, a recorded gate that is not registered, a registered gate that
was not recorded or cannot be recomputed) means the run directory was edited after the fact, or a gate depends
on something other than its artifacts: both are bugs worth stopping for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lensaudit.gates import Gate
from lensaudit.run import STAGE_ORDER, RunContext
from lensaudit.validation.inputs import Inputs
from lensaudit.validation.registry import spec_for, specs

EXIT_DISAGREE = 7


@dataclass
class Check:
    stage: str
    gate: str
    recorded: Any
    recomputed: Any
    status: str  # the recomputed status (or "error")
    recorded_status: str
    blocking: bool
    problem: str = ""

    @property
    def agrees(self) -> bool:
        return not self.problem


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        a = None
    if isinstance(b, float) and math.isnan(b):
        b = None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def verify_run(ctx: RunContext, stages: Sequence[str] | None = None) -> list[Check]:
    """Recompute and compare the gates of every completed stage of the run (or of ``stages`` only)."""
    inputs = Inputs(ctx.path, ctx.config, ctx.manifest)
    out: list[Check] = []
    for stage in STAGE_ORDER:
        if stages is not None and stage not in stages:
            continue
        man = ctx.manifest(stage)
        if man is None:
            continue
        recorded = {g.name: g for g in man.gates}
        fresh: dict[str, Gate] = {}
        for spec in specs(stage):
            try:
                for g in spec.evaluate(inputs):
                    fresh[g.name] = g
            except Exception as exc:  # noqa: BLE001 — reported as a disagreement, never hidden
                out.append(
                    Check(
                        stage,
                        spec.name,
                        None,
                        None,
                        "error",
                        "",
                        spec.blocking,
                        f"cannot recompute: {type(exc).__name__}: {exc}",
                    )
                )
        for name, g in recorded.items():
            if spec_for(stage, name) is None:
                out.append(
                    Check(stage, name, g.value, None, "error", g.status, g.blocking, "not a registered gate")
                )
            elif name not in fresh:
                if not any(c.stage == stage and c.gate == spec_for(stage, name).name for c in out):  # type: ignore[union-attr]
                    out.append(
                        Check(stage, name, g.value, None, "error", g.status, g.blocking, "not recomputed")
                    )
        for name, g in fresh.items():
            rec = recorded.get(name)
            if rec is None:
                out.append(
                    Check(stage, name, None, g.value, g.status, "", g.blocking, "not recorded by the stage")
                )
                continue
            problem = ""
            if not _same(rec.value, g.value):
                problem = f"value {rec.value!r} recorded, {g.value!r} recomputed"
            elif rec.status != g.status:
                problem = f"status {rec.status} recorded, {g.status} recomputed"
            out.append(Check(stage, name, rec.value, g.value, g.status, rec.status, g.blocking, problem))
    return out


def exit_code(checks: list[Check], strict: bool = False) -> int:
    """7 on any disagreement, 4 on a failing blocking gate (any failing gate with ``strict``), else 0."""
    if any(not c.agrees for c in checks):
        return EXIT_DISAGREE
    if any(c.status == "fail" and (c.blocking or strict) for c in checks):
        return 4
    return 0
