"""The self-contained HTML report: every figure embedded as base64 PNG, every number in a captioned table.

The page reads like a paper's appendix: numbered tables with headers and captions, numbered figures, and one
number format throughout (:func:`fmt`). It is built from the manifests of the completed stages and the
artifacts they wrote, located through a resolver ``path(stage, name) -> Path`` (the report stage passes
``ctx.artifact``), so this module never builds a path to another stage's file by hand. Every artifact is
optional: a missing one leaves its table or figure out and says so.

Catalogue strings (lens names, galaxy ids, gate messages) reach the page only through Jinja's autoescaping;
the only markup that is not escaped is the ``<figure>`` HTML generated here (:func:`_figure`).
"""

from __future__ import annotations

import base64
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup

from lensaudit import __version__
from lensaudit.gates import Gate
from lensaudit.report.figures.report import skymap
from lensaudit.run import STAGE_ORDER, Manifest
from lensaudit.validation.registry import spec_for

#: ``path(stage, name)``: where a registered artifact lives (``StageContext.artifact`` in the stage)
Resolver = Callable[[str, str], Path]

SECTIONS = [
    ("summary", "1. Run summary"),
    ("gates", "2. Gate table"),
    ("data", "3. Data schematic"),
    ("training", "4. Training"),
    ("audit", "5. Audit"),
    ("realism", "6. Injection realism"),
    ("selection", "7. Selection function"),
    ("closure", "8. Closure test"),
    ("failures", "9. Failure modes"),
    ("limitations", "10. Limitations"),
]

#: the stages the report reads (every one but itself)
UPSTREAM: tuple[str, ...] = tuple(s for s in STAGE_ORDER if s != "report")

DASH = "—"
MINUS = "−"

#: labels of manifest counts and metric keys whose plain spelling reads badly
LABELS = {
    "catalogued": "objects in the sweeps",
    "objects": "objects drawn",
    "lenses_csv": "lenses in lenses.csv",
    "lenses_rendered": "lenses rendered",
    "input_rows": "input rows",
    "in_footprint": "in the footprint",
    "outside_footprint": "outside the footprint",
    "from_lenscat": "from lenscat",
    "parent": "parent sample",
    "excluded_near_lens": "excluded near a known lens",
    "pool": "negative pool",
    "split_train": "pool: train split",
    "split_val": "pool: val split",
    "split_test": "pool: test split",
    "positives_covered": "positives covered by sweeps",
    "positives_failing_parent_cuts": "positives failing the parent cuts",
    "shortfall": "negatives short of target",
    "ok": "cut out",
    "quality_ok": "quality OK",
    "max_attempts_used": "max attempts used",
    "host_pool": "host pool",
    "candidate_hosts_excluded": "candidate hosts left out",
    "detected_main": "detected (main injections)",
    "injections_scored": "injections scored",
    "cells_sufficient": "sufficient cells",
    "cells_filled": "cells with hosts",
    "collapse_cells": "completeness-collapse cells",
    "missed_tier_A": "missed Tier-A lenses",
    "false_positives": "false positives",
    "best_val_auc": "best validation AUC",
    "frozen_sha256": "frozen model SHA-256",
    "environment": "trained with",
    "stopped": "stopping reason",
    "epochs": "epochs run",
    "n1_candidates": "N1 negatives of the host splits",
    "splits": "host splits",
    "hosts_all": "hosts (all N1, host bracket)",
    "hosts_effective": "effective number of weighted hosts",
    "candidates_excluded": "hosts left out: the finder's own candidates",
    "match": "host match",
    "hosts": "hosts",
    "mag_r": "r magnitude range",
    "g_r": "g − r range",
    "types": "morphological types",
    "catalog.rows": "sweep rows read",
    "sample.rows": "objects in the sample",
    "cutouts.stamps": "stamps cut",
    "train.train": "training rows",
    "train.val": "validation rows",
    "evaluate.scored": "objects scored (val + test)",
    "evaluate.test": "test objects",
    "evaluate.val": "validation objects",
    "evaluate.test_pos": "test positives",
    "selection.cells": "grid cells",
    "inject.cells": "grid cells",
}
_TOKENS = {
    "n1": "N1",
    "n2": "N2",
    "pos": "positives",
    "neg": "negatives",
    "tier": "Tier",
    "psf": "PSF",
    "snr": "SNR",
    "auc": "AUC",
    "fpr": "FPR",
    "ece": "ECE",
    "csv": "CSV",
    "sha256": "SHA-256",
    "desi": "DESI",
    "vac": "VAC",
    "sl": "SL",
    "val": "val",
}
FAILURE_KINDS = {"false_positive": "false positive", "missed_tier_A": "missed Tier-A lens"}
SHIFTS = {
    "binning_shift": "coarser depth binning",
    "prior_shift": "source prior ∓ 0.75 mag (re-weighted marginal)",
    "morphology_shift": "source morphology (Sérsic ↔ clumpy)",
    "host_shift": "hosts (deflector-like ↔ all N1)",
    "psf_beta_shift": "PSF Moffat β bracket (paired)",
    "nobs_shift": "host nobs_z (≤ / > median)",
    "type_shift": "host Tractor TYPE",
}


