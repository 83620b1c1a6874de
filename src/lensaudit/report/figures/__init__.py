"""Every figure lensaudit draws. The only place the matplotlib backend is chosen (Agg: files, no display).

Submodules hold one area's figures each (``audit``, ``selection``, ``train``, ``report``); they all save
through :func:`save` and draw stamp galleries with :func:`gallery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lensaudit.report.rgb import grz_rgb  # noqa: E402

__all__ = ["gallery", "plt", "save"]


def save(fig: Any, path: str | Path, dpi: int = 90, tight: bool = True) -> None:
    """Lay out (unless the figure uses constrained layout), write and close a figure."""
    if tight and not fig.get_constrained_layout():
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def gallery(
    images: np.ndarray, titles: Sequence[str], path: str | Path, ncol: int = 6, title: str = ""
) -> None:
    """A grid of grz stamps (N, 3, S, S) in one consistent colour rendering, one title per stamp."""
    n = len(images)
    nrow = max(1, int(np.ceil(n / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.9 * ncol, 2.05 * nrow + 0.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im, t in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(grz_rgb(im), origin="lower")
        ax.set_title(t, fontsize=7)
    if not n:
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    save(fig, path, dpi=80)
