"""Validation gates as a registry: declared once (``registry``), computed from artifacts (``inputs``),
recomputed by ``lensaudit verify`` (``verify``). The per-stage declarations live in ``validation/gates/``."""

from lensaudit.validation import gates as _gates  # noqa: F401 — populates the registry
from lensaudit.validation.inputs import Inputs, stage_inputs
from lensaudit.validation.registry import SPECS, GateSpec, Threshold, evaluate, register, specs

__all__ = ["SPECS", "GateSpec", "Inputs", "Threshold", "evaluate", "register", "specs", "stage_inputs"]