# -- number and label formatting ------------------------------------------------------------------
def fmt(v: Any, digits: int | None = 3) -> str:
    """One format for every number on the page (the Jinja filter ``fmt``).

    Integers get thousands separators; floats ``digits`` decimals (3: AUCs, recalls, rates), one decimal from
    100 and none from 10,000, significant digits below 10^-digits; ``digits=None`` gives the shortest form
    (thresholds as configured: 0.7, not 0.700). None and NaN print as an em dash; negative numbers get a true
    minus sign. A pair or list prints as ``[a, b]`` (intervals), a list of words as ``a, b``; strings pass
    unchanged (the template escapes them).

    >>> fmt(1234567), fmt(0.912345), fmt(float("nan")), fmt(None), fmt(-0.5, 2), fmt(0.00001234)
    ('1,234,567', '0.912', '—', '—', '−0.50', '1.23e−05')
    >>> fmt([0.5, 0.75]), fmt(["SER", "DEV"]), fmt(True), fmt(123.45), fmt(54321.5), fmt(0.7, None)
    ('[0.500, 0.750]', 'SER, DEV', 'yes', '123.5', '54,322', '0.7')
    """
    if v is None:
        return DASH
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "yes" if v else "no"
    if isinstance(v, numbers.Integral):
        return f"{int(v):,}".replace("-", MINUS)
    if isinstance(v, numbers.Real):
        x = float(v)
        if math.isnan(x):
            return DASH
        if math.isinf(x):
            return "∞" if x > 0 else f"{MINUS}∞"
        a = abs(x)
        if digits is None:
            s = f"{x:.4g}"
        elif a == 0:
            s = f"{0:.{digits}f}"
        elif a >= 1e4:
            s = f"{x:,.0f}"
        elif a >= 100:
            s = f"{x:,.1f}"
        elif a >= 10**-digits:
            s = f"{x:.{digits}f}"
        else:
            s = f"{x:.{digits}g}"
        return s.replace("-", MINUS)
    if isinstance(v, Mapping):
        return "; ".join(f"{label(k)}: {fmt(x, digits)}" for k, x in v.items()) or DASH
    if isinstance(v, Iterable):
        items = list(v)
        if not items or all(_missing(x) for x in items):
            return DASH
        if any(isinstance(x, str) for x in items):
            return ", ".join(fmt(x, digits) for x in items)
        return "[" + ", ".join(fmt(x, digits) for x in items) + "]"
    return str(v)


def _numeric(x: Any) -> bool:
    """Whether a cell holds a number, an interval of numbers or nothing (right-aligned in tables)."""
    if x is None or isinstance(x, numbers.Number):
        return True
    return (
        isinstance(x, list | tuple)
        and any(isinstance(v, numbers.Number) for v in x)
        and not any(isinstance(v, str) for v in x)
    )


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def label(key: str, stage: str = "") -> str:
    """A readable label for a manifest key (``stage.key`` entries of LABELS first): ``tier_A`` → ``Tier A``,
    ``n2_ring_proxy`` → ``N2 ring proxy``.

    >>> label("tier_A"), label("n2_ring_proxy"), label("train_pos"), label("excluded_near_lens")
    ('Tier A', 'N2 ring proxy', 'train positives', 'excluded near a known lens')
    """
    if f"{stage}.{key}" in LABELS:
        return LABELS[f"{stage}.{key}"]
    if key in LABELS:
        return LABELS[key]
    words = [_TOKENS.get(w.lower(), w) for w in str(key).split("_") if w]
    return " ".join(words)


def thresholds(g: Gate) -> str:
    """A gate's thresholds in words: which values warn or fail (or the passing range)."""
    if g.forced is not None:
        return "by rule"
    if g.lo is not None or g.hi is not None:
        lo = fmt(g.lo, None) if g.lo is not None else f"{MINUS}∞"
        hi = fmt(g.hi, None) if g.hi is not None else "∞"
        return f"pass in [{lo}, {hi}]" + (", else warn" if g.soft else "")
    op = "<" if g.higher_is_better else ">"
    parts = [
        f"warn {op} {fmt(g.warn, None)}" if g.warn is not None else "",
        f"fail {op} {fmt(g.fail, None)}" if g.fail is not None else "",
    ]
    out = " · ".join(p for p in parts if p)
    if out and g.use_ci_bound and g.ci is not None:
        out += " (CI bound)"
    return out or DASH


# -- tables -----------------------------------------------------------------------------------------
@dataclass
class Cell:
    """A table cell with its own CSS class (status colouring)."""

    value: Any
    cls: str = ""
    title: str = ""


@dataclass
class Table:
    """A captioned table: the template numbers it and formats every cell with ``fmt``."""

    caption: str
    head: list[str]
    rows: list[list[Any]]
    row_class: list[str] = field(default_factory=list)
    cls: str = "tbl"
    note: str = ""


def _num(text: str) -> Cell:
    """A preformatted number (k/n, a ± b, a threshold): right-aligned like the numbers."""
    return Cell(text, "num")


