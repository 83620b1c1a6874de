"""One consistent colour rendering of grz stamps for every gallery: Lupton et al. (2004) asinh RGB with fixed
stretch and Q, z→R, r→G, g→B, so that colours mean the same across the report."""
from __future__ import annotations

import numpy as np

STRETCH, Q = 0.05, 8.0
SCALES = (1.0, 1.1, 1.6)  # z, r, g multipliers (DR10-viewer-like balance)


def grz_rgb(img: np.ndarray) -> np.ndarray:
    """(3, S, S) g,r,z nanomaggies → (S, S, 3) uint8."""
    from astropy.visualization import make_lupton_rgb

    x = np.nan_to_num(np.asarray(img, float))
    g, r, z = x[0], x[1], x[2]
    return make_lupton_rgb(z * SCALES[0], r * SCALES[1], g * SCALES[2], stretch=STRETCH, Q=Q)


def gallery(images: np.ndarray, titles: list[str], path, ncol: int = 6, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    nrow = max(1, int(np.ceil(n / ncol)))
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.9 * ncol, 2.05 * nrow + 0.3), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im, t in zip(axes.ravel(), images, titles):
        ax.imshow(grz_rgb(im), origin="lower")
        ax.set_title(t, fontsize=7)
    if not n:
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
