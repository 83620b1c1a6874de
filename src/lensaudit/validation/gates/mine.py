"""Gates of the mine stage (issue 20), recomputed from its artifacts: every mined negative is a train-split
negative of the sample (``mine/mined.parquet`` against ``sample/sample.parquet``, never a val or test row),
the loop mined something, and the Tier-A recall after the last retraining round has not dropped far below
round 0's (``mine/metrics.json``)."""

from __future__ import annotations

from typing import Any

from lensaudit.gates import Gate
from lensaudit.validation.registry import Threshold, register

STAGE = "mine"
#: Tier-A recall drop from round 0 to the last round (ours)
RECALL_DROP_WARN, RECALL_DROP_FAIL = 0.05, 0.15


@register(
    "mined_from_train_only",
    STAGE,
    "mined negatives that are not train-split negatives of sample.parquet (val, test, positives or unknown)",
    reads=("mine.mined", "sample.sample"),
    threshold=Threshold(
        "fail when any",
        "design",
        "the round-k model scores train-split negatives only: a mined val or test galaxy would leak the "
        "evaluation sets into training",
    ),
)
def mined_from_train_only(inp: Any) -> Gate:
    mined = inp.table(STAGE, "mined", ("galaxy_id",))
    s = inp.table("sample", "sample", ("galaxy_id", "split", "label")).set_index("galaxy_id")
    row = s.reindex(mined.galaxy_id)
    bad = row.split.ne("train") | row.label.ne(0)
    n = int(bad.sum())
    where = row[bad.to_numpy()].split.fillna("absent").value_counts().to_dict()
    return Gate.check(
        "mined_from_train_only",
        n == 0,
        value=n,
        message=f"{len(mined)} mined; outside train negatives: {where}",
    )


@register(
    "mined_count",
    STAGE,
    "negatives mined over all rounds (mine/mined.parquet)",
    reads=("mine.mined", "mine.metrics"),
    threshold=Threshold(
        "fail when 0",
        "ours",
        "a loop that mined nothing retrained on the same data: its before/after comparison means nothing",
    ),
)
def mined_count(inp: Any) -> Gate:
    n = len(inp.table(STAGE, "mined", ("galaxy_id",)))
    rounds = len(inp.json(STAGE, "metrics")["mining"])
    return Gate.check("mined_count", n > 0, value=n, message=f"{rounds} round(s)")


@register(
    "tier_a_recall_drop",
    STAGE,
    "Tier-A recall at the operating point of round 0 minus that of the last round (mine/metrics.json)",
    reads=("mine.metrics",),
    threshold=Threshold(
        f"warn > {RECALL_DROP_WARN}, fail > {RECALL_DROP_FAIL}",
        "ours",
        "hard negatives should cut false positives at a small cost in recall (KiDS: ~2% in TPR for ~11× "
        "fewer false positives); Tier-A counts are small, so it does not block",
    ),
    blocking=False,
)
def tier_a_recall_drop(inp: Any) -> Gate:
    rounds = inp.json(STAGE, "metrics")["rounds"]
    first, last = rounds[0]["recall_tier_A"], rounds[-1]["recall_tier_A"]
    drop = first["rate"] - last["rate"]
    return Gate(
        name="tier_a_recall_drop",
        value=drop,
        warn=RECALL_DROP_WARN,
        fail=RECALL_DROP_FAIL,
        message=f"round 0: {first['k']}/{first['n']}, round {rounds[-1]['round']}: {last['k']}/{last['n']}",
    )