def _kv(
    caption: str,
    items: Iterable[tuple[str, Any]],
    head: tuple[str, str] = ("quantity", "value"),
    note: str = "",
) -> Table | None:
    """A two-column quantity/value table (None when there is nothing to show)."""
    rows = [[k, v] for k, v in items]
    return Table(caption, list(head), rows, note=note, cls="tbl kv") if rows else None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as (readable label path, value) pairs."""
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        name = f"{prefix}{label(k)}"
        if isinstance(v, Mapping):
            out += _flatten(v, prefix=f"{name} · ")
        else:
            out.append((name, v))
    return out


def _kn_text(r: Mapping[str, Any] | None) -> str:
    """``k/n`` of a binomial rate ({'k', 'n', 'rate', 'lo', 'hi'})."""
    return f"{fmt(r.get('k'))}/{fmt(r.get('n'))}" if r else DASH


def _kn(r: Mapping[str, Any] | None) -> Cell:
    return _num(_kn_text(r))


def _json(p: Path) -> dict[str, Any]:
    return json.loads(p.read_text()) if p.is_file() else {}


# -- the sections -----------------------------------------------------------------------------------
def _summary(mans: Mapping[str, Manifest]) -> tuple[Table, list[tuple[str, list[tuple[str, Any]]]]]:
    rows: list[list[Any]] = []
    cls: list[str] = []
    for s in UPSTREAM:
        m = mans.get(s)
        if m is None:
            rows.append([s, Cell("missing", "missing"), DASH, DASH, None, DASH, DASH, DASH])
            cls.append("absent")
            continue
        n = {st: sum(g.status == st for g in m.gates) for st in ("pass", "warn", "fail")}
        tally = ", ".join(f"{v} {k}" for k, v in n.items() if v) or "no gates"
        rows.append(
            [
                s,
                m.status,
                Cell(m.gate_status, m.gate_status),
                tally,
                _num(fmt(m.wall_s, 1)),
                m.finished.replace("T", " ").replace("+00:00", " UTC") or DASH,
                m.version,
                m.git_commit[:12] or DASH,
            ]
        )
        cls.append("")
    table = Table(
        "Stages of this run: status, worst gate, wall time and provenance. A missing stage did not "
        "complete in this run directory; its sections below are empty.",
        ["stage", "status", "worst gate", "gates", "wall time (s)", "finished", "version", "commit"],
        rows,
        cls,
    )
    counts = [
        (s, [(label(k, s), v) for k, v in mans[s].counts.items()])
        for s in UPSTREAM
        if s in mans and mans[s].counts
    ]
    return table, counts


def _gate_row(g: Gate) -> list[Any]:
    """gate, status (coloured), value, 68% CI, thresholds, message."""
    return [g.name, Cell(g.status, g.status), g.value, g.ci, Cell(thresholds(g), "nowrap"), g.message or DASH]


def _source(stage: str, g: Gate) -> Cell:
    """Where a gate's thresholds come from (the design, or ours), with the reason as a tooltip."""
    spec = spec_for(stage, g.name)
    if spec is None:
        return Cell("unregistered", "fail", "not in the gate registry (lensaudit gates)")
    return Cell(spec.threshold.source, "", spec.threshold.why)


def _gates(mans: Mapping[str, Manifest]) -> Table:
    rows: list[list[Any]] = []
    cls: list[str] = []
    for s in UPSTREAM:
        for g in mans[s].gates if s in mans else []:
            row = [s, *_gate_row(g)]
            rows.append([*row[:6], _source(s, g), *row[6:]])
            cls.append("" if g.status == "pass" else g.status)
    return Table(
        "Every validation gate, in stage order (warnings and failures tinted). Thresholds say which "
        "values warn or fail; 'by rule' gates are set by the stage from a boolean check or a documented "
        "rule. Source: 'design' = the original design's threshold, 'ours' = this project's choice (hover for "
        "the reason; every gate is listed by `lensaudit gates`).",
        ["stage", "gate", "status", "value", "68% CI", "thresholds", "source", "message"],
        rows,
        cls,
        cls="tbl gates",
    )


def _overrides(overrides: Mapping[str, str]) -> Table | None:
    """The thresholds this run's config sets away from the defaults, with the reason the config gives."""
    if not overrides:
        return None
    return Table(
        "Thresholds overridden by this run's config (report.threshold_overrides): the defaults are the "
        "design's; the reason is the config's own comment.",
        ["config key", "reason"],
        [[k, v] for k, v in overrides.items()],
    )


def _data(path: Resolver, mans: Mapping[str, Manifest], skymap_png: Path) -> dict[str, Any]:
    flow_keys = [
        ("sky", "catalogued"),
        ("positives", "positives"),
        ("catalog", "parent"),
        ("catalog", "pool"),
        ("sample", "rows"),
        ("cutouts", "stamps"),
        ("cutouts", "quality_ok"),
    ]
    flow = [[s, label(k, s), mans[s].counts[k]] for s, k in flow_keys if s in mans and k in mans[s].counts]
    out: dict[str, Any] = {
        "flow": Table("Objects through the data stages.", ["stage", "quantity", "objects"], flow)
        if flow
        else None,
        "splits": None,
        "n2": None,
        "skymap": None,
    }
    p = path("sample", "sample")
    n2_pool = mans["catalog"].extra.get("n2_per_category", {}) if "catalog" in mans else {}
    n2_sample: dict[str, int] = {}
    if p.is_file():
        s = pd.read_parquet(p)
        order = [x for x in ("train", "val", "test") if x in set(s.split)] + sorted(
            set(s.split) - {"train", "val", "test"}
        )
        pools = [x for x in ("positive", "N1", "N2") if x in set(s.pool)] + sorted(
            set(s.pool) - {"positive", "N1", "N2"}
        )
        tab = pd.crosstab(s.split, s.pool).reindex(index=order, columns=pools, fill_value=0)
        rows = [[sp, *[int(x) for x in tab.loc[sp]], int(tab.loc[sp].sum())] for sp in order]
        rows.append(["total", *[int(tab[c].sum()) for c in pools], int(tab.to_numpy().sum())])
        out["splits"] = Table(
            "The sample by spatial split (rows) and pool (columns): positives, N1 random "
            "negatives, N2 hard confusers.",
            ["split", *pools, "total"],
            rows,
            [""] * (len(rows) - 1) + ["total"],
        )
        n2_sample = {str(k): int(v) for k, v in s[s.pool == "N2"].n2_category.value_counts().items()}
        skymap(s, skymap_png)
        out["skymap"] = skymap_png
    cats = list(n2_pool) + [c for c in n2_sample if c not in n2_pool]
    if cats:
        rows = [[c, n2_pool.get(c), n2_sample.get(c, 0) if p.is_file() else None] for c in cats]
        out["n2"] = Table(
            "N2 hard-confuser categories: in the catalogue pool and in the sample.",
            ["N2 category", "catalogue pool", "sample"],
            rows,
        )
    return out


