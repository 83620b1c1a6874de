"""The training figures: loss, validation metrics and learning-rate schedule per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from lensaudit.report.figures import plt, save


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> None:
    """Three panels from the training history (one record per epoch, as in ``history.jsonl``): the
    weighted BCE of train and val, the validation metrics (AUC, recall at precision 0.9, precision at
    recall 0.9, ECE), and the learning rate (log scale)."""
    h = pd.DataFrame(history)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(h.epoch, h.train_loss, "o-", label="train")
    ax[0].plot(h.epoch, h.val_loss, "s-", label="val")
    ax[0].set(xlabel="epoch", ylabel="weighted BCE", title="loss")
    ax[0].legend()
    for k in ("val_auc", "recall_at_p90", "precision_at_r90", "ece"):
        ax[1].plot(h.epoch, h[k], "o-", label=k)
    ax[1].set(xlabel="epoch", title="validation (spatial split)", ylim=(0, 1.02))
    ax[1].legend(fontsize=8)
    ax[2].plot(h.epoch, h.lr, "o-")
    ax[2].set(xlabel="epoch", ylabel="learning rate", yscale="log", title="schedule")
    save(fig, path, dpi=90)
