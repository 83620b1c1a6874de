"""Validation gates as data: a name, the measured value, thresholds, and pass/warn/fail.

Gates are written into every stage manifest and rendered by the report; they are never bare asserts.

>>> Gate(name="core_only_auc", value=0.54, ci=(0.50, 0.58), warn=0.60, fail=0.70).status
'pass'
>>> Gate(name="match_rate", value=0.80, warn=0.9, fail=0.5, higher_is_better=True).status
'warn'
>>> Gate(name="in_range", value=1.2, lo=0.9, hi=1.1).status
'fail'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]
_ORDER = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Gate:
    """One validation check.

    Three forms:
    - thresholds: ``warn``/``fail`` on ``value`` (or, when ``ci`` is given and ``use_ci_bound`` is set,
      on the CI bound nearest to passing: the lower bound when higher is worse);
    - a range: ``lo <= value <= hi`` passes, otherwise fail (or warn when ``soft``);
    - explicit: ``forced`` status (for boolean checks such as "no duplicate ids").
    ``blocking=False`` gates never stop the pipeline, but still colour the report.
    """

    name: str
    value: float | int | str | bool | None
    warn: float | None = None
    fail: float | None = None
    lo: float | None = None
    hi: float | None = None
    higher_is_better: bool = False
    ci: tuple[float, float] | None = None
    use_ci_bound: bool = False
    forced: Status | None = None
    soft: bool = False
    blocking: bool = True
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        if self.forced is not None:
            return self.forced
        v = self._test_value()
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "fail"
        if self.lo is not None or self.hi is not None:
            ok = (self.lo is None or v >= self.lo) and (self.hi is None or v <= self.hi)
            return "pass" if ok else ("warn" if self.soft else "fail")
        worse = (lambda a, b: a < b) if self.higher_is_better else (lambda a, b: a > b)
        if self.fail is not None and worse(v, self.fail):
            return "fail"
        if self.warn is not None and worse(v, self.warn):
            return "warn"
        return "pass"

    def _test_value(self) -> float | None:
        if isinstance(self.value, bool):
            return float(self.value)
        if self.use_ci_bound and self.ci is not None:
            return self.ci[1] if self.higher_is_better else self.ci[0]
        if self.value is None or isinstance(self.value, str):
            return None
        return float(self.value)

    @classmethod
    def check(
        cls,
        name: str,
        ok: bool,
        value: Any = None,
        message: str = "",
        *,
        warn_only: bool = False,
        blocking: bool = True,
        detail: dict[str, Any] | None = None,
    ) -> Gate:
        """A boolean gate: pass when ``ok``, otherwise fail (or warn when ``warn_only``)."""
        status: Status = "pass" if ok else ("warn" if warn_only else "fail")
        return cls(
            name=name,
            value=value if value is not None else bool(ok),
            forced=status,
            message=message,
            blocking=blocking,
            detail=detail or {},
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status
        if d["ci"] is not None:
            d["ci"] = list(d["ci"])
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Gate:
        d = dict(d)
        d.pop("status", None)
        if d.get("ci") is not None:
            d["ci"] = tuple(d["ci"])
        return cls(**d)


def worst(statuses: list[Status] | list[Gate]) -> Status:
    """The worst status of a list of gates or statuses ('pass' for an empty list)."""
    out: Status = "pass"
    for s in statuses:
        st = s.status if isinstance(s, Gate) else s
        if _ORDER[st] > _ORDER[out]:
            out = st
    return out


def _jsonable(x: Any) -> Any:
    """Convert numpy scalars and tuples so that json.dumps works and NaN becomes null."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