def _training(mans: Mapping[str, Manifest]) -> Table | None:
    if "train" not in mans:
        return None
    m = mans["train"]
    items = [(label(k, "train"), m.counts[k]) for k in m.counts] + [
        (label(k, "train"), v) for k, v in m.extra.items()
    ]
    return _kv("Training: rows used, epochs, early stopping and the frozen model.", items)


def _audit(ev: Mapping[str, Any]) -> dict[str, Table | None]:
    if not ev:
        return {}
    auc, auc_val, d = ev.get("auc_test") or {}, ev.get("auc_val") or {}, ev.get("auc_val_minus_test") or {}
    rows = [
        ["test AUC", auc.get("value"), auc.get("ci68")],
        ["validation AUC", auc_val.get("value"), auc_val.get("ci68")],
        [f"validation {MINUS} test ΔAUC", d.get("value"), d.get("ci68")],
        ["test objects", ev.get("n_test"), None],
        ["test positives", ev.get("n_test_pos"), None],
        ["TPR at 0 false positives", ev.get("tpr0"), None],
        ["TPR at ≤ 10 false positives", ev.get("tpr10"), None],
        ["ECE (equal-mass bins)", ev.get("ece"), None],
        ["ECE after temperature scaling", ev.get("ece_calibrated"), None],
        ["temperature T", ev.get("temperature"), None],
        ["operating point", ev.get("operating_point"), None],
        ["operating threshold (score)", _num(fmt(ev.get("operating_threshold"), 4)), None],
    ]
    vac = ev.get("desi_sl_vac")
    if vac:
        r = vac.get("recall_at_op") or {}
        rows.append(
            [
                f"DESI SL VAC recall at the operating point ({_kn_text(r)}; "
                f"{fmt(vac.get('n_matched_stamps'))} of {fmt(vac.get('n_vac'))} VAC lenses matched)",
                r.get("rate"),
                [r.get("lo"), r.get("hi")],
            ]
        )
    out: dict[str, Table | None] = {
        "metrics": Table(
            "Audit metrics on the spatial test split (bootstrap 68% intervals).",
            ["metric", "value", "68% CI"],
            rows,
        )
    }
    ra, rb, th = ev.get("recall_tier_A") or {}, ev.get("recall_tier_B") or {}, ev.get("thresholds") or {}
    rows = []
    for name in list(ra) + [n for n in rb if n not in ra]:
        a, b = ra.get(name) or {}, rb.get(name) or {}
        rows.append(
            [
                name,
                _num(fmt(th.get(name), 4)),
                _kn(a),
                a.get("rate"),
                [a.get("lo"), a.get("hi")] if a else None,
                _kn(b),
                b.get("rate"),
                [b.get("lo"), b.get("hi")] if b else None,
            ]
        )
    out["recall"] = (
        Table(
            "Recall per tier at each threshold (Jeffreys 68% intervals). 'fpr=' thresholds are set "
            "on the test negatives' scores.",
            [
                "threshold",
                "score",
                "Tier A k/n",
                "Tier A recall",
                "Tier A interval",
                "Tier B k/n",
                "Tier B recall",
                "Tier B interval",
            ],
            rows,
        )
        if rows
        else None
    )
    rows = [
        [c, _kn(r), r.get("rate"), [r.get("lo"), r.get("hi")]]
        for c, r in (ev.get("fpr_by_category") or {}).items()
    ]
    out["fpr"] = (
        Table(
            "False-positive rate at the operating point per negative category (Jeffreys 68% intervals).",
            ["category", "k/n", "FPR", "68% interval"],
            rows,
        )
        if rows
        else None
    )
    sc = ev.get("shortcuts") or {}
    names = {
        "core_only": "core-only AUC",
        "core_colour": "core-colour AUC",
        "annulus_only": "annulus-only AUC",
        "core_brightness_ratio": "core brightness ratio (positives / negatives)",
        "noise_mad_ratio": "noise MAD ratio (positives / negatives)",
    }
    rows = [
        [
            names.get(k, label(k)),
            v.get("value") if isinstance(v, Mapping) else v,
            v.get("ci68") if isinstance(v, Mapping) else None,
        ]
        for k, v in sc.items()
    ]
    out["shortcuts"] = (
        Table(
            "Shortcut probes: can the label be predicted without the arcs? (logistic regression "
            "on aperture fluxes, cross-validated; medians of stamp statistics).",
            ["probe", "value", "68% CI"],
            rows,
        )
        if rows
        else None
    )
    return out


