"""The closure test repeated on fresh skies: is a within-1σ miss a property of the table or of one draw?

Issue 15's criteria are judged on one draw of lenses per population: the demo sky's held-out lenses and one
second sky. With 9–10 bins, the fraction of bins within 1σ moves by 0.1 per bin, and the predictive check
(``closure.json`` → ``predictive``) says a correct table meets 0.6 in only 67–82% of draws. This benchmark
renders ``N`` more skies of each population with new seeds fixed in advance (``population.seed_offset`` +
``SEED_STEP`` · k, k below; never chosen after seeing a result) and the run's own settings otherwise:

- ``demo-like``: the run's own lens sources (no magnitude offset, no size scale), a fresh draw of the
  population the finder was trained on, every lens independent of training;
- ``second``: the population stage's sources (``population.src_mag_offset``, ``src_size_scale``).

Each sky is rendered, cut out, quality-checked and scored exactly as the population stage does
(:mod:`lensaudit.selection.population`) and judged by the run's chosen table with its host-bootstrap σ
(:func:`lensaudit.selection.closure.closure_of`, the run's seed). Per draw: the three criteria and the
predictive pass rates; per population: how many draws meet each criterion.

Each draw's scored lenses are kept as ``RUN/closure_draws/POPULATION_K.parquet`` and read back on a rerun,
so other tables can be judged on the same draws without rendering them again.

    python benchmarks/closure_draws.py RUN [N [OUT [FIRST]]]  → OUT (default results/closure_draws.json)

draws k = FIRST … FIRST + N − 1 (FIRST 1 by default), so later draws never repeat earlier ones.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import closure_summary, run_args, write_result
from lensaudit.config import load_config
from lensaudit.run import RunContext
from lensaudit.selection.closure import CRITERIA, SIZE_COLUMN, closure_of
from lensaudit.selection.conditional import (
    MAG_OF_AXIS,
    Tables,
    closure_record,
    replicates,
    size_rung,
    with_brackets,
)
from lensaudit.selection.grid import grid_of
from lensaudit.selection.population import (
    catalogue_positions,
    catalogued_lenses,
    cut_out,
    score_lenses,
    sky_truth,
    variant_sky,
)
from lensaudit.sky.build import build_sky, lens_sources
from lensaudit.train.infer import load_frozen
from lensaudit.utils import write_parquet_atomic

OUT = Path(__file__).parent / "results" / "closure_draws.json"
#: seed offsets of the extra skies: population.seed_offset + SEED_STEP · k
SEED_STEP = 100


def criteria(c: dict) -> dict:
    """A closure record's three criteria, whether each is met, and the predictive pass rates."""
    f1, p, pull = c["fraction_within_1sigma"], c["chi2_pvalue"], c["total"]["pull"]
    return {
        "n_lenses": c["n_lenses"],
        **closure_summary(c),
        "meets": {
            "fraction_within_1sigma": bool(f1 >= CRITERIA["fraction_within_1sigma"]),
            "chi2_pvalue": bool(p >= CRITERIA["chi2_pvalue"]),
            "abs_total_pull": bool(abs(pull) <= CRITERIA["abs_total_pull"]),
        },
        "predictive_pass": c["predictive"]["p_pass"],
    }


def scored_draw(root: Path, cfg, pop, model, op: float) -> pd.DataFrame:
    """One fresh sky of population ``pop``, rendered, cut out and scored as the population stage does; the
    scored lenses are kept beside it (``ROOT.parquet``) and read back on a rerun, and the sky is removed."""
    keep = root.with_suffix(".parquet")
    sky_cfg = variant_sky(cfg.sky, pop)
    if keep.exists():
        return with_sizes(pd.read_parquet(keep), sky_cfg, cfg.run.seed)
    build_sky(root, sky_cfg, cfg.run.seed, sky_cfg.workers)
    lenses = catalogued_lenses(sky_truth(root), catalogue_positions(root))
    scored = score_lenses(lenses, cut_out(lenses, cfg, root), model, op)
    write_parquet_atomic(scored, keep)
    shutil.rmtree(root)
    return scored


def meeting(rows: list[dict]) -> dict:
    """Over draws' :func:`criteria` records: how many meet each criterion, how many meet all three, and the
    mean fraction of bins within 1σ."""
    return {
        "draws_meeting": {key: int(sum(r["meets"][key] for r in rows)) for key in CRITERIA},
        "draws_meeting_all": int(sum(all(r["meets"].values()) for r in rows)),
        "fraction_within_1sigma_mean": round(float(np.mean([r["fraction_within_1sigma"] for r in rows])), 3),
    }


def with_sizes(scored: pd.DataFrame, sky_cfg, seed: int) -> pd.DataFrame:
    """``scored`` with the true source half-light radius: a draw kept before the sky's truth table carried
    it gets it from the same sky drawn again without rendering (:func:`lensaudit.sky.build.lens_sources`),
    matched on brick, θE and source magnitude (every lens must match)."""
    if SIZE_COLUMN in scored:
        return scored
    key = ["brickname", "theta_e_arcsec", "src_mag_r"]
    src = lens_sources(sky_cfg, seed)
    rounded = lambda d: d.assign(**{c: d[c].round(6) for c in key[1:]})  # noqa: E731
    out = rounded(scored).merge(rounded(src), on=key, how="left", validate="one_to_one")
    if out[SIZE_COLUMN].isna().any():
        raise RuntimeError(
            f"{int(out[SIZE_COLUMN].isna().sum())} kept lenses match no lens of the redrawn sky"
        )
    return scored.assign(**{SIZE_COLUMN: out[SIZE_COLUMN].to_numpy()})


