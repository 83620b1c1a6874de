"""mine: the hard-negative mining loop (issue 20). Round 0 is the train stage's finder; in round k the
round-(k−1) finder scores the TRAIN split only, its ``mine.top_k`` highest-scoring negatives (and the
user's confirmed non-lenses, ``mine.confirmed_csv``) join N2 as ``mined`` with weight ``mine.weight``, the
negatives the user marked as lenses leave the training set, and round k retrains (same config and seeds).
Every round's finder is audited on val/test like the single finder; ``metrics.json`` holds FPR per N2
category and Tier-A recall per round with intervals. Gates: :mod:`lensaudit.validation.gates.mine`. Runs in
the pipeline when ``mine.rounds`` > 0 (demo-full)."""

from __future__ import annotations

import pandas as pd

from lensaudit import validation
from lensaudit.audit.evaluation import evaluate
from lensaudit.audit.scoring import score_table
from lensaudit.catalog.sampling import mining_round, read_confirmations
from lensaudit.config import MineConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.stamps.store import StampStore
from lensaudit.train.ensemble import member_files, train_member
from lensaudit.train.infer import FrozenModel, load_frozen
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "mine"
SECTIONS = ("mine", "train", "evaluate")
READS = ("train.best", "train.model_card", "cutouts.stamps", "cutouts.index", "sample.sample")
WRITES = ("rounds", "mined", "metrics")


def run(cfg: MineConfig, ctx: StageContext) -> Manifest:
    """Rounds 1…``mine.rounds``: mine with the previous round's finder, retrain, audit each round."""
    store, index = StampStore.open(ctx.artifact("cutouts", "stamps")), ctx.artifact("cutouts", "index")
    sample = pd.read_parquet(ctx.artifact("sample", "sample"))
    model = load_frozen(best=ctx.artifact("train", "best"), card=ctx.artifact("train", "model_card"))
    conf = read_confirmations(ctx.config.resolve_path(cfg.confirmed_csv)) if cfg.confirmed_csv else None
    rounds, reports = [_audit(ctx, sample, index, store, model, 0)], []
    for k in range(1, cfg.rounds + 1):
        train = score_table(sample, index, store, model, ("train",))
        sample, rep = mining_round(sample, train, cfg.top_k, cfg.weight, conf)
        reports.append({"round": k, **rep})
        out = ctx.output("rounds") / f"round{k}"
        with ctx.progress(ctx.config.train.epochs, f"mine: round {k} retraining") as bar:
            train_member(store, sample, index, ctx.config.train, ctx.seed, out, lambda r: bar.advance(1))
        best, card = member_files(out)
        model = load_frozen(best=best, card=card)
        rounds.append(_audit(ctx, sample, index, store, model, k))
    write_parquet_atomic(sample[sample.n2_category == "mined"], ctx.output("mined"))
    atomic_write_json(ctx.output("metrics"), {"mining": reports, "rounds": rounds})
    counts = {"rounds": cfg.rounds, "mined": int((sample.n2_category == "mined").sum())}
    return Manifest(counts=counts, gates=validation.evaluate(NAME, validation.stage_inputs(ctx)))


def _audit(
    ctx: StageContext, sample: pd.DataFrame, index, store: StampStore, model: FrozenModel, k: int
) -> dict:
    """Round ``k``'s finder audited on val/test (the same evaluate as the single finder): its test AUC, Tier-A
    recall and FPR per N2 category at the operating point, with intervals."""
    df = score_table(sample, index, store, model, ("val", "test"))
    m = evaluate(df, ctx.config.evaluate, ctx.seed, model.sha256).metrics
    op = ctx.config.evaluate.operating_point
    return {
        "round": k,
        "model_sha256": model.sha256,
        "auc_test": m["auc_test"],
        "operating_threshold": m["operating_threshold"],
        "recall_tier_A": m["recall_tier_A"][op],
        "fpr_by_category": m["fpr_by_category"],
    }