def _realism(inj: Mapping[str, Any], mans: Mapping[str, Manifest]) -> dict[str, Any]:
    if not inj and "inject" not in mans:
        return {}
    gates = [Gate.from_dict(g) for g in inj.get("gates", [])] or (
        mans["inject"].gates if "inject" in mans else []
    )
    out: dict[str, Any] = {
        "verdict": inj.get("verdict") or (mans["inject"].extra.get("verdict") if "inject" in mans else None)
    }
    out["gates"] = (
        Table(
            "Realism gates: injected arcs against the real positives, matched in conditions.",
            ["gate", "status", "value", "68% CI", "thresholds", "message"],
            [_gate_row(g) for g in gates],
            ["" if g.status == "pass" else g.status for g in gates],
            cls="tbl gates",
        )
        if gates
        else None
    )
    real, injp = inj.get("real_snr_percentiles") or [None] * 3, inj.get("inj_snr_percentiles") or [None] * 3
    out["snr"] = (
        Table(
            "Host-subtracted annulus arc SNR percentiles.",
            ["percentile", "real positives", "injections"],
            [[f"{p}th", real[i], injp[i]] for i, p in enumerate((10, 50, 90))],
        )
        if inj
        else None
    )
    probe = inj.get("probe") or {}
    items = [
        ("real positives compared", inj.get("n_real")),
        ("injections compared", inj.get("n_inj_compared")),
        ("matching", inj.get("matching")),
        ("linear-probe AUC, real vs injected", probe.get("value")),
        ("linear-probe AUC 68% CI", probe.get("ci68")),
    ]
    items += [
        (f"host {k}" if not k.startswith("host") else k, v) for k, v in _flatten(inj.get("hosts") or {})
    ]
    out["compare"] = (
        _kv(
            "What was compared: samples, matching, the feature-space probe and the host pool.",
            [(k, v) for k, v in items if v is not None],
        )
        if inj
        else None
    )
    return out


def _selection(path: Resolver, mans: Mapping[str, Manifest]) -> dict[str, Table | None]:
    out: dict[str, Table | None] = {"summary": None, "robust": None}
    if "selection" in mans:
        m = mans["selection"]
        items = [(label(k, "selection"), v) for k, v in m.counts.items()]
        items += [
            ("operating threshold (score)", fmt(m.extra.get("operating_threshold"), 4)),
            ("computed on a NO-GO realism verdict (forced)", m.extra.get("forced")),
        ]
        out["summary"] = _kv(
            "Selection function: injections, grid cells and detections at the operating point.", items
        )
    p = path("selection", "robustness")
    if p.is_file():
        r = pd.read_parquet(p)
        kinds = [c for c in SHIFTS if c in r.columns]
        if kinds:
            col = {k: r[k].dropna() for k in kinds}
            rows = [
                ["max |ΔC|", *[col[k].max() if len(col[k]) else None for k in kinds]],
                ["median |ΔC|", *[col[k].median() if len(col[k]) else None for k in kinds]],
                ["cells", *[len(col[k]) for k in kinds]],
            ]
            out["robust"] = Table(
                "Robustness and prior sensitivity: the per-cell shift |ΔC| of completeness under "
                "each alternative (over every cell with a value; the gates use sufficient cells "
                "only).",
                ["", *[SHIFTS[k] for k in kinds]],
                rows,
            )
    return out


def _systematics(s: Mapping[str, Any]) -> dict[str, Table | None]:
    """The paired brackets' ΔC per θE (PSF β, inner image) and the SLACS/BELLS-like stress set's recall."""
    out: dict[str, Table | None] = {"paired": None, "stress": None}
    tag = f"{fmt(100 * float(s.get('interval') or 0.68), 0)}%"
    paired = s.get("paired") or []
    if paired:
        names = {
            v["variant"]: (
                "inner image suppressed" if v["variant"] == "no_inner" else f"Moffat β {v['variant'][9:]}"
            )
            for v in paired
        }
        thetas = sorted({r["theta_e"] for v in paired for r in v["by_theta_e"]})
        by = {v["variant"]: {r["theta_e"]: r for r in v["by_theta_e"]} for v in paired}

        def cell(r: Mapping[str, Any] | None) -> Cell:
            if not r:
                return _num(DASH)
            return _num(f"{fmt(r['delta'], 3)} [{fmt(r['lo'], 3)}, {fmt(r['hi'], 3)}]")

        rows: list[list[Any]] = [[_num(f"{fmt(t, 2)}″"), *[cell(by[v].get(t)) for v in by]] for t in thetas]
        rows.append(["all θE", *[cell(v) for v in paired]])
        rows.append(["pairs", *[v["n_pairs"] for v in paired]])
        rows.append(["C of the main injections paired", *[_num(fmt(v["c_main"], 3)) for v in paired]])
        out["paired"] = Table(
            "Paired systematics: ΔC = C(variant) − C(main) per θE over every PSF/depth cell, each variant "
            "the same injections re-rendered with one change (same host, lens and source), with the "
            f"{tag} interval of the mean paired difference. The PSF β bracket is the Moffat wing shape (main "
            "β: each host brick's own, fitted to its stars, with inject.psf_shape 'stars'; else "
            "inject.psf_beta); the inner-image ablation suppresses the counter-image inside 0.5 θE.",
            ["θE", *names.values()],
            rows,
            ["", *([""] * (len(rows) - 3)), "total", "", ""],
        )
    st = s.get("stress")
    if st:
        rows = [
            [
                _num(f"{fmt(r['lo_edge'], 1)}–{fmt(r['hi_edge'], 1)}″"),
                r["n"],
                r["k"],
                _num(f"{fmt(r['recall'], 3)} [{fmt(r['lo'], 3)}, {fmt(r['hi'], 3)}]"),
            ]
            for r in st["by_theta_e"]
        ]
        rows.append(
            [
                "all",
                st["n"],
                st["k"],
                _num(f"{fmt(st['recall'], 3)} [{fmt(st['lo'], 3)}, {fmt(st['hi'], 3)}]"),
            ]
        )
        out["stress"] = Table(
            "SLACS/BELLS-like stress set (θE 0.6–1.8″, unlensed source r 21–24 with r_eff 0.05–0.2″, "
            "behind the brightest, reddest deflector-like hosts at their own PSF and depth): recall with its "
            f"{tag} Beta interval. The conditional table C(θE, PSF, depth, m_src) predicts "
            f"{fmt(st.get('grid_expected'), 1)} ± {fmt(st.get('grid_sigma'), 1)} detections for the "
            f"{st.get('grid_n_predicted')} systems it covers, against {st.get('grid_observed')} observed "
            f"(pull {fmt(st.get('grid_pull'), 2)}): a large pull says the grid's source prior does not carry "
            "over to compact sources.",
            ["θE", "n", "detected", f"recall [{tag}]"],
            rows,
            [*([""] * (len(rows) - 1)), "total"],
        )
    return out


