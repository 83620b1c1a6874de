"""The closure test's noise floor: each synthetic sky judged by a table made from its *own* deflectors.

``closure_twins.py`` showed that the second population's θE trend is not in its arcs: the same arcs in our
hosts follow the table. This benchmark asks what the best host population possible would give. For every
scored true lens of a sky it cuts the lens out of the sky's coadds and subtracts the arcs of every lens of
the brick (re-rendered with the sky's own lenstronomy renderer at the brick's PSF and each lens's sub-pixel
position; the sky adds no source Poisson noise, so the subtraction is exact up to the coadds' float32
quantisation), which leaves each true deflector, with its neighbours and noise, without its arcs: D_i. Then,
with A_i the arcs of lens i rendered centred at a brick's PSF and the run's frozen finder:

- ``own``: D_i + A_i at lens i's brick: must reproduce the true lens's detection (the check);
- ``deflector_only``: D_i alone (how often a bare deflector is called a lens);
- ``oracle``: p_i, the fraction of ``K`` other lenses' deflectors D_j (drawn at random, seeded) in which A_i
  (at brick j's PSF) is detected: lens i's completeness over the sky's true deflector population, i.e. what
  a table built from perfect hosts would predict for it, with nothing else changed;
- ``matched``: the same with the D_j drawn among the lenses within the injections' host-matching tolerances
  of lens i's r PSF and depth (``inject.psf_match_tol_arcsec``, ``depth_match_tol_mag``): the oracle
  conditioned on the observing conditions, as the table is (``closure_matched``). The unmatched oracle mixes
  the sky's conditions, which on the demo sky span r PSF 1.06–1.84″ and depth 23.9–25.2.

The true detections are then judged against p exactly as ``selection.closure`` judges them against the table
(the same θE and magnitude bins, read from the run's closure.json; σ² = Σ p(1 − p) + Σ p(1 − p)/K, the second
term the oracle's own Monte-Carlo error), beside the table's own pulls, and with the predictive pass rate of
the oracle (:func:`lensaudit.selection.closure.predictive`). If the oracle fails where the table fails, the
failure is in the sky's particular lenses (which deflector each lens happens to sit in), not in the method.

    python benchmarks/closure_oracle.py RUN [K [OUT]]  → OUT (default results/closure_oracle.json)
"""

from __future__ import annotations

import json
import sys
import time
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from closure_diagnosis import run_hosts
from closure_twins import THETA_EDGES, attach_objects, sky_lens_objects
from lensaudit.config import load_config
from lensaudit.run import RunContext
from lensaudit.selection.closure import predictive, sky_lenses
from lensaudit.selection.population import variant_sky
from lensaudit.sky.model import Reference, draw_conditions
from lensaudit.sky.render import ARC_STAMP, moffat_kernel, render_lensed_source
from lensaudit.stamps.quality import radius_map
from lensaudit.stamps.store import StampStore
from lensaudit.survey.bricks import brick_center
from lensaudit.survey.coadds import CoaddReader, _wcs
from lensaudit.train.infer import load_frozen

OUT = Path(__file__).parent / "results" / "closure_oracle.json"
BANDS = "grz"


