"""The selection function of each ensemble member and ensemble of a finished demo-full run, recomputed from
its artifacts with :mod:`lensaudit.selection.members` (what the ensemble stage writes since commit 788ee0c),
for a run whose ensemble stage predates it: the members' checkpoints, the meta-learner and each model's
operating threshold come from the run's ``ensemble/`` (metrics.json), the injections from ``inject/``.

    python benchmarks/members_selection.py runs/demo-full   → benchmarks/results/members_selection.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lensaudit.config import load_config
from lensaudit.run import RunContext
from lensaudit.selection import members
from lensaudit.stamps.store import StampStore
from lensaudit.train.ensemble import MetaLearner, member_files
from lensaudit.train.infer import load_frozen

OUT = Path(__file__).parent / "results" / "members_selection.json"


def main(run: Path) -> dict:
    t0 = time.perf_counter()
    torch.set_num_threads(2)
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    ens = json.loads(ctx.path("ensemble", "metrics").read_text())
    models = {}
    for arch in ens["members"]:
        if arch == cfg.train.arch:
            best, card = ctx.path("train", "best"), ctx.path("train", "model_card")
        else:
            best, card = member_files(ctx.path("ensemble", "members") / arch)
        models[arch] = load_frozen(best=best, card=card, device="cpu")
    m = ens.get("meta_learner")
    meta = MetaLearner(np.asarray(m["coef"], float), float(m["intercept"])) if m else None
    inj = pd.read_parquet(ctx.path("inject", "injections"))
    store = StampStore.open(ctx.path("inject", "stamps"))
    thr = {k: float(m["operating_threshold"]) for k, m in ens["full"].items()}
    args = (thr, cfg.inject, cfg.selection, cfg.evaluate.operating_point)
    t, summary = members.selection(models, meta, inj, store, *args)
    res = {
        "run": str(run),
        "thresholds": {k: thr[k] for k in summary["models"]},
        **summary,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    OUT.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(json.dumps({"models": res["models"], "pairs": res["pairs"]}, indent=1, default=float)[:4000])
    return res


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo-full"))
