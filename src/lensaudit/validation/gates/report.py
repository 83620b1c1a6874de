"""Gates of the report stage: whether every upstream stage completed and is on the page."""

from __future__ import annotations

from typing import Any

from lensaudit.gates import Gate
from lensaudit.run import STAGE_ORDER
from lensaudit.validation.registry import Threshold, register

#: the stages the report renders (every stage before it)
REPORTED = tuple(s for s in STAGE_ORDER if s != "report")


def expected(cfg: Any) -> tuple[str, ...]:
    """The stages a run with this config has: ``sky`` only on synthetic data, ``population`` only there and
    when enabled, ``ensemble`` when enabled and ``mine`` with ``mine.rounds`` > 0 (issue 20)."""
    synthetic = cfg.data.source == "synthetic"
    return tuple(
        s
        for s in REPORTED
        if (s != "sky" or synthetic)
        and (s != "population" or (synthetic and cfg.population.enabled))
        and (s != "ensemble" or cfg.ensemble.enabled)
        and (s != "mine" or cfg.mine.rounds > 0)
    )


@register(
    "all_stages_reported",
    "report",
    "number of the run's upstream stages that are missing or failed (their manifests; sky and population "
    "only "
    "where the config has them)",
    reads=tuple(f"{s} manifest" for s in REPORTED),
    threshold=Threshold(
        "fail when any stage is missing or failed",
        "ours",
        "a report without every stage's results is incomplete; it is still written, so the gate does not "
        "block",
    ),
    blocking=False,
)
def all_stages_reported(inp: Any) -> Gate:
    missing, failed = [], []
    for s in expected(inp.config):
        m = inp.manifest(s)
        if m is None:
            missing.append(s)
        elif m.status != "complete":
            failed.append(s)
    parts = [
        f"missing: {', '.join(missing)}" if missing else "",
        f"failed: {', '.join(failed)}" if failed else "",
    ]
    return Gate.check(
        "all_stages_reported",
        not (missing or failed),
        value=len(missing) + len(failed),
        message="; ".join(p for p in parts if p),
    )