def deflector_stamps(lenses: pd.DataFrame, objs: list, sky_dir: Path, sky, seed: int, size: int):
    """(T, D, conditions per brick): each lens's stamp as the sky rendered it (T) and without the arcs of any
    lens (D), both (n, 3, size, size) centred on the lens's pixel; off-brick pixels NaN."""
    reader = CoaddReader(sky_dir / "coadd", BANDS, cache_bricks=1)
    ref, h = Reference.load(), size // 2
    T = np.full((len(lenses), 3, size, size), np.nan, np.float32)
    D = np.full_like(T, np.nan)
    conds = {}
    for b in sorted(lenses.brickname.unique()):
        brick = brick_center(b)
        c = draw_conditions(brick, ref, sky.moffat_beta_range, sky.defect_frac, seed + sky.seed_offset)
        conds[b] = c
        data = reader.brick(brick)
        if data is None:
            raise SystemExit(f"no coadds of brick {b} under {sky_dir / 'coadd'}")
        wcs = _wcs(data.header)
        img = np.stack([data.image[k].astype(np.float64) for k in BANDS])
        clean = img.copy()
        kern = {k: moffat_kernel(c.psf_fwhm[k], c.beta) for k in BANDS}
        for name, o in objs:
            if name != b:
                continue
            px, py = wcs.wcs_world2pix(o.ra, o.dec, 0)
            ix, iy = int(np.rint(px)), int(np.rint(py))
            for k, band in enumerate(BANDS):
                a = render_lensed_source(o, band, kern[band], float(px - ix), float(py - iy))
                r = a.shape[0] // 2
                y0, x0 = iy - r, ix - r
                ys, xs = max(0, -y0), max(0, -x0)
                ye, xe = min(a.shape[0], img.shape[1] - y0), min(a.shape[1], img.shape[2] - x0)
                if ye > ys and xe > xs:
                    clean[k, y0 + ys : y0 + ye, x0 + xs : x0 + xe] -= a[ys:ye, xs:xe]
        pad = ((0, 0), (h, h), (h, h))
        img_p = np.pad(img, pad, constant_values=np.nan)
        clean_p = np.pad(clean, pad, constant_values=np.nan)
        for i in np.flatnonzero((lenses.brickname == b).to_numpy()):
            o = lenses.o.iloc[i]
            px, py = wcs.wcs_world2pix(o.ra, o.dec, 0)
            ix, iy = int(np.rint(px)), int(np.rint(py))
            T[i] = img_p[:, iy : iy + size, ix : ix + size]
            D[i] = clean_p[:, iy : iy + size, ix : ix + size]
    return T, D, conds


def arcs_at(o, cond, size: int) -> np.ndarray:
    """A lens's arcs (3, size, size), centred, at a brick's PSF (the sky's renderer and Moffat kernel)."""
    out = np.zeros((3, size, size), np.float64)
    p = (size - ARC_STAMP) // 2
    for k, band in enumerate(BANDS):
        kern = moffat_kernel(cond.psf_fwhm[band], cond.beta)
        out[k, p : p + ARC_STAMP, p : p + ARC_STAMP] = render_lensed_source(o, band, kern, 0.0, 0.0)
    return out


def oracle(
    lenses: pd.DataFrame, T, D, conds, model, k: int, tol: tuple[float, float], seed: int = 0
) -> dict[str, np.ndarray]:
    """Scores: the rendered lens (``true``), the bare deflector, the lens's arcs in its own deflector, in
    ``k`` other lenses' deflectors drawn from the whole sky (``swap``, (n, k)), and in ``k`` drawn among the
    lenses whose r PSF and depth lie within ``tol`` of its own (``matched``, (n, k): the injections' own
    host-matching tolerances, with replacement where fewer than ``k`` qualify, the ``k`` nearest where none
    does)."""

    def score(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.score(np.asarray(x, np.float32)), float)

    rng, rng_m = np.random.default_rng(seed), np.random.default_rng(seed + 1)  # ``swap`` as before matching
    n, size = len(lenses), T.shape[-1]
    bricks = lenses.brickname.to_numpy()
    psf, depth = lenses.psf_fwhm_r.to_numpy(float), lenses.psfdepth_mag_r.to_numpy(float)
    own, swap, matched = np.zeros(n), np.zeros((n, k)), np.zeros((n, k))
    for i in tqdm(range(n), desc="oracle", unit="lens"):
        o = lenses.o.iloc[i]
        others = np.delete(np.arange(n), i)
        js = rng.choice(others, k, replace=False)
        dist = np.hypot((psf[others] - psf[i]) / tol[0], (depth[others] - depth[i]) / tol[1])
        near = others[(np.abs(psf[others] - psf[i]) <= tol[0]) & (np.abs(depth[others] - depth[i]) <= tol[1])]
        if len(near):
            jm = rng_m.choice(near, k, replace=len(near) < k)
        else:
            jm = others[np.argsort(dist, kind="stable")[:k]]
        arcs = {b: arcs_at(o, conds[b], size) for b in set(bricks[js]) | set(bricks[jm]) | {bricks[i]}}
        own[i] = score((D[i] + arcs[bricks[i]])[None])[0]
        swap[i] = score(np.stack([D[j] + arcs[bricks[j]] for j in js]))
        matched[i] = score(np.stack([D[j] + arcs[bricks[j]] for j in jm]))
    return {"true": score(T), "deflector_only": score(D), "own": own, "swap": swap, "matched": matched}


