"""Selection-function figures: the realism panel (inject), completeness heatmaps and marginals, the prior /
morphology sensitivity curves and the closure test (selection).

``stamp`` arguments prefix titles (``"REALISM GATES FAILED — "`` when selection was forced on a NO-GO
verdict).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.report.figures import gallery, plt, save

REALISM_PANEL_TITLE = "real positives (top) vs matched injections (bottom)"


def realism_panel(panel: np.ndarray, titles: Sequence[str], path: str | Path, n_real: int) -> None:
    """Real positives (top row, ``n_real`` stamps) above as many matched injections (bottom row)."""
    gallery(panel, titles, path, ncol=max(n_real, 1), title=REALISM_PANEL_TITLE)


def heatmaps(
    t: pd.DataFrame, te: np.ndarray, ps: np.ndarray, dp: np.ndarray, path: str | Path, stamp: str = ""
) -> None:
    """Per depth (columns): C(θE, PSF) posterior mean (top) and its credible-interval width (bottom); blank
    cells are insufficient. Cell centres sit on the grid values (θE and PSF FWHM in arcsec)."""
    fig, axes = plt.subplots(2, len(dp), figsize=(4.6 * len(dp), 7.0), squeeze=False, layout="constrained")
    fig.suptitle(
        f"{stamp}completeness C(θE, PSF) per r depth — blank: insufficient (n < n_min or no host)",
        fontsize=10,
    )
    for j, d in enumerate(dp):
        sub = t[t.depth == d]
        c = np.full((len(ps), len(te)), np.nan)
        w = np.full_like(c, np.nan)
        for r in sub.itertuples():
            if not r.insufficient:
                c[np.searchsorted(ps, r.psf_fwhm), np.searchsorted(te, r.theta_e)] = r.c_mean
                w[np.searchsorted(ps, r.psf_fwhm), np.searchsorted(te, r.theta_e)] = r.c_hi68 - r.c_lo68
        hx = (te[1] - te[0]) / 2 if len(te) > 1 else 0.25
        hy = (ps[1] - ps[0]) / 2 if len(ps) > 1 else 0.1
        ext = [te[0] - hx, te[-1] + hx, ps[0] - hy, ps[-1] + hy]  # cell centres on the grid values
        im = axes[0, j].imshow(c, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis", extent=ext)
        axes[0, j].set(title=f"C, depth {d:g}", ylabel="PSF FWHM r (″)")
        im2 = axes[1, j].imshow(w, origin="lower", aspect="auto", vmin=0, vmax=0.5, cmap="magma", extent=ext)
        axes[1, j].set(title=f"68% width, depth {d:g}", xlabel="θE (″)", ylabel="PSF FWHM r (″)")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.colorbar(im2, ax=axes[1].tolist(), shrink=0.8)
    save(fig, path, dpi=80)


def marginals(t: pd.DataFrame, ps: np.ndarray, dp: np.ndarray, path: str | Path, stamp: str = "") -> None:
    """C(θE) per PSF cell (68% bars), one panel per depth; insufficient cells left out."""
    fig, axes = plt.subplots(1, len(dp), figsize=(4.2 * len(dp), 3.4), squeeze=False)
    for j, d in enumerate(dp):
        for p in ps:
            s = t[(t.depth == d) & (t.psf_fwhm == p)].sort_values("theta_e")
            ok = ~s.insufficient
            axes[0, j].errorbar(
                s.theta_e[ok],
                s.c_mean[ok],
                yerr=[s.c_mean[ok] - s.c_lo68[ok], s.c_hi68[ok] - s.c_mean[ok]],
                fmt="o-",
                label=f"PSF {p:g}″",
            )
        axes[0, j].set(
            title=f"{stamp}depth {d:g}", xlabel="θE (″)", ylabel="completeness", ylim=(-0.02, 1.02)
        )
    axes[0, 0].legend(fontsize=7)
    save(fig, path, dpi=80)


Curve = tuple[str, np.ndarray, np.ndarray, np.ndarray]


def variants(
    curves: Sequence[Curve],
    te: np.ndarray,
    mag: tuple[np.ndarray, Sequence[Curve]],
    path: str | Path,
    stamp: str = "",
) -> None:
    """Left: C(θE) over all PSF/depth cells for the main injections and each bracket (``curves`` of
    (label, mean, lower, upper)). Right: the conditional C(m_src) per θE (``mag``: bin centres, curves)."""
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), layout="constrained")
    if stamp:
        fig.suptitle(stamp.rstrip(" —"), fontsize=10, color="firebrick")
    centres, mc = mag
    for ax, x, cs, xl, title, ncol in (
        (axes[0], te, curves, "θE (″)", "brackets: source model, hosts, PSF β, inner image", 1),
        (axes[1], centres, mc, "unlensed source r magnitude", "conditional C(m_src) per θE", 2),
    ):
        for label, mean, lo, hi in cs:
            ax.errorbar(x, mean, yerr=[mean - lo, hi - mean], fmt="o-", capsize=2, label=label)
        ax.set(xlabel=xl, ylabel="completeness (all PSF, depth cells)", ylim=(-0.02, 1.02), title=title)
        ax.legend(fontsize=7, ncol=ncol)
    save(fig, path, dpi=80)


def closure_plot(res: dict[str, Any], path: str | Path, where: str = "the synthetic sky") -> None:
    """Expected (from the selection function, ±1σ: binomial and table parts combined) vs observed detections
    of true lenses per θE bin (left) and per magnitude bin (right); nothing is drawn when the closure test is
    unavailable (real data)."""
    if not res.get("available"):
        return
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.8), layout="constrained")
    label = {"src_mag_r": "m_src", "arc_mag_r": "m_arc"}.get(str(res.get("axis")), "marginalised over m_src")
    for ax, key, xl in (
        (axes[0], "theta_bins", "true θE (″)"),
        (axes[1], "mag_bins", f"true {res.get('mag_column', 'magnitude')} (mag)"),
    ):
        bins = res.get(key) or []
        if bins:
            c = [(b["lo"] + b["hi"]) / 2 for b in bins]
            ax.errorbar(
                c,
                [b["expected"] for b in bins],
                yerr=[b["sigma"] for b in bins],
                fmt="s",
                capsize=3,
                label=f"expected from C(θE, PSF, depth, {label})",
            )
            ax.plot(c, [b["observed"] for b in bins], "o", label="observed detections")
        ax.set(xlabel=xl, ylabel="lenses detected")
        ax.legend(fontsize=8)
    t = res["total"]
    fig.suptitle(
        f"closure on {where}: {t['observed']} observed vs {t['expected']:.1f} ± {t['sigma']:.1f} expected "
        f"(pull {t['pull']:+.2f}, χ² p = {res.get('chi2_pvalue', float('nan')):.2f})",
        fontsize=10,
    )
    save(fig, path, dpi=90)


def selection_figures(
    table: pd.DataFrame,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    curves: tuple[Sequence[Curve], tuple[np.ndarray, Sequence[Curve]]],
    closure: dict[str, Any],
    paths: Mapping[str, Path],
    forced: bool,
) -> None:
    """Every selection figure: ``paths`` maps ``heatmaps``, ``marginals``, ``variants`` and ``closure_plot``
    to files; ``table`` is the 3-D marginal; ``curves`` the bracket curves and the conditional C(m_src)
    curves; ``forced`` (selection on a NO-GO realism verdict) stamps the completeness figures."""
    te, ps, dp = axes
    stamp = "REALISM GATES FAILED — " if forced else ""
    heatmaps(table, te, ps, dp, paths["heatmaps"], stamp)
    marginals(table, ps, dp, paths["marginals"], stamp)
    variants(curves[0], te, curves[1], paths["variants"], stamp)
    closure_plot(closure, paths["closure_plot"])
