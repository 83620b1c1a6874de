"""Pass/fail cases of the mine gates: a sample and the mine stage's ``mined.parquet`` / ``metrics.json`` as
the real mining round writes them (:func:`lensaudit.catalog.sampling.mining_round` on seeded scores; recall
records from :func:`lensaudit.audit.metrics.rate`). The failing cases mine a val galaxy (bypassing the round,
as a leaking implementation would), mine nothing (top_k = 0), and lose most Tier-A lenses after retraining."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.audit.metrics import rate
from lensaudit.catalog.sampling import mining_round
from lensaudit.validation import Inputs

N = 40


def make(root: Path, leak: bool = False, top_k: int = 4, recall_after: int = 9) -> Inputs:
    run = Run(root)
    rng = np.random.default_rng(2)
    i = np.arange(N)
    sample = pd.DataFrame(
        {
            "galaxy_id": [f"g{k:03d}" for k in i],
            "label": (i % 5 == 0).astype(int),
            "split": np.array(["train", "train", "val", "test"])[i % 4],
            "n2_category": "",
            "pool": "N1",
            "weight": 1.0,
        }
    )
    run.table("sample", "sample", sample)
    out, rep = mining_round(sample, sample.assign(score=rng.random(N)), top_k, 3.0)
    mined = out[out.n2_category == "mined"]
    if leak:
        mined = pd.concat([mined, sample[(sample.split == "val") & (sample.label == 0)].head(1)])
    run.table("mine", "mined", mined)
    before, after = rate(np.arange(10) < 9), rate(np.arange(10) < recall_after)
    rounds = [{"round": 0, "recall_tier_A": before}, {"round": 1, "recall_tier_A": after}]
    run.json("mine", "metrics", {"mining": [{"round": 1, **rep}], "rounds": rounds})
    return run.inputs()


CASES = {
    "mined_from_train_only": (lambda p: make(p), lambda p: make(p, leak=True)),
    "mined_count": (lambda p: make(p), lambda p: make(p, top_k=0)),
    "tier_a_recall_drop": (lambda p: make(p), lambda p: make(p, recall_after=5)),
}