def judged(lenses: pd.DataFrame, det: np.ndarray, p: np.ndarray, k: int, clo: dict) -> dict:
    """The closure statistics of the true detections against the oracle's p, in the bins of the run's
    closure record ``clo``, beside the table's."""
    var_p = p * (1 - p) * (1 + 1 / k)

    def stats_of(sel: np.ndarray) -> dict:
        e, s = float(p[sel].sum()), float(np.sqrt(var_p[sel].sum()))
        o = int(det[sel].sum())
        pull = (o - e) / s if s else None
        return {"n": int(sel.sum()), "observed": o, "expected": e, "sigma": s, "pull": pull}

    rows, bins = [], []
    for kind, col in (("theta_e", "theta_e_arcsec"), ("mag", clo["mag_column"])):
        recorded = clo["theta_bins"] if kind == "theta_e" else clo["mag_bins"]
        idx = bin_index(lenses[col].to_numpy(float), recorded)
        for j, b in enumerate(recorded):
            sel = idx == j
            st = stats_of(sel)
            rows.append({"bin": kind, "lo": b["lo"], "hi": b["hi"], "oracle": st, "table": _table(b)})
            if st["pull"] is not None:
                bins.append((sel, st))
    pulls = np.array([b["pull"] for _, b in bins])
    total = stats_of(np.ones(len(p), bool))
    return {
        "bins": rows,
        "total": total,
        "fraction_within_1sigma": float(np.mean(np.abs(pulls) <= 1)),
        "table_fraction_within_1sigma": clo["fraction_within_1sigma"],
        "table_total": _table(clo["total"]),
        "predictive": predictive(p, None, bins, [], total),
    }


def light(stamps: np.ndarray) -> pd.DataFrame:
    """Per stamp, in r: the magnitude within 15 px of the centre and the concentration (flux within 2 px over
    flux within 15 px), after the median of the pixels beyond 40 px."""
    r = radius_map(stamps.shape[-1])
    x = stamps[:, 1].astype(np.float64)
    x = x - np.nanmedian(np.where(r > 40, x, np.nan).reshape(len(x), -1), axis=1)[:, None, None]
    core = np.nansum(np.where(r <= 2, x, 0.0), axis=(1, 2))
    tot = np.nansum(np.where(r <= 15, x, 0.0), axis=(1, 2))
    return pd.DataFrame({"mag15": 22.5 - 2.5 * np.log10(np.clip(tot, 1e-3, None)), "conc": core / tot})