def _predictive_sentence(c: Mapping[str, Any]) -> str:
    """How often a correct table would meet each closure criterion, and do as badly as observed or worse
    (closure.json ``predictive``: ``p_pass``, ``p_as_bad``)."""
    pr = c.get("predictive") or {}
    pp, ab, cr = pr.get("p_pass") or {}, pr.get("p_as_bad") or {}, pr.get("criteria") or {}
    if not pp:
        return ""

    def pct(d: Mapping[str, Any], k: str) -> str:
        return "n/a" if d.get(k) is None else f"{100 * d[k]:.0f}%"

    worse = (
        f" It would do as badly as observed, or worse, in {pct(ab, 'fraction_within_1sigma')} of draws "
        f"(within 1σ), {pct(ab, 'chi2_pvalue')} (χ² p) and {pct(ab, 'abs_total_pull')} (|pull|)."
        if ab
        else ""
    )
    return (
        f" Had the table been right ({pr.get('draws')} draws of the lenses' detections from "
        f"{pr.get('truth')}), within 1σ ≥ {cr.get('fraction_within_1sigma')} would hold in "
        f"{pct(pp, 'fraction_within_1sigma')} of draws, χ² p ≥ {cr.get('chi2_pvalue')} in "
        f"{pct(pp, 'chi2_pvalue')}, |pull| ≤ {cr.get('abs_total_pull')} in {pct(pp, 'abs_total_pull')}, "
        f"all three in {pct(pp, 'all')}.{worse}"
    )


def _closure_bins(bins: list[dict[str, Any]], unit: str) -> list[list[Any]]:
    return [
        [
            _num(f"{fmt(b.get('lo'), 2)}–{fmt(b.get('hi'), 2)}"),
            b.get("n"),
            _num(f"{fmt(b.get('expected'), 2)} ± {fmt(b.get('sigma'), 2)}"),
            _num(f"{fmt(b.get('sigma_binomial'), 2)} / {fmt(b.get('sigma_table'), 2)}"),
            b.get("observed"),
            _num(fmt(b.get("pull"), 2)),
        ]
        for b in bins
    ]


def _table_sigma(c: Mapping[str, Any]) -> str:
    """How the closure's σ of the table was computed, in words."""
    hb = c.get("host_bootstrap") or {}
    if c.get("table_sigma") != "host bootstrap":
        return "from the cells' Beta posteriors, as if the injections were independent draws"
    return (
        f"from {hb.get('n_boot')} host-bootstrap replicate tables (the injections share "
        f"{hb.get('n_hosts')} hosts; resampling them widens the grid's median 68% interval from "
        f"{fmt(hb.get('median_ci68_width_beta'), 3)} to {fmt(hb.get('median_ci68_width_hosts'), 3)})"
    )


def _closure(c: Mapping[str, Any], where: str = "the synthetic sky") -> list[Table]:
    """The closure tables: the ladder, then expected vs observed per θE bin and per magnitude bin."""
    if not c.get("theta_bins"):
        return []
    out = []
    if c.get("ladder"):
        out.append(
            Table(
                f"Closure ladder on {where}: the total pull of the true lenses' detections under each way of "
                f"predicting them (σ = binomial ⊕ table; the table's part {_table_sigma(c)}). The row the "
                "run's table uses is in bold.",
                [
                    "rung",
                    "expected",
                    "observed",
                    "σ binomial",
                    "σ table",
                    "σ table (Beta, independent draws)",
                    "pull",
                    "χ² p",
                    "within 1σ",
                ],
                [
                    [
                        r.get("what"),
                        _num(fmt(r.get("expected"), 1)),
                        r.get("observed"),
                        _num(fmt(r.get("sigma_binomial"), 2)),
                        _num(fmt(r.get("sigma_table"), 2)),
                        _num(fmt(r.get("sigma_table_beta"), 2)),
                        _num(fmt(r.get("pull"), 2)),
                        _num(fmt(r.get("chi2_pvalue"), 3)),
                        _num(fmt(r.get("fraction_within_1sigma"), 2)),
                    ]
                    for r in c["ladder"]
                ],
                ["total" if r.get("rung") == c.get("condition_on") else "" for r in c["ladder"]],
            )
        )
    head = ["range", "n", "expected ± σ", "σ binomial / table", "observed", "pull"]
    t = c.get("total") or {}
    summary = (
        f"All {c.get('n_lenses')} lenses: {t.get('observed')} observed vs {fmt(t.get('expected'), 1)} ± "
        f"{fmt(t.get('sigma'), 1)} expected (pull {fmt(t.get('pull'), 2)}); χ² = {fmt(c.get('chi2'), 1)} "
        "over "
        f"{c.get('chi2_dof')} θE × magnitude bins with ≥ 5 expected, p = {fmt(c.get('chi2_pvalue'), 3)}; "
        f"bins within 1σ {fmt(c.get('fraction_within_1sigma'), 2)}, within 2σ "
        f"{fmt(c.get('fraction_within_2sigma'), 2)}.{_predictive_sentence(c)}"
    )
    out.append(
        Table(
            f"Closure on {where} per true θE bin (arcsec), table on axis {c.get('axis')}. {summary}",
            head,
            _closure_bins(c["theta_bins"], "″"),
            note=f"Note: {c['note']}." if c.get("note") else "",
        )
    )
    out.append(
        Table(
            f"Closure on {where} per true {c.get('mag_column')} bin (mag).",
            head,
            _closure_bins(c.get("mag_bins") or [], "mag"),
        )
    )
    if c.get("mag_column") != "src_mag_r" and c.get("src_mag_bins"):
        out.append(
            Table(
                f"Closure on {where} per true unlensed source r magnitude bin (same table).",
                head,
                _closure_bins(c["src_mag_bins"], "mag"),
            )
        )
    return out


