"""The gate registry: every validation gate declared once, with what it measures, the artifacts it reads, its
thresholds and their source, and whether it blocks the pipeline.

A gate is a function of artifacts (:class:`~lensaudit.validation.inputs.Inputs`), never of a stage's in-memory
state, so that ``lensaudit verify`` recomputes exactly what the stage recorded. A *family* gate (name with
``*``, e.g. ``fpr_*``) returns one :class:`~lensaudit.gates.Gate` per member.

>>> Threshold("warn < {evaluate.auc_warn}", "design", "the design's AUC floor").render(None)
'warn < {evaluate.auc_warn}'
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lensaudit.gates import Gate

Source = Literal["design", "ours"]


@dataclass(frozen=True)
class Threshold:
    """A gate's rule in words (``{section.key}`` placeholders are filled from the config), where the numbers
    come from (``design``: the original design document; ``ours``: a choice of this project) and why."""

    rule: str
    source: Source
    why: str

    def render(self, config: Any) -> str:
        """The rule with config values filled in (left as placeholders without a config)."""
        if config is None:
            return self.rule

        def value(m: re.Match[str]) -> str:
            section, _, key = m.group(1).partition(".")
            try:
                return str(getattr(getattr(config, section), key))
            except AttributeError:
                return m.group(0)

        return re.sub(r"\{([a-z_]+\.[a-z_0-9]+)\}", value, self.rule)


@dataclass(frozen=True)
class GateSpec:
    name: str
    stage: str
    measures: str
    reads: tuple[str, ...]
    threshold: Threshold
    blocking: bool
    compute: Callable[[Any], Gate | list[Gate]]

    def matches(self, gate_name: str) -> bool:
        return fnmatch.fnmatchcase(gate_name, self.name)

    def evaluate(self, inputs: Any) -> list[Gate]:
        out = self.compute(inputs)
        gates = out if isinstance(out, list) else [out]
        for g in gates:
            if not self.matches(g.name):
                raise ValueError(f"gate spec {self.stage}.{self.name} returned a gate named {g.name}")
        return [dataclasses.replace(g, blocking=self.blocking) for g in gates]

    def to_dict(self, config: Any = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "measures": self.measures,
            "reads": list(self.reads),
            "rule": self.threshold.render(config),
            "source": self.threshold.source,
            "why": self.threshold.why,
            "blocking": self.blocking,
        }


SPECS: list[GateSpec] = []


def register(
    name: str, stage: str, measures: str, reads: tuple[str, ...], threshold: Threshold, blocking: bool = True
) -> Callable[[Callable[[Any], Gate | list[Gate]]], Callable[[Any], Gate | list[Gate]]]:
    """Decorator: declare a gate computed by the decorated function of :class:`Inputs`."""

    def deco(fn: Callable[[Any], Gate | list[Gate]]) -> Callable[[Any], Gate | list[Gate]]:
        if any(s.stage == stage and s.name == name for s in SPECS):
            raise ValueError(f"gate {stage}.{name} registered twice")
        SPECS.append(GateSpec(name, stage, measures, tuple(reads), threshold, blocking, fn))
        return fn

    return deco


def specs(stage: str | None = None) -> list[GateSpec]:
    """Registered gates in declaration order (of one stage, or all)."""
    return [s for s in SPECS if stage is None or s.stage == stage]


def spec_for(stage: str, gate_name: str) -> GateSpec | None:
    return next((s for s in specs(stage) if s.matches(gate_name)), None)


def evaluate(stage: str, inputs: Any) -> list[Gate]:
    """Every registered gate of ``stage``, computed from its artifacts."""
    out: list[Gate] = []
    for s in specs(stage):
        out += s.evaluate(inputs)
    return out