@cache
def host_light(run: Path, psf_max: float) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`light` of the run's deflector-like hosts with r PSF FWHM ≤ ``psf_max``, and their injection
    weights (read once for both skies)."""
    _, ctx, _, _, hosts = run_hosts(run)
    hosts = hosts[hosts.psfsize_r <= psf_max]
    img, _, _ = StampStore.open(ctx.path("cutouts", "stamps")).read(hosts.row.to_numpy())
    return light(img), hosts.host_weight.to_numpy(float)


def deflectors_vs_hosts(run: Path, D: np.ndarray, psf_r: np.ndarray, psf_max: float = 1.4) -> dict:
    """The true deflectors' r light (arcs subtracted) against our deflector-like hosts' (weighted as the
    injections draw them), both at r PSF FWHM ≤ ``psf_max`` (``psf_r``: the deflectors'): medians overall and
    in bins of r within 15 px."""
    fd = light(D[psf_r <= psf_max])
    fh, w = host_light(run, psf_max)

    def wmed(v: np.ndarray, wt: np.ndarray) -> float | None:
        o = np.argsort(v)
        return float(np.interp(0.5, np.cumsum(wt[o]) / wt.sum(), v[o])) if len(v) and wt.sum() > 0 else None

    rows = []
    for lo, hi in ((19.5, 20.5), (20.5, 21.2), (21.2, 22.0)):
        sd, sh = fd.mag15.between(lo, hi).to_numpy(), fh.mag15.between(lo, hi).to_numpy()
        rows.append(
            {
                "mag15": [lo, hi],
                "deflectors": int(sd.sum()),
                "hosts": int(sh.sum()),
                "conc_deflectors": float(fd.conc[sd].median()) if sd.any() else None,
                "conc_hosts": wmed(fh.conc.to_numpy()[sh], w[sh]),
            }
        )
    return {
        "host_psf_r_max": psf_max,
        "n_deflectors": int(len(fd)),
        "n_hosts": int(len(fh)),
        "median_mag15": {"deflectors": float(fd.mag15.median()), "hosts": wmed(fh.mag15.to_numpy(), w)},
        "median_conc": {"deflectors": float(fd.conc.median()), "hosts": wmed(fh.conc.to_numpy(), w)},
        "by_mag15": rows,
    }


def bin_index(v: np.ndarray, recorded: list[dict]) -> np.ndarray:
    """Each value's bin among a closure record's (contiguous) bins, clipped at both ends as
    ``selection.closure`` bins."""
    lo = np.array([b["lo"] for b in recorded])
    return np.clip(np.searchsorted(lo, v, side="right") - 1, 0, len(lo) - 1)


def _table(b: dict) -> dict:
    return {k: b[k] for k in ("n", "observed", "expected", "sigma", "pull")}


def run_sky(run: Path, which: str, k: int) -> dict:
    """One sky: ``demo`` (the run's sky, its held-out lenses scored by the evaluate stage) or ``second``
    (the population stage's sky and lenses)."""
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    if which == "demo":
        sky, sky_dir = cfg.sky, run / "sky"
        truth = pd.read_parquet(ctx.path("sky", "truth"))
        scored = sky_lenses(ctx.path("sky", "truth"), ctx.path("evaluate", "scores"))
        clo = json.loads((run / "selection" / "closure.json").read_text())
    else:
        sky, sky_dir = variant_sky(cfg.sky, cfg.population), run / "population" / "sky"
        truth = pd.read_parquet(sky_dir / "truth.parquet")
        scored = pd.read_parquet(run / "population" / "lenses.parquet")
        clo = json.loads((run / "population" / "closure.json").read_text())
    cond = pd.read_parquet(sky_dir / "conditions.parquet")
    objs = sky_lens_objects(sky, cfg.run.seed, cond)
    lenses = attach_objects(scored, truth, objs)
    T, D, conds = deflector_stamps(lenses, objs, sky_dir, sky, cfg.run.seed, cfg.cutouts.size_pix)
    model = load_frozen(ctx.path("train", "best").parent, "cpu")
    tol = (cfg.inject.psf_match_tol_arcsec, cfg.inject.depth_match_tol_mag)
    s = oracle(lenses, T, D, conds, model, k, tol)
    op = float(clo["threshold"])
    det = (lenses.score.to_numpy() >= op).astype(float)
    p = (s["swap"] >= op).mean(axis=1)
    pm = (s["matched"] >= op).mean(axis=1)
    ti = bin_index(lenses.theta_e_arcsec.to_numpy(float), clo["theta_bins"])
    by_theta = []
    for j, b in enumerate(clo["theta_bins"]):
        sel = ti == j
        by_theta.append(
            {
                "lo": b["lo"],
                "hi": b["hi"],
                "n": int(sel.sum()),
                "true": float(det[sel].mean()) if sel.any() else None,
                "own_deflector": float((s["own"][sel] >= op).mean()) if sel.any() else None,
                "other_deflectors": float(p[sel].mean()) if sel.any() else None,
                "matched_deflectors": float(pm[sel].mean()) if sel.any() else None,
                "table": float(b["expected"] / b["n"]) if b["n"] else None,
            }
        )
    te = lenses.theta_e_arcsec.to_numpy(float)
    twin_bins = []  # closure_twins.py's bins, for comparison with its "our_hosts"
    for lo, hi in zip(THETA_EDGES[:-1], THETA_EDGES[1:]):
        sel = (te >= lo) & ((te < hi) | (hi == THETA_EDGES[-1]))
        twin_bins.append(
            {"theta_e": [float(lo), float(hi)], "n": int(sel.sum()), "other_deflectors": float(p[sel].mean())}
        )
    return {
        "n_lenses": int(len(lenses)),
        "threshold": op,
        "by_theta_e_twin_bins": twin_bins,
        "deflectors_vs_hosts": deflectors_vs_hosts(run, D, lenses.psf_fwhm_r.to_numpy(float)),
        "check": {
            "rendered_vs_recorded_max_abs_score": float(np.max(np.abs(s["true"] - lenses.score.to_numpy()))),
            "own_vs_true_detection_agreement": float(np.mean((s["own"] >= op) == (s["true"] >= op))),
            "arc_residual_rms_over_stamp_rms": float(np.nanstd(T - D) / np.nanstd(T)),
        },
        "deflector_only_detected": float(np.mean(s["deflector_only"] >= op)),
        "by_theta_e": by_theta,
        "closure": judged(lenses, det, p, k, clo),
        "closure_matched": judged(lenses, det, pm, k, clo),
        "matching_tolerances": {"psf_r_arcsec": tol[0], "depth_r_mag": tol[1]},
    }


def main(run: Path, k: int = 16, out: Path = OUT) -> dict:
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    res = {
        "run": str(run),
        "deflectors_per_lens": k,
        "demo_sky": run_sky(run, "demo", k),
        "second_population": run_sky(run, "second", k),
    }
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    run = Path(sys.argv[1])
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    res = main(run, k, Path(sys.argv[3]) if len(sys.argv) > 3 else OUT)
    for sky in ("demo_sky", "second_population"):
        r = res[sky]
        c = r["closure"]
        print(f"{sky}: {r['n_lenses']} lenses; check {r['check']}")
        print(f"{'θE':>11} {'n':>4} {'true':>6} {'own':>6} {'others':>7} {'matched':>7} {'table':>6}")
        for b in r["by_theta_e"]:
            if b["n"]:
                print(
                    f"{b['lo']:.2f}–{b['hi']:.2f} {b['n']:4d} {b['true']:6.2f} {b['own_deflector']:6.2f} "
                    f"{b['other_deflectors']:7.2f} {b['matched_deflectors']:7.2f} {b['table']:6.2f}"
                )
        rate = 100 * c["predictive"]["p_pass"]["fraction_within_1sigma"]
        print(
            f"  within 1σ: oracle {c['fraction_within_1sigma']:.2f}, table "
            f"{c['table_fraction_within_1sigma']:.2f}; total pull oracle {c['total']['pull']:+.2f}, table "
            f"{c['table_total']['pull']:+.2f}; a correct oracle passes within-1σ in {rate:.0f}% of draws"
        )
        cm = r["closure_matched"]
        th = [round(b["oracle"]["pull"], 2) for b in cm["bins"] if b["bin"] == "theta_e" and b["oracle"]["n"]]
        print(
            f"  matched in PSF and depth: within 1σ {cm['fraction_within_1sigma']:.2f}, total pull "
            f"{cm['total']['pull']:+.2f}, θE pulls {th}"
        )