def _failures(f: Mapping[str, Any], galleries: Path) -> dict[str, Any]:
    if not f:
        return {}
    out: dict[str, Any] = {}
    rows = [
        [FAILURE_KINDS.get(r.get("kind_of_failure"), r.get("kind_of_failure")), r.get("mode"), r.get("n")]
        for r in f.get("mode_counts", [])
    ]
    out["modes"] = (
        Table(
            f"Failure modes at the operating threshold {fmt(f.get('operating_threshold'), 4)} "
            "(rules below; first matching rule wins).",
            ["failure", "mode", "n"],
            rows,
        )
        if rows
        else None
    )
    acc = []
    for key, what in (
        ("taxonomy_accuracy", "false positives with confuser truth"),
        ("missed_taxonomy_accuracy", "missed Tier-A lenses (not masked) with truth"),
    ):
        a = f.get(key) or {}
        extra = a.get("unknown_lenses_among_fp")
        acc.append(
            [
                what,
                a.get("n"),
                a.get("accuracy"),
                f"{fmt(extra)} unknown true lenses among the false positives" if extra is not None else DASH,
            ]
        )
    out["accuracy"] = Table(
        f"Taxonomy accuracy: agreement of the rule-assigned modes with the synthetic sky's "
        f"truth. Completeness-collapse cells: {fmt(f.get('collapse_cells'))}.",
        ["population scored", "n", "accuracy", "note"],
        acc,
    )
    conf = (f.get("missed_taxonomy_accuracy") or {}).get("confusion") or {}
    if conf:
        rules = sorted({r for row in conf.values() for r in row})
        out["confusion"] = Table(
            "Missed Tier-A lenses: truth mode (rows) against rule mode (columns).",
            ["truth \\ rule", *rules],
            [[t, *[row.get(r, 0) for r in rules]] for t, row in conf.items()],
        )
    out["rules"] = f.get("rules") or ""
    names = {
        f"gallery_{r.get('kind_of_failure')}_{str(r.get('mode')).replace(':', '_')}.png": r
        for r in f.get("mode_counts", [])
    }
    out["galleries"] = []
    for g in f.get("galleries", []):
        r = names.get(str(g))
        if r:
            fp, n = r.get("kind_of_failure") == "false_positive", r.get("n")
            kind = FAILURE_KINDS.get(r.get("kind_of_failure"), r.get("kind_of_failure"))
            what = (
                f"{kind}, mode {r.get('mode')} "
                f"({fmt(n)} object{'' if n == 1 else 's'}; the {'highest' if fp else 'lowest'}-scoring shown)"
            )
        else:
            what = str(g)
        out["galleries"].append((galleries / Path(str(g)).name, f"Failure gallery: {what}."))
    return out


def _limitations(mans: Mapping[str, Manifest], closure: Mapping[str, Any]) -> list[str]:
    out = [
        f"Stage '{s}' did not complete in this run directory; its section is empty."
        for s in UPSTREAM
        if s not in mans
    ]
    for s, m in mans.items():
        for g in m.gates:
            if g.status != "pass":
                out.append(f"{s}: gate '{g.name}' is {g.status.upper()} (value {fmt(g.value)}) — {g.message}")
    if "sample" in mans and mans["sample"].counts.get("shortfall"):
        out.append(
            f"sample: {fmt(mans['sample'].counts['shortfall'])} negatives short of the target ratio in thin "
            "strata (reported per stratum)."
        )
    if "positives" in mans:
        c = mans["positives"].counts
        out.append(
            f"Label noise: {fmt(c.get('tier_B', 0))} of {fmt(c.get('positives', 0))} positives are Tier-B "
            f"(probable) candidates, weighted {0.5}."
        )
    if "selection" in mans:
        c = mans["selection"].counts
        out.append(
            f"selection: {fmt(c.get('cells', 0) - c.get('cells_sufficient', 0))} of {fmt(c.get('cells', 0))} "
            "cells are insufficient (fewer than n_min injections)."
        )
    if closure.get("available") is False:
        out.append("The closure test needs the synthetic sky's truth; it is not available on real data.")
    return out


