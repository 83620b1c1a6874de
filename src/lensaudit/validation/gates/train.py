"""Gates of the train stage: the frozen checkpoint (``best.pt`` with its model card) re-scored on the
validation split's quality-ok stamps, and a validation split that holds both classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from lensaudit.gates import Gate
from lensaudit.train.card import val_logits
from lensaudit.train.data import load_table
from lensaudit.validation.registry import Threshold, register

STAGE = "train"


@register(
    "best_val_auc",
    STAGE,
    "ROC AUC of the frozen checkpoint on the validation split's quality-ok stamps, re-scored from the store",
    reads=("train.best", "train.model_card", "sample.sample", "cutouts.index", "cutouts.stamps"),
    threshold=Threshold(
        "warn < 0.75, fail < 0.55",
        "ours",
        "a sanity floor for early stopping; the design's AUC ≥ 0.90 is judged on the test split (evaluate)",
    ),
)
def best_val_auc(inp: Any) -> Gate:
    from sklearn.metrics import roc_auc_score

    y, logits = val_logits(
        inp.model(),
        inp.store("cutouts", "stamps"),
        inp.table("sample", "sample"),
        inp.table("cutouts", "index"),
        inp.config.train.threads or 1,
    )
    auc = float(roc_auc_score(y, logits)) if len(np.unique(y)) == 2 else float("nan")
    card = inp.json(STAGE, "model_card")
    return Gate(
        name="best_val_auc",
        value=auc,
        warn=0.75,
        fail=0.55,
        higher_is_better=True,
        detail={"n_val": int(len(y)), "card_best_val_auc": card.get("best_val_auc")},
        message=f"epoch {card.get('best_epoch')}; {card.get('stopped')}",
    )


@register(
    "val_has_both_classes",
    STAGE,
    "positives among the validation split's quality-ok stamps (the split must hold both classes)",
    reads=("sample.sample", "cutouts.index"),
    threshold=Threshold("fail without both classes", "ours", "early stopping needs a validation AUC"),
)
def val_has_both_classes(inp: Any) -> Gate:
    t = load_table(inp.table("sample", "sample"), inp.table("cutouts", "index"))
    y = t.label[t.split == "val"]
    return Gate.check("val_has_both_classes", len(np.unique(y)) == 2, value=int(y.sum()))
