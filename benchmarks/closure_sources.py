"""Two source-side questions about the second population's θE trend, measured on a finished run.

The closure's remaining miss (docs/selection.md) is the second population's run of pulls with θE: −1.1 at
θE < 1.25″ … +2.4 at 2.75–3.25″. Earlier benchmarks put most of it in the deflectors (``closure_twins.py``,
``closure_oracle.py``) and part in the source light profile (``closure_diagnosis.py``: at equal magnitude and
half-light radius a multi-clump source is found less often than our Sérsic one). This one asks two more
questions, each of which a referee would raise:

- ``arc_noise``: our injections add each arc's own Poisson noise (``lensing.render.arc_noise_variance``); the
  synthetic sky renders its lenses without it. Does that difference move the finder? The second sky's own
  arcs (``closure_twins.twins``: its regenerated lens objects, rendered with the sky's lenstronomy renderer)
  are scored in the same ``K`` deflector-like hosts per lens with and without the added noise: the largest
  change of score, and the detected fraction per θE bin either way.
- ``source_mixture``: the table built from the main (Sérsic) injections and the morphology bracket's
  (multi-clump) injections together, a mixture of two source models in one 4-D table (m_src bins as the
  main table's), judged on both skies exactly as the closure judges the table (host bootstrap of
  ``selection.closure_host_bootstrap`` resamples, the run's seed), beside the main table and the bracket
  alone. docs/selection.md named the mixture as the fix not yet tried.

    python benchmarks/closure_sources.py RUN [K [OUT]]  → OUT (default results/closure_sources.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import closure_summary, run_args, write_result
from closure_twins import matched, twins
from lensaudit.config import load_config
from lensaudit.run import RunContext
from lensaudit.selection.closure import closure_of, host_replicates, sky_lenses
from lensaudit.selection.completeness import completeness_table4
from lensaudit.selection.conditional import mag_edges
from lensaudit.selection.grid import grid_of
from lensaudit.selection.table import SelectionFunction

OUT = Path(__file__).parent / "results" / "closure_sources.json"
#: the tables compared in ``source_mixture``: the injection variants each is built from
TABLES = {"main (Sérsic)": ("main",), "morphology bracket (multi-clump)": ("morphology",),
          "mixture (both)": ("main", "morphology")}  # fmt: skip


def summary(c: dict) -> dict:
    """The closure criteria and per-bin pulls of a :func:`closure_of` record."""
    return {
        **closure_summary(c),
        "mag_pulls": [round(b["pull"], 2) for b in c["mag_bins"]],
        "predictive_pass_all": c["predictive"]["p_pass"]["all"],
    }


def source_mixture(run: Path) -> dict:
    """Per table of :data:`TABLES`, its closure on the demo sky and on the second population."""
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    inj = pd.read_parquet(ctx.path("selection", "injection_scores")).assign(src_mag=lambda d: d.src_mag_r)
    op = json.loads((run / "selection" / "closure.json").read_text())["threshold"]
    skies = {
        "demo_sky": sky_lenses(ctx.path("sky", "truth"), ctx.path("evaluate", "scores")),
        "second_population": pd.read_parquet(run / "population" / "lenses.parquet"),
    }
    grid, _ = grid_of(cfg.inject)
    main = inj[inj.variant == "main"]
    out = {}
    for name, variants in TABLES.items():
        sub = inj[inj.variant.isin(variants)]
        if sub.empty:
            continue
        per = float(sub.groupby("cell").size().median())
        # the bracket alone gets wider bins, as the closure ladder's rung (d); the mixture the main table's
        edges = mag_edges(
            cfg.inject, cfg.selection, "src_mag", main, per if variants == ("morphology",) else None
        )
        t = completeness_table4(grid, sub, "src_mag", edges, cfg.selection, cfg.selection.n_min_mag_bin)
        reps = host_replicates(t, sub, "src_mag", cfg.selection.closure_host_bootstrap, cfg.run.seed)
        sf = SelectionFunction(t, {"AXIS4": "src_mag"})
        out[name] = {
            "injections_per_cell": per,
            **{
                sky: summary(closure_of(sf, lenses, op, "src_mag_r", replicates=reps, seed=cfg.run.seed))
                for sky, lenses in skies.items()
            },
        }
    return out


def arc_noise(run: Path, k: int) -> dict:
    """The second sky's own arcs in ``k`` of our hosts each, scored with and without the added arc noise."""
    op = json.loads((run / "selection" / "closure.json").read_text())["threshold"]
    lenses = matched(run)
    with_noise, _ = twins(run, lenses, k)
    without, _ = twins(run, lenses, k, arc_noise=False)
    te = lenses.theta_e_arcsec.to_numpy(float)
    true = (lenses.score >= op).to_numpy()
    edges = np.arange(0.25, 3.26, 0.5)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        s = (te >= lo) & (te < hi)
        rows.append(
            {
                "theta_e": [float(lo), float(hi)],
                "n": int(s.sum()),
                "true": round(float(true[s].mean()), 3),
                "our_hosts_with_arc_noise": round(float((with_noise[s] >= op).mean()), 3),
                "our_hosts_without": round(float((without[s] >= op).mean()), 3),
            }
        )
    d = np.abs(with_noise - without)
    return {
        "hosts_per_lens": k,
        "n_lenses": int(len(lenses)),
        "max_abs_score_change": round(float(d.max()), 4),
        "mean_abs_score_change": round(float(d.mean()), 5),
        "detections_changed": int(((with_noise >= op) != (without >= op)).sum()),
        "scores": int(d.size),
        "by_theta_e": rows,
    }


def main(run: Path, k: int = 8, out: Path = OUT) -> dict:
    t0 = time.perf_counter()
    res = {"run": str(run), "source_mixture": source_mixture(run), "arc_noise": arc_noise(run, k)}
    return write_result(out, res, t0)


if __name__ == "__main__":
    run, args = run_args(sys.argv)
    res = main(run, *args)
    print(f"{'table':34} {'sky':18} {'pull':>6} {'χ² p':>6} {'in 1σ':>6}  θE pulls")
    for name, r in res["source_mixture"].items():
        for sky in ("demo_sky", "second_population"):
            c = r[sky]
            print(f"{name:34} {sky:18} {c['pull']:+6.2f} {c['chi2_pvalue']:6.3f} "
                  f"{c['fraction_within_1sigma']:6.2f}  {c['theta_pulls']}")  # fmt: skip
    a = res["arc_noise"]
    print(f"arc noise: max |Δscore| {a['max_abs_score_change']}, {a['detections_changed']} of {a['scores']} "
          "detections change")  # fmt: skip
    print(f"{res['wall_s']} s")