def _figure(path: Path, caption: str, number: Callable[[], int]) -> Markup:
    """A numbered ``<figure>`` with the PNG embedded as base64 (or a note that it was not produced)."""
    if not path.is_file():
        return Markup('<p class="missing">figure not produced: {}</p>').format(path.name)
    b = base64.b64encode(path.read_bytes()).decode()
    return Markup(
        '<figure><img alt="{alt}" src="data:image/png;base64,{b}"><figcaption><b>Figure {n}.</b> {alt}'
        "</figcaption></figure>"
    ).format(alt=caption, b=b, n=number())


def _environment(path: Resolver) -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    tables, figures = count(1), count(1)
    env.filters["fmt"] = fmt
    env.tests["cell"] = lambda x: isinstance(x, Cell)
    env.tests["numeric"] = _numeric
    env.globals["tableno"] = lambda: next(tables)
    env.globals["figure"] = lambda p, caption: _figure(Path(p), caption, lambda: next(figures))
    env.globals["img"] = lambda stage, name, caption: _figure(
        path(stage, name), caption, lambda: next(figures)
    )
    return env


def _audit_checks(ev: Mapping[str, Any], em: Mapping[str, Any], mm: Mapping[str, Any]) -> list[Table]:
    """Issue 20's audit tables (:mod:`lensaudit.report.independent`): the evaluate checks, the ensemble and
    the mining rounds."""
    from lensaudit.report.independent import audit_checks, extra_tables

    return (audit_checks(ev) if ev else []) + extra_tables(em, mm)


# -- issue 20: the selection function of each ensemble member (ensemble/metrics.json) ----------------------
def _selection_members(em: Mapping[str, Any]) -> list[Table]:
    """The per-model summary and the pairwise differences of the members' and ensembles' selection
    functions (``ensemble/selection_members.parquet``); none without the ensemble stage or injections."""
    sel = em.get("selection_members") or {}
    if not sel.get("available"):
        return []
    models = Table(
        "Selection function by member: the 3-D C(θE, PSF, depth) of the main-prior injections scored by each "
        "member and ensemble at its own operating threshold (ensemble/selection_members.parquet; realism "
        f"verdict of the injections: {sel.get('realism_verdict')}).",
        ["model", "threshold", "sufficient cells", "mean C over them"],
        [
            [k, v["threshold"], v["cells_sufficient"], v["mean_c_sufficient"]]
            for k, v in sel["models"].items()
        ],
    )
    pairs = Table(
        "How far the models' selection functions differ, over the cells sufficient in both: |ΔC| and the "
        "cells whose |ΔC| exceeds the combined 1σ of the two Beta posteriors.",
        ["pair", "cells", "median |ΔC|", "max |ΔC|", "cells beyond 1σ"],
        [[k, v["n_cells"], v["median_abs_dc"], v["max_abs_dc"], v["n_beyond_1sigma"]]
         for k, v in sel["pairs"].items()],
    )  # fmt: skip
    return [models, pairs]


def build(
    path: Resolver,
    manifests: Mapping[str, Manifest],
    config_yaml: str,
    title: str,
    skymap_png: Path,
    overrides: Mapping[str, str] | None = None,
) -> str:
    """The report page.

    ``path(stage, name)`` locates a registered artifact; ``manifests`` holds the completed upstream stages
    (a stage not in it is reported as missing); ``skymap_png`` is where the sky map of the sample is drawn
    (only when the sample exists).
    """
    mans = {s: manifests[s] for s in UPSTREAM if s in manifests}
    ev, inj = _json(path("evaluate", "metrics")), _json(path("inject", "realism"))
    closure, fails = _json(path("selection", "closure")), _json(path("failures", "summary"))
    banners = []
    if "evaluate" in mans and mans["evaluate"].extra.get("trustworthy") is False:
        banners.append("AUDIT NOT TRUSTWORTHY: red shortcut gates in the evaluate stage (see §5).")
    if "inject" in mans and mans["inject"].extra.get("verdict") != "GO":
        banners.append(
            "REALISM GATES FAILED (NO-GO): the selection function below was forced and must not be used "
            "for science (see §6)."
        )
    summary, counts = _summary(mans)
    seeds = sorted({m.seed for m in mans.values()})
    return (
        _environment(path)
        .get_template("report.html.j2")
        .render(
            title=title,
            version=__version__,
            sections=SECTIONS,
            banners=banners,
            config_yaml=config_yaml,
            model_sha=mans["train"].extra.get("frozen_sha256", "") if "train" in mans else "",
            seeds=seeds,
            summary=summary,
            counts=counts,
            gates=_gates(mans),
            overrides=_overrides(overrides or {}),
            data=_data(path, mans, skymap_png),
            training=_training(mans),
            audit=_audit(ev),
            audit_checks=_audit_checks(
                ev, _json(path("ensemble", "metrics")), _json(path("mine", "metrics"))
            ),
            realism=_realism(inj, mans),
            selection=_selection(path, mans),
            systematics=_systematics(_json(path("selection", "systematics"))),
            selection_members=_selection_members(_json(path("ensemble", "metrics"))),
            closure=_closure(closure),
            population_closure=_closure(_json(path("population", "closure")), "the second population"),
            closure_reason=closure.get("reason"),
            failures=_failures(fails, path("failures", "galleries")),
            limitations=_limitations(mans, closure),
            missing=[s for s in UPSTREAM if s not in mans],
        )
    )