def pooled(rec: dict) -> dict:
    """The closure of all draws' lenses together, with the full ladder. With ten times the lenses of one sky,
    the per-bin pulls are dominated by the table's own σ (shared by all draws), so a bin that stays off here
    is a property of the table, not of a draw. Per rung: expected, observed, total pull; per θE and
    magnitude bin of the chosen table: n, expected, observed, pull."""
    bins = ("lo", "hi", "n", "expected", "observed", "pull")
    return {
        "n_lenses": rec["n_lenses"],
        "ladder": {
            k: {
                "expected": round(c["total"]["expected"], 1),
                "observed": c["total"]["observed"],
                "pull": round(c["total"]["pull"], 2),
            }
            for k, c in rec["rungs"].items()
        },  # fmt: skip
        **{
            key: [{b: (round(x[b], 2) if isinstance(x[b], float) else x[b]) for b in bins} for x in rec[key]]
            for key in ("theta_bins", "mag_bins")
        },
    }


def host_record(run: Path) -> dict:
    """The run's injection hosts as its inject stage recorded them (``realism.json``): the deflector window's
    columns and ranges, how many hosts, their effective number, the finder candidates left out. Read from
    the artifact, not the config: a run made before ``inject.deflector_bins`` existed would otherwise be
    labelled with today's default."""
    h = json.loads((run / "inject" / "realism.json").read_text())["hosts"]
    keys = ("match", "window", "hosts", "hosts_effective", "candidates_excluded")
    return {k: h[k] for k in keys if k in h}


def main(run: Path, n: int = 3, out: Path = OUT, first: int = 1) -> dict:
    t0 = time.perf_counter()
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    scfg = cfg.selection
    op = json.loads((run / "selection" / "closure.json").read_text())["threshold"]
    tables = Tables.read(
        *(ctx.path("selection", k) for k in ("table", "table_alt", "marginal", "injection_scores"))
    )
    tables = with_brackets(tables, grid_of(cfg.inject)[0], cfg.inject, scfg)  # the ladder's (c) and (d) too
    sf = tables.chosen(scfg)
    axis = scfg.condition_on
    size_range = cfg.inject.src_reff_arcsec_range
    all_reps = replicates(tables, scfg, cfg.run.seed)  # per rung, exactly as the stages draw them
    reps = all_reps[axis]
    model = load_frozen(best=ctx.path("train", "best"), card=ctx.path("train", "model_card"), device="cpu")
    work = run / "closure_draws"
    pops = {
        "demo-like": {"src_mag_offset": 0.0, "src_size_scale": 1.0},
        "second": {
            "src_mag_offset": cfg.population.src_mag_offset,
            "src_size_scale": cfg.population.src_size_scale,
        },
    }
    # the check: the run's own second sky, judged here, must give the population stage's closure.json
    own = closure_of(sf, pd.read_parquet(run / "population" / "lenses.parquet"), op, MAG_OF_AXIS[axis],
                     replicates=reps, seed=cfg.run.seed)  # fmt: skip
    stage = json.loads((run / "population" / "closure.json").read_text())
    check = {k: (round(own[k], 6), round(stage[k], 6)) for k in ("fraction_within_1sigma", "chi2_pvalue")}
    check["pull"] = (round(own["total"]["pull"], 6), round(stage["total"]["pull"], 6))
    res: dict = {
        "run": str(run),
        "draws": n,
        "first_draw": first,
        "seed_step": SEED_STEP,
        "hosts": host_record(run),
        "criteria": CRITERIA,
        "check_population_stage": check,
        "populations": {},
    }
    for name, src in pops.items():
        rows, drawn = [], []
        for k in range(first, first + n):
            pop = cfg.population.model_copy(
                update={"seed_offset": cfg.population.seed_offset + SEED_STEP * k, **src}
            )
            scored = scored_draw(work / f"{name}_{k}", cfg, pop, model, op)
            drawn.append(scored)
            c = closure_of(sf, scored, op, MAG_OF_AXIS[axis], replicates=reps, seed=cfg.run.seed)
            rows.append({"k": k, "seed_offset": pop.seed_offset, **criteria(c)})
            sized = size_rung(tables, scfg, scored, size_range, cfg.run.seed)
            if sized is not None:
                cs = closure_of(
                    sized[0], scored, op, MAG_OF_AXIS[axis], replicates=sized[1], seed=cfg.run.seed
                )
                rows[-1]["src_size"] = criteria(cs)
            print(f"{name} draw {k}: {rows[-1]['observed']} obs vs {rows[-1]['expected']} exp, pull "
                  f"{rows[-1]['pull']:+.2f}, χ² p {rows[-1]['chi2_pvalue']:.3f}, within 1σ "
                  f"{rows[-1]['fraction_within_1sigma']:.2f}", flush=True)  # fmt: skip
        sized_rows = [r["src_size"] for r in rows if "src_size" in r]
        res["populations"][name] = {
            "draws": rows,
            **meeting(rows),
            "pooled": pooled(
                closure_record(
                    tables,
                    scfg,
                    pd.concat(drawn),
                    op,
                    seed=cfg.run.seed,
                    reps=all_reps,
                    size_range=size_range,
                )
            ),
            **({"src_size": meeting(sized_rows)} if len(sized_rows) == len(rows) else {}),
        }
    return write_result(out, res, t0)


if __name__ == "__main__":
    run, args = run_args(sys.argv)
    res = main(run, *args, *[int(a) for a in sys.argv[4:5]])
    for name, p in res["populations"].items():
        print(f"{name}: {p['draws_meeting']} of {res['draws']} draws meet each criterion, "
              f"{p['draws_meeting_all']} meet all three")  # fmt: skip
    print(f"{res['wall_s']} s")
