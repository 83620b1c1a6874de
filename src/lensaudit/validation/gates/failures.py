"""Gates of the failures stage: the taxonomy rules scored against the synthetic sky's truth (recomputed from
``failures/taxonomy.parquet`` and ``sky/truth.parquet``), and the fraction of the selection function's
sufficient cells where the completeness collapses (recomputed from ``selection/selection_marginal.parquet``,
the 3-D table under the injection prior).

On real data there is no truth: the taxonomy gates fail as insufficient (non-blocking) — the rules are then
unscored, and the report says so.
"""

from __future__ import annotations

from typing import Any

from lensaudit.audit.failure_modes import collapse_cells, rule_accuracies
from lensaudit.gates import Gate
from lensaudit.validation.registry import Threshold, register

#: fewer scored failures than this cannot score the rules (ours)
N_MIN = 5
#: accuracy levels of the rules against truth (ours)
ACC_WARN, ACC_FAIL = 0.6, 0.3
#: collapse-cell fraction levels (ours)
COLLAPSE_WARN, COLLAPSE_FAIL = 0.25, 0.5
TRUTH_COLUMNS = ("galaxy_id", "objid", "kind", "theta_e_arcsec", "arc_snr")

_ACCURACY_RULE = Threshold(
    f"fail when fewer than {N_MIN} failures can be scored (no truth: real data); "
    f"else warn < {ACC_WARN}, fail < {ACC_FAIL}",
    "ours",
    "the design names no accuracy for the rules; below 0.3 they mislabel most failures; a handful of scored "
    "objects cannot show that the rules work, so an unscored taxonomy does not pass",
)


def _accuracies(inp: Any) -> tuple[dict, dict, bool]:
    """(false-positive accuracy, missed-lens accuracy, whether truth was used)."""
    use_truth = inp.config.data.source == "synthetic" and inp.exists("sky", "truth")
    truth = inp.table("sky", "truth", TRUTH_COLUMNS) if use_truth else None
    acc, missed = rule_accuracies(inp.table("failures", "taxonomy"), truth)
    return acc, missed, use_truth


def _accuracy_gate(name: str, acc: dict, what: str, use_truth: bool) -> Gate:
    n = int(acc.get("n", 0))
    value = acc.get("accuracy", float("nan"))
    if n < N_MIN:
        why = "" if use_truth else " (no synthetic-sky truth: real data)"
        return Gate.check(
            name, False, value=value, message=f"insufficient: {n} {what} to score (< {N_MIN}){why}"
        )
    return Gate(
        name=name, value=value, warn=ACC_WARN, fail=ACC_FAIL, higher_is_better=True, message=f"{n} {what}"
    )


@register(
    "taxonomy_accuracy_vs_truth",
    "failures",
    "agreement of the false-positive modes assigned by the rules with the synthetic sky's confuser truth",
    reads=("failures.taxonomy", "sky.truth"),
    threshold=_ACCURACY_RULE,
    blocking=False,
)
def taxonomy_accuracy_vs_truth(inp: Any) -> Gate:
    acc, _, use_truth = _accuracies(inp)
    return _accuracy_gate("taxonomy_accuracy_vs_truth", acc, "false positives with confuser truth", use_truth)


@register(
    "missed_taxonomy_accuracy_vs_truth",
    "failures",
    "agreement of the missed-lens modes assigned by the rules with the modes the truth's θE and arc SNR "
    "imply (masked lenses left out)",
    reads=("failures.taxonomy", "sky.truth"),
    threshold=_ACCURACY_RULE,
    blocking=False,
)
def missed_taxonomy_accuracy_vs_truth(inp: Any) -> Gate:
    _, acc, use_truth = _accuracies(inp)
    return _accuracy_gate(
        "missed_taxonomy_accuracy_vs_truth",
        acc,
        "missed Tier-A lenses (not masked) with truth θE / arc SNR",
        use_truth,
    )


@register(
    "collapse_cells",
    "failures",
    "fraction of the selection function's sufficient cells whose completeness is below "
    "failures.collapse_threshold",
    reads=("selection.marginal",),
    threshold=Threshold(
        f"warn > {COLLAPSE_WARN}, fail > {COLLAPSE_FAIL} (or no sufficient cell)",
        "ours",
        "a few collapse cells at small θE and poor seeing are expected; when they are a quarter of the grid "
        "the finder misses much of the lens population, and when they are half it is not fit for a census",
    ),
    blocking=False,
)
def collapse_cells_gate(inp: Any) -> Gate:
    sel = inp.table("selection", "marginal", ("insufficient", "c_mean"))
    thr = inp.config.failures.collapse_threshold
    n = int((~sel.insufficient).sum())
    k = len(collapse_cells(sel, thr))
    return Gate(
        name="collapse_cells",
        value=k / n if n else None,
        warn=COLLAPSE_WARN,
        fail=COLLAPSE_FAIL,
        message=f"{k}/{n} sufficient cells with C < {thr}" if n else "no sufficient cell in the grid",
    )
