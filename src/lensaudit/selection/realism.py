"""Realism of the injections (GO/NO-GO), each measurement a pure function; the gates built on them are
declared in :mod:`lensaudit.validation.gates.inject`.

Arc SNR and colours are measured identically on both sets: subtract a smooth host model (the azimuthal median
profile per band about the stamp centre, in 1-px rings), then sum the residual in the fixed annulus
0.8″ ≤ r ≤ 3.0″ (where θE 0.5–3″ arcs live) — SNR = Σ residual_r / (σ_pix·√N), σ_pix = 1.4826·MAD of the
outer region; colours from the residual fluxes in g, r, z (unclipped for the colour gates: clipping negative
pixels biases faint arcs' colours towards 0, which hid a real 0.3 mag offset).

:func:`compare` draws the comparison: the real positives and the main-prior injections drawn with
:func:`condition_weights` (matched in PSF and depth) and :func:`brightness_weights` (matched in measured arc
SNR: the selection function is conditioned on the source magnitude, so the realism gates judge arcs of like
brightness, and the SNR percentiles test that the broad injection prior covers the real arcs). :func:`noise_z`
and :func:`noise_sigma_ratios` compare
the noise the injection added with the noise model, against the real host stamps the injection never touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import ndimage

from lensaudit.gates import Gate
from lensaudit.lensing.render import arc_noise_variance, noise_sigma
from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.stamps.quality import radius_map
from lensaudit.utils import stable_seed

if TYPE_CHECKING:
    from lensaudit.stamps.store import StampStore
    from lensaudit.train.infer import FrozenModel

ANNULUS_ARCSEC = (0.8, 3.0)
#: the splits whose positives the realism probe sees: never the finder's training set
HELD_OUT = ("val", "test")


def smooth_host(img: np.ndarray) -> np.ndarray:
    """Azimuthal-median model (B, S, S) of stamps (N, B, S, S) → same shape."""
    s = img.shape[-1]
    r = np.rint(radius_map(s)).astype(int)
    out = np.zeros_like(img)
    flat = img.reshape(*img.shape[:-2], -1)
    rr = r.ravel()
    for k in range(rr.max() + 1):
        m = rr == k
        med = np.nanmedian(flat[..., m], axis=-1)
        out.reshape(*img.shape[:-2], -1)[..., m] = med[..., None]
    return out


def annulus_mask(size: int, pixscale: float = 0.262) -> np.ndarray:
    """(size, size) mask of the arc annulus :data:`ANNULUS_ARCSEC` about the stamp centre."""
    r = radius_map(size) * pixscale
    return (r >= ANNULUS_ARCSEC[0]) & (r <= ANNULUS_ARCSEC[1])


def measured_arc(img: np.ndarray, pixscale: float = 0.262, clip: bool = True) -> dict[str, np.ndarray]:
    """Annulus residual fluxes (N, 3), SNR (N,) and colours after host-model subtraction. ``clip`` sums only
    positive residual pixels (the injections table's ``meas_*`` columns); the colour gates use ``clip=False``
    (an unbiased flux: the sum of every annulus pixel)."""
    res = np.nan_to_num(img - smooth_host(img))
    ann = annulus_mask(img.shape[-1], pixscale)
    outer = radius_map(img.shape[-1]) >= 30
    flux = res[..., ann].clip(min=0).sum(axis=-1) if clip else res[..., ann].sum(axis=-1)
    xo = img[:, 1][:, outer]
    sig = 1.4826 * np.nanmedian(np.abs(xo - np.nanmedian(xo, axis=1, keepdims=True)), axis=1)
    snr = res[:, 1][:, ann].sum(axis=-1) / (sig * np.sqrt(ann.sum()))
    with np.errstate(divide="ignore", invalid="ignore"):  # negative fluxes (unclipped): NaN colours
        g_r = -2.5 * np.log10(flux[:, 0] / flux[:, 1])
        r_z = -2.5 * np.log10(flux[:, 1] / flux[:, 2])
    return {"flux": flux, "snr": snr, "g_r": g_r, "r_z": r_z}


def snr_gates(
    inj_snr: np.ndarray, real_snr: np.ndarray, bounds: tuple[float, float], floor: float = 1.0
) -> list[Gate]:
    """Percentiles 10/50/90 of the annulus SNR: injected/real within ``bounds``. Where the real percentile is
    below ``floor`` (no significant arc light: a ratio of two noise-dominated numbers means nothing and can be
    negative), the gate compares the difference instead: |injected − real| ≤ ``floor`` (σ units) passes."""
    out = []
    for pct in (10, 50, 90):
        a, b = np.nanpercentile(inj_snr, pct), np.nanpercentile(real_snr, pct)
        msg = f"injected {a:.2f} vs real {b:.2f} (host-subtracted annulus estimator)"
        detail = {"percentile": pct, "injected": float(a), "real": float(b)}
        if b >= floor:
            out.append(
                Gate(
                    name=f"arc_snr_p{pct}_ratio",
                    value=float(a / b),
                    lo=bounds[0],
                    hi=bounds[1],
                    blocking=False,
                    message=msg,
                    detail=detail,
                )
            )
        else:
            out.append(
                Gate(
                    name=f"arc_snr_p{pct}_ratio",
                    value=float(a - b),
                    lo=-floor,
                    hi=floor,
                    blocking=False,
                    message=msg
                    + f"; real percentile < {floor:g}σ, so the difference is gated (|Δ| ≤ {floor:g})",
                    detail=detail,
                )
            )
    return out


def colour_gates(inj: dict, real: dict, tol: float) -> list[Gate]:
    out = []
    for c in ("g_r", "r_z"):
        d = float(np.nanmedian(inj[c]) - np.nanmedian(real[c]))
        out.append(
            Gate(
                name=f"arc_colour_{c}_diff",
                value=d,
                lo=-tol,
                hi=tol,
                blocking=False,
                message=f"median injected − real arc {c.replace('_', '−')} (unclipped annulus fluxes; "
                f"{int(np.isfinite(inj[c]).sum())} injected and {int(np.isfinite(real[c]).sum())} real arcs "
                "with positive fluxes)",
            )
        )
    return out


def probe_gate(
    f_real: np.ndarray,
    f_inj: np.ndarray,
    warn: float,
    fail: float,
    seed: int = 0,
    groups_real: np.ndarray | None = None,
    groups_inj: np.ndarray | None = None,
) -> tuple[Gate, dict]:
    """Linear probe on frozen penultimate features: real positives vs injections (5-fold CV AUC, bootstrap
    CI).

    Injections reuse hosts (tens of arcs per host galaxy), so with plain k-fold the probe sees every host in
    training and can score by recognising the host galaxies rather than the arcs: on the demo that inflated
    the AUC from 0.62 to 0.89. With ``groups_*`` (real: galaxy id; injections: host galaxy id) the folds keep
    each host whole (StratifiedGroupKFold), so the AUC measures whether *arcs* are distinguishable."""
    from lensaudit.audit.shortcuts import cv_auc

    X = np.vstack([f_real, f_inj])
    y = np.r_[np.ones(len(f_real)), np.zeros(len(f_inj))].astype(int)
    groups = None
    if groups_real is not None and groups_inj is not None:
        groups = np.r_[
            np.asarray(["real:" + str(g) for g in groups_real], dtype=object),
            np.asarray(["host:" + str(g) for g in groups_inj], dtype=object),
        ]
    res = cv_auc(X, y, seed, groups=groups)
    res["grouped_by_host"] = groups is not None
    return Gate(
        name="discriminator_auc",
        value=res["value"],
        ci=res["ci68"],
        warn=warn,
        fail=fail,
        blocking=False,
        message="linear probe: real positives vs injections, folds grouped by host galaxy (predecessor 0.996)"
        if groups is not None
        else "linear probe: real positives vs injections (predecessor 0.996)",
    ), res


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Pin torch's CPU threads while features are computed: CPU reductions depend on the thread count, and
    ``lensaudit verify`` must recompute the probe bit for bit in another process."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def features(model: FrozenModel, img: np.ndarray) -> np.ndarray:
    """The frozen finder's penultimate features of stamps, on one pinned CPU thread."""
    with torch_threads(1):
        return model.features(img) if len(img) else np.zeros((0, 0), np.float32)


# -- the comparison sample ----------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Real positives (``pos``: sample rows + store ``row``, sorted by row; stamps ``real_img``) and the
    main-prior injections drawn to match their conditions (store rows ``pick``, stamps ``inj_img``, host
    galaxy ids ``hosts_of_pick``); ``rng`` continues the draw (the panel's picks). ``real_arc``: the real
    stamps' :func:`measured_arc` (unclipped), measured once for the matching and the gates."""

    pos: pd.DataFrame
    real_img: np.ndarray
    real_arc: dict[str, np.ndarray]
    pick: np.ndarray
    inj_img: np.ndarray
    hosts_of_pick: np.ndarray
    rng: np.random.Generator

    @property
    def held_out(self) -> np.ndarray:
        """Mask of the real positives outside the finder's training split (:data:`HELD_OUT`)."""
        return self.pos.split.isin(HELD_OUT).to_numpy()


def positives(sample: pd.DataFrame, stamps: pd.DataFrame) -> pd.DataFrame:
    """The real positives with quality-ok stamps (sample rows + store ``row``), sorted by store row."""
    lab = labelled_stamps(sample, stamps)
    return lab[lab.label == 1]


def condition_weights(main: pd.DataFrame, pos: pd.DataFrame) -> np.ndarray:
    """Sampling weights over the main injections that reproduce the real positives' (PSF, depth) distribution:
    each positive votes for its nearest grid (PSF, depth) cell, shared among that cell's injections. The
    realism gates then compare like with like ("matched in conditions where possible"); falls back to uniform
    weights when no positive lies near a filled cell."""
    ps, ds = np.sort(main.psf_cell.unique()), np.sort(main.depth_cell.unique())
    if len(pos) == 0 or len(ps) == 0:
        return np.full(len(main), 1.0 / max(len(main), 1))
    pc = ps[np.abs(pos.psfsize_r.to_numpy()[:, None] - ps).argmin(1)]
    dc = ds[np.abs(pos.psfdepth_mag_r.to_numpy()[:, None] - ds).argmin(1)]
    votes = pd.Series(1.0, index=pd.MultiIndex.from_arrays([pc, dc])).groupby(level=[0, 1]).sum()
    key = pd.MultiIndex.from_arrays([main.psf_cell.to_numpy(), main.depth_cell.to_numpy()])
    per_cell = pd.Series(1.0, index=key).groupby(level=[0, 1]).sum()
    w = votes.reindex(key).fillna(0).to_numpy() / per_cell.reindex(key).to_numpy()
    return w / w.sum() if w.sum() > 0 else np.full(len(main), 1.0 / len(main))


def brightness_weights(
    inj_snr: np.ndarray, real_snr: np.ndarray, w: np.ndarray, n_bins: int = 10
) -> np.ndarray:
    """Re-weight ``w`` (over the injections) so that the injections' measured annulus SNR follows the real
    positives' distribution: bins at the real SNR quantiles (outer edges the real minimum and maximum); each
    bin's real fraction is shared among its injections in proportion to ``w``. Injections outside the real
    range, and real bins without injections, get nothing: the realism gates then compare arcs of like
    brightness, and the SNR percentile gates measure whether the injection prior *covers* the real arcs.

    The selection function is conditioned on the source magnitude, so the injection prior must span the real
    population, not copy it (docs/decisions.md).

    >>> rng = np.random.default_rng(0)
    >>> real, inj = rng.normal(10, 2, 400), rng.uniform(0, 40, 4000)
    >>> w = brightness_weights(inj, real, np.full(4000, 1 / 4000))
    >>> abs(float(np.average(inj, weights=w)) - 10) < 0.3
    True
    """
    real = np.asarray(real_snr, float)
    real = real[np.isfinite(real)]
    x = np.asarray(inj_snr, float)
    if len(real) < 2 or not (w > 0).any():
        return w
    n_bins = int(min(n_bins, max(2, len(real) // 5)))
    edges = np.unique(np.quantile(real, np.linspace(0, 1, n_bins + 1)))
    target = np.histogram(real, edges)[0] / len(real)
    b = np.searchsorted(edges, x, side="right") - 1
    b[x == edges[-1]] = len(edges) - 2
    inside = np.isfinite(x) & (b >= 0) & (b < len(edges) - 1)
    mass = np.bincount(b[inside], weights=w[inside], minlength=len(target))
    out = np.zeros_like(w, dtype=float)
    ok = inside & (mass[np.clip(b, 0, len(mass) - 1)] > 0)
    out[ok] = w[ok] * target[b[ok]] / mass[b[ok]]
    return out / out.sum() if out.sum() > 0 else w


def _read(store: StampStore, rows: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.zeros((0, len(store.bands), 101, 101), np.float32)
    return store.read(rows)[0]


def compare(
    sample: pd.DataFrame,
    index: pd.DataFrame,
    inj: pd.DataFrame,
    hosts: StampStore,
    store: StampStore,
    seed: int,
) -> Comparison:
    """The real positives (``sample`` + the cutouts ``index``, stamps in ``hosts``) and the main-prior
    injections (``inj``, stamps in ``store``) drawn with :func:`condition_weights` ×
    :func:`brightness_weights`
    (matched in PSF, depth and measured arc SNR; seeded by ``seed``): at most max(200, 3 × positives)
    injections, and no more than the weights' effective sample size."""
    pos = positives(sample, index)
    real_img = _read(hosts, pos.row.to_numpy())
    real_arc = measured_arc(real_img, clip=False)  # the SNR does not depend on the clipping
    main = inj[inj.variant == "main"]
    rng = np.random.default_rng(stable_seed(seed, "probe"))
    w = condition_weights(main, pos)
    if len(pos) and "meas_snr" in main:
        w = brightness_weights(main.meas_snr.to_numpy(), real_arc["snr"], w)
    n_eff = int(w.sum() ** 2 / (w**2).sum()) if (w > 0).any() else 0  # a weighted draw stays weighted
    size = max(1, min(int((w > 0).sum()), max(200, 3 * len(pos)), n_eff))
    pick = np.sort(rng.choice(main.row.to_numpy(), size=size, replace=False, p=w))
    hosts_of_pick = main.set_index("row").loc[pick, "host_galaxy_id"].to_numpy()
    return Comparison(pos, real_img, real_arc, pick, _read(store, pick), hosts_of_pick, rng)


def panel(c: Comparison, inj: pd.DataFrame) -> tuple[np.ndarray, list[str], int]:
    """The realism panel: up to 8 real positives, then as many of the compared injections (stamps, titles,
    the number of real ones)."""
    k = min(8, len(c.pos), len(c.inj_img))
    idx: Any = np.sort(c.rng.choice(len(c.inj_img), size=k, replace=False)) if k else []
    stamps = np.concatenate([c.real_img[:k], c.inj_img[idx]]) if k else np.zeros((0, 3, 101, 101))
    shown = inj.set_index("row").loc[c.pick[idx]]
    titles = [f"real {gid}" for gid in c.pos.galaxy_id.iloc[:k]] + [
        f"inj θE={t:.2f}″ snr={s:.1f}" for t, s in zip(shown.theta_e, shown.arc_snr)
    ]
    return stamps, titles, k


# -- the added noise against the untouched hosts ------------------------------------------------------------
#: injections whose noise is measured: the first non-degraded ones (a degraded host was changed before the
#: injection, so the stored host is not what the arc was added to)
N_NOISE_STAMPS = 512
#: the arc estimate: the centre weights of a 5×5 least-squares quadratic (Savitzky–Golay): unbiased for a
#: smooth arc, and uncorrelated with the high-pass below (which annihilates quadratics)
_r = np.arange(-2, 3)
_yy, _xx = (a.ravel().astype(float) for a in np.meshgrid(_r, _r, indexing="ij"))
SMOOTH = np.linalg.pinv(np.stack([np.ones(25), _xx, _yy, _xx**2, _xx * _yy, _yy**2], 1))[0].reshape(5, 5)
#: the high-pass: second differences along both axes; a PSF-convolved arc (smooth on the PSF scale) drops out
#: while pixel noise passes with variance Σ h_j² σ_j²
HIGHPASS = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0])
#: pixels where the arc is known well enough to predict its noise: its own Poisson σ below arc/√30 (18%)
ARC_SIGNIFICANCE = 30.0
#: pixels where the predicted added variance exceeds 100× the float32 rounding variance of the stamp
ROUNDING_MARGIN = 100.0
#: stamp border left out (the filters' reach)
BORDER = 3
#: |z| histogram edges for the bootstrap (log-spaced; 0.2% wide)
_EDGES = np.r_[0.0, np.geomspace(1e-4, 1e3, 3501), np.inf]
MAD_TO_SIGMA = 1.4826


def noise_rows(inj: pd.DataFrame, n: int = N_NOISE_STAMPS) -> pd.DataFrame:
    """The injections whose added noise is measured: the first ``n`` non-degraded ones, in store order."""
    return inj[~inj.degraded.astype(bool)].sort_values("row").head(n)


def noise_z(
    stamps: np.ndarray,
    host: np.ndarray,
    host_invvar: np.ndarray,
    noise_model: str,
    pixscale: float = 0.262,
    bands: str = "grz",
) -> np.ndarray:
    """Standardised high-passed injection residuals (N, nb, S, S), NaN outside the measured pixels.

    d = injected stamp − the real host stamp is the arc plus the added noise only. Its high-pass
    (:data:`HIGHPASS`) removes the smooth arc; its variance is predicted with the injection's own formula
    (:func:`lensaudit.lensing.render.arc_noise_variance` on the host's σ_pix,
    :func:`lensaudit.lensing.render.noise_sigma`) applied to the arc estimated from d (:data:`SMOOTH`).
    z = high-pass / predicted σ is N(0, 1) where the injection adds the noise the model claims."""
    d = stamps.astype(np.float64) - host.astype(np.float64)
    arc = ndimage.correlate(d, SMOOTH[None, None], mode="nearest")
    sig = noise_sigma(np.asarray(host, np.float32), np.asarray(host_invvar), noise_model)
    var = arc_noise_variance(arc, sig, pixscale, bands)
    h2 = (HIGHPASS**2)[None, None]
    var_hp = ndimage.correlate(var, h2, mode="nearest")
    hp = ndimage.correlate(d, HIGHPASS[None, None], mode="nearest")
    rounding = np.spacing(np.abs(stamps.astype(np.float32))).astype(np.float64) ** 2 / 12
    round_hp = ndimage.correlate(rounding, h2, mode="nearest")
    s = d.shape[-1]
    inner = np.zeros((s, s), bool)
    inner[BORDER : s - BORDER, BORDER : s - BORDER] = True
    with np.errstate(invalid="ignore"):
        sel = (
            inner
            & (arc > 0)
            & (ARC_SIGNIFICANCE * var < arc**2)
            & (var_hp > ROUNDING_MARGIN * round_hp)
            & np.isfinite(hp)
        )
    out = np.full(d.shape, np.nan)
    out[sel] = hp[sel] / np.sqrt(var_hp[sel])
    return out


def _hist_median(counts: np.ndarray) -> np.ndarray:
    """Medians (…,) from histograms (…, bins) over :data:`_EDGES`, linear inside the bin."""
    cum = np.cumsum(counts, axis=-1)
    half = cum[..., -1:] / 2
    j = np.minimum((cum < half).sum(axis=-1), counts.shape[-1] - 1)
    below = np.where(j > 0, np.take_along_axis(cum, np.maximum(j - 1, 0)[..., None], -1)[..., 0], 0.0)
    inside = np.take_along_axis(counts, j[..., None], -1)[..., 0]
    lo, hi = _EDGES[j], np.where(np.isfinite(_EDGES[j + 1]), _EDGES[j + 1], _EDGES[j])
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(inside > 0, (half[..., 0] - below) / inside, 0.0)
    return lo + frac * (hi - lo)


def noise_sigma_ratios(
    chunks: Iterable[np.ndarray], bands: str = "grz", seed: int = 0, n_boot: int = 200
) -> list[dict[str, Any]]:
    """Per band: robust σ (1.4826·MAD about 0) of the z values of :func:`noise_z` (``chunks``: arrays
    (n, nb, S, S)) = measured / predicted σ of the added noise, with a 68% bootstrap CI over stamps
    (resampling whole stamps, seeded)."""
    values: list[list[np.ndarray]] = [[] for _ in bands]
    hists: list[list[np.ndarray]] = [[] for _ in bands]
    for z in chunks:
        for k in range(len(bands)):
            a = np.abs(z[:, k].reshape(len(z), -1))
            values[k].append(a[np.isfinite(a)])
            hists[k] += [np.histogram(r[np.isfinite(r)], _EDGES)[0] for r in a]
    out: list[dict[str, Any]] = []
    rng = np.random.default_rng(stable_seed(seed, "noise_sigma_ratio"))
    n_stamps = len(hists[0])
    draws = rng.integers(0, max(n_stamps, 1), (n_boot, n_stamps))
    weights = np.stack([np.bincount(r, minlength=n_stamps) for r in draws]).astype(float)
    for k in range(len(bands)):
        v = np.concatenate(values[k]) if values[k] else np.zeros(0)
        if v.size == 0:
            out.append({"value": float("nan"), "ci68": None, "n_pix": 0, "n_stamps": n_stamps})
            continue
        boot = MAD_TO_SIGMA * _hist_median(weights @ np.stack(hists[k]).astype(float))
        out.append(
            {
                "value": float(MAD_TO_SIGMA * np.median(v)),
                "ci68": (float(np.quantile(boot, 0.16)), float(np.quantile(boot, 0.84))),
                "n_pix": int(v.size),
                "n_stamps": n_stamps,
            }
        )
    return out
