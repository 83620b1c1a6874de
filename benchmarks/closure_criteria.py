"""How often do fresh skies meet each closure criterion, against how often a correct table would?

Each closure criterion of issue 15 (within 1σ ≥ 0.6, χ² p ≥ 0.05, |total pull| ≤ 2) is a random variable:
a correct table still misses it now and then. ``closure_draws.py`` judges the chosen table (rung b) on fresh
skies and records, per draw, whether each criterion is met (``meets``) and how often a correct table would
meet it with that draw's lenses and bins (``predictive_pass``; ``selection.closure.predictive``).
This benchmark sums them over the draws of each population: the observed number of draws that miss each
criterion, the number a correct table would miss (Σ (1 − p_pass)), and where the observed count lies in the
null's distribution of misses (a Poisson-binomial: the draws are independent skies). It reads committed
results only, so it reruns in a second:

    python benchmarks/closure_criteria.py [OUT] [DRAWS.json ...] [--sky CLOSURE.json ...]

Defaults: the per-draw records of the chosen table on the 30 fresh skies per population judged with the
code of commit 4cda44e (``closure_draws_sizes_explore.json``, draws k = 1…20, and
``closure_draws_sizes_confirm.json``, k = 22…31; their ``src_size`` sub-records are rung (e) and are not
read). ``--sky`` adds a run's own ``closure.json`` (the demo sky or the second population) as a row of its
own, judged the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, write_result
from closure_draws import criteria
from lensaudit.selection.closure import CRITERIA

DEFAULT_DRAWS = ("closure_draws_sizes_explore.json", "closure_draws_sizes_confirm.json")


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    """P(exactly j successes), j = 0 … len(p), of independent Bernoulli trials with probabilities ``p``.

    >>> np.round(poisson_binomial(np.array([0.5, 0.5])), 3).tolist()
    [0.25, 0.5, 0.25]
    """
    dist = np.zeros(len(p) + 1)
    dist[0] = 1.0
    for q in p:
        dist[1:] = dist[1:] * (1 - q) + dist[:-1] * q
        dist[0] *= 1 - q
    return dist


def tally(records: list[dict]) -> dict:
    """Per criterion (and all three): draws, observed misses, a correct table's expected misses and the null's
    probability of at most / at least as many misses as observed. ``records``: ``meets`` and
    ``predictive_pass`` of each draw."""
    out = {}
    for key in [*CRITERIA, "all"]:
        rows = [r for r in records if r["predictive_pass"].get(key) is not None]
        if key == "all":
            missed = np.array([not all(r["meets"].values()) for r in rows])
        else:
            rows = [r for r in rows if r["meets"].get(key) is not None]
            missed = np.array([not r["meets"][key] for r in rows])
        q = np.array([1 - r["predictive_pass"][key] for r in rows])  # each draw's null miss probability
        dist = poisson_binomial(q)
        n = int(missed.sum())
        out[key] = {
            "draws": len(rows),
            "missed": n,
            "expected_missed": round(float(q.sum()), 2),
            "null_p_at_most": round(float(dist[: n + 1].sum()), 4),
            "null_p_at_least": round(float(dist[n:].sum()), 4),
        }
    return out


def main(out: Path, draw_files: list[Path], skies: list[Path]) -> dict:
    t0 = time.perf_counter()
    pops: dict[str, list[dict]] = {}
    sources = []
    for f in draw_files:
        d = json.loads(f.read_text())
        sources.append({"file": f.name, "run": d["run"], "first_draw": d["first_draw"], "draws": d["draws"]})
        for name, p in d["populations"].items():
            pops.setdefault(name, []).extend(p["draws"])
    res = {
        "criteria": dict(CRITERIA),
        "sources": sources,
        "populations": {name: tally(rows) for name, rows in pops.items()},
        "pooled": tally([r for rows in pops.values() for r in rows]),
        "skies": {},
    }
    for s in skies:  # the chosen rung of a run's closure.json, the same record as a draw's
        res["skies"][str(s)] = criteria(json.loads(s.read_text()))
    return write_result(out, res, t0)


def table(res: dict) -> str:
    """The result as a Markdown table: one row per population and criterion."""
    lines = [
        "| draws of | criterion | draws | missed | a correct table would miss | P(≤ missed) | P(≥ missed) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in [*res["populations"].items(), ("both", res["pooled"])]:
        for key, v in t.items():
            lines.append(
                f"| {name} | {key} | {v['draws']} | {v['missed']} | {v['expected_missed']:.2f} | "
                f"{v['null_p_at_most']:.3f} | {v['null_p_at_least']:.3f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    skies = [Path(a) for a in args[args.index("--sky") + 1 :]] if "--sky" in args else []
    args = args[: args.index("--sky")] if "--sky" in args else args
    out = Path(args[0]) if args else RESULTS / "closure_criteria.json"
    files = [Path(a) for a in args[1:]] or [RESULTS / f for f in DEFAULT_DRAWS]
    r = main(out, files, skies)
    print(table(r))
    for s, v in r["skies"].items():
        print(s, v)
    print(f"{r['wall_s']} s")
