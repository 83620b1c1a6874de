"""Figures drawn by the report itself (all else it embeds was drawn by the stage that owns the data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.report.figures import plt, save

#: the spatial splits in plotting order, with their colours
SPLITS = (("train", "C0"), ("val", "C1"), ("test", "C2"))


def skymap(sample: pd.DataFrame, path: str | Path, zoom_deg: float = 0.5) -> None:
    """Sky positions (RA, Dec in degrees) of the sample by spatial split.

    One panel per split over the whole footprint (drawn together, the last split would hide the others: the
    footprint is a few small patches at this scale), and a zoom onto the densest ``zoom_deg`` × ``zoom_deg``
    grid cell with all splits coloured, where the split's HEALPix cells show as disjoint groups.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.3))
    ra, dec = sample.ra.to_numpy(float), sample.dec.to_numpy(float)
    for ax, (split, c) in zip(axes[:3], SPLITS, strict=True):
        g = sample[sample.split == split]
        ax.scatter(ra, dec, s=2, c="0.85")
        ax.scatter(g.ra, g.dec, s=3, c=c)
        ax.set(xlabel="RA (deg)", ylabel="Dec (deg)", title=f"{split} ({len(g):,} of {len(sample):,})")
    ax = axes[3]
    if len(sample):
        grid = np.stack([np.floor(ra / zoom_deg), np.floor(dec / zoom_deg)], axis=1)
        _, which, n = np.unique(grid, axis=0, return_inverse=True, return_counts=True)
        densest = which.ravel() == n.argmax()
        for split, c in SPLITS:
            m = densest & (sample.split == split).to_numpy()
            ax.scatter(ra[m], dec[m], s=6, c=c, label=split)
        ax.legend(fontsize=7, markerscale=2)
        ax.margins(0.1)
    ax.set(xlabel="RA (deg)", ylabel="Dec (deg)", title="zoom: the densest patch")
    save(fig, path, dpi=80)
