"""What a stage did: provenance, counts, gates, outputs — one ``<stage>/_stage.json`` per stage."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lensaudit import __version__
from lensaudit.gates import Gate, Status, worst


@dataclass
class Manifest:
    """A stage's record. Stages fill ``counts``, ``gates`` and ``extra``; the runner fills the rest
    (``outputs`` from the stage's declared ``WRITES``).

    >>> m = Manifest(counts={"n": 3}, gates=[Gate(name="g", value=1.0, warn=2.0)])
    >>> Manifest.from_dict(m.to_dict()).gate_status
    'pass'
    """

    stage: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
    gates: list[Gate] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    config_hash: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    version: str = __version__
    git_commit: str = ""
    seed: int = 0
    started: str = ""
    finished: str = ""
    wall_s: float = 0.0
    status: str = "complete"

    @property
    def gate_status(self) -> Status:
        return worst(self.gates)

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gates if g.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["gates"] = [g.to_dict() for g in self.gates]
        d["gate_status"] = self.gate_status
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        d = dict(d)
        d.pop("gate_status", None)
        d["gates"] = [Gate.from_dict(g) for g in d.get("gates", [])]
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        return cls.from_dict(json.loads(Path(path).read_text()))


def git_commit() -> str:
    """The checkout's commit (with '+dirty' when modified), or 'unknown' for an installed package (no checkout
    around ``src/lensaudit``)."""
    try:
        root = Path(__file__).resolve().parents[3]  # <checkout>/src/lensaudit/run/manifest.py
        if not (root / ".git").exists() or not (root / "src" / "lensaudit").is_dir():
            return "unknown"
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
