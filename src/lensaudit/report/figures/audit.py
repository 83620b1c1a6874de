"""The audit's figures: ROC, reliability, score distributions by class and N2 category, recall by stratum
(evaluate), and the stamp galleries of evaluate and failures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.report.figures import gallery, plt, save


def roc(test: pd.DataFrame, auc: dict[str, Any], path: str | Path) -> None:
    """ROC curve of the test split (``label``, ``score``), with its AUC and 68% CI (``auc``: value, ci68) in
    the legend."""
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    if test.label.nunique() == 2:
        fpr, tpr, _ = roc_curve(test.label, test.score)
        lo, hi = auc["ci68"]
        ax.plot(fpr, tpr, lw=2, label=f"test AUC {auc['value']:.3f} [{lo:.3f}, {hi:.3f}]")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC (spatial test split)")
    ax.legend(fontsize=8, loc="lower right")
    save(fig, path)


def reliability(bins: Sequence[dict[str, float]], ece: float, path: str | Path) -> None:
    """Reliability diagram of the test split: mean score vs fraction of lenses per equal-mass bin."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    rel = pd.DataFrame(bins)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    if len(rel):
        ax.plot(rel.p_mean, rel.y_mean, "o-", label=f"ECE {ece:.3f} (equal-mass bins)")
    ax.set(xlabel="mean predicted score", ylabel="fraction of lenses", title="reliability (test)")
    ax.legend(fontsize=8)
    save(fig, path)


def scores_by_category(test: pd.DataFrame, op: float, path: str | Path) -> None:
    """Box plots of the test scores of lenses by tier and of negatives by N2 category (N1 for none), with the
    operating threshold."""
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = test.assign(
        g=np.where(test.label == 1, "lens (" + test.tier + ")", test.n2_category.replace("", "N1"))
    )
    names = sorted(groups.g.unique())
    ax.boxplot([groups[groups.g == n].score for n in names], tick_labels=names, orientation="horizontal")
    ax.axvline(op, color="r", ls="--", label="operating threshold")
    ax.set(xlabel="score", title="score distributions by class and N2 category (test)")
    ax.legend(fontsize=8)
    save(fig, path)


def stratified(strata: pd.DataFrame, path: str | Path) -> None:
    """Recall with Jeffreys 68% intervals per stratum, one panel per conditions variable (insufficient bins
    grey)."""
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (by, g) in zip(axes, strata.groupby("by", sort=False), strict=False):
        x = np.arange(len(g))
        ok = ~g.recall_insufficient.to_numpy()
        r, lo, hi = g.recall.to_numpy()[ok], g.recall_lo.to_numpy()[ok], g.recall_hi.to_numpy()[ok]
        ax.errorbar(
            x[ok],
            r,
            yerr=[np.clip(r - lo, 0, None), np.clip(hi - r, 0, None)],
            fmt="o",
            label="recall (Jeffreys 68%)",
        )
        ax.errorbar(x[~ok], g.recall[~ok], fmt="x", color="grey", label="insufficient")
        ax.set_xticks(x, g.bin, rotation=35, fontsize=7)
        ax.set(title=f"recall by {by}", ylim=(-0.05, 1.05))
    axes[0].legend(fontsize=7)
    save(fig, path)


def score_gallery(store: Any, sel: pd.DataFrame, path: str | Path, title: str) -> None:
    """A gallery of the stamps of ``sel`` (rows of a scored table) read from ``store`` in row order, captioned
    with galaxy id, score and N2 category."""
    imgs = store.read(np.sort(sel.row.to_numpy()))[0] if len(sel) else np.zeros((0, 3, 101, 101))
    sel = sel.sort_values("row")
    titles = [f"{g}\n{s:.2f} {c}" for g, s, c in zip(sel.galaxy_id, sel.score, sel.n2_category, strict=True)]
    gallery(imgs, titles, path, title=title)


def failure_galleries(
    store: Any, picks: Sequence[tuple[str, pd.DataFrame, str]], directory: str | Path
) -> list[str]:
    """One gallery per failure mode in ``directory`` (created, even when empty): ``picks`` are (file name,
    stamps, title); the stamps are read from ``store`` in row order and captioned with galaxy id and score.
    Returns the file names written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for name, g, title in picks:
        g = g.sort_values("row")
        titles = [f"{x}\n{s:.2f}" for x, s in zip(g.galaxy_id, g.score, strict=True)]
        gallery(store.read(g.row.to_numpy())[0], titles, d / name, title=title)
    return [name for name, _, _ in picks]
