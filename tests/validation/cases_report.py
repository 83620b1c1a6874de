"""Passing and failing cases of the report gate, from the manifests of a small run."""

from __future__ import annotations

from pathlib import Path

from helpers import Run

from lensaudit.validation import Inputs
from lensaudit.validation.gates.report import REPORTED


def _run(root: Path, status: dict[str, str]) -> Inputs:
    run = Run(root)
    for stage in REPORTED:
        if status.get(stage, "complete") != "missing":
            run.manifest(stage, status=status.get(stage, "complete"))
    return run.inputs()


CASES = {
    "all_stages_reported": (
        lambda root: _run(root, {}),
        lambda root: _run(root, {"inject": "missing", "selection": "failed"}),
    ),
}
