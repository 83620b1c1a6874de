"""The second population's own lenses, re-rendered into our hosts: is its θE trend in the arcs or the
deflectors?

The second sky's closure (docs/selection.md) passes in total but runs with θE: its lenses at θE < 1″ are found
less often than the table predicts, those at 2.5–3″ more often. The controlled closure of
``closure_diagnosis.py`` (fresh sky-model lenses in our hosts) showed no such trend. This benchmark removes
the last difference between the two: it regenerates the second sky's *own* lens objects (the sky model is a
pure function of the brick, the config and the seed: ``sky.model.draw_objects``), and renders each
catalogued, scored lens's exact arcs (same source components, position, ellipticity, shear, colours, θE) with
the sky's own lenstronomy renderer into ``K`` deflector-like hosts of the run drawn as the injections draw
theirs (weighted, inside the cell tolerances ``inject.psf_match_tol_arcsec`` and ``depth_match_tol_mag`` of
the lens's r PSF and depth; the nearest ones where none is inside), at the host's PSF (FWHM per band, its
brick's fitted Moffat β from ``inject/psf_stars.parquet``), adds the arc noise our injections add, and scores
them with the run's finder. Per θE bin it compares three detected fractions for the same lenses: in their
true deflectors (the sky), in our hosts (the twins), and the table's prediction. Twins that follow the true
lenses → the trend is in the arcs (the table misses how these sources' detectability runs with θE); twins
that follow the table → it is in the deflectors.

    python benchmarks/closure_twins.py RUN [K [OUT]]  → OUT (default results/closure_twins.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from closure_diagnosis import run_hosts, weighted_table
from lensaudit.config import SkyConfig, load_config
from lensaudit.lensing.render import arc_noise_variance, noise_sigma
from lensaudit.run import RunContext
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.closure import predict
from lensaudit.selection.hosts import DEFLECTOR_BINS, deflector_weights, weighted_pick
from lensaudit.selection.population import variant_sky
from lensaudit.selection.table import SelectionFunction
from lensaudit.sky.build import real_positives
from lensaudit.sky.model import Reference, SourceVariant, draw_conditions, draw_objects
from lensaudit.sky.render import ARC_STAMP, moffat_kernel, render_lensed_source
from lensaudit.stamps.store import StampStore
from lensaudit.survey.bricks import brick_center
from lensaudit.train.infer import load_frozen

OUT = Path(__file__).parent / "results" / "closure_twins.json"
THETA_EDGES = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])


def sky_lens_objects(sky: SkyConfig, run_seed: int, cond: pd.DataFrame) -> list:
    """(brickname, lens object) of every lens of the sky ``sky`` over the bricks of ``cond`` (its
    conditions.parquet), regenerated exactly as ``sky.build.build_brick`` drew them (seed: the run's seed plus
    ``sky.seed_offset``)."""
    seed = run_seed + sky.seed_offset
    ref, pos = Reference.load(), real_positives()
    lenses = []
    for name in sorted(cond.brickname.unique()):
        b = brick_center(name)
        c = draw_conditions(b, ref, sky.moffat_beta_range, sky.defect_frac, seed)
        half = (sky.brick_pixels - 40) * 0.262 / 3600 / 2
        dra = ((pos.ra - b.ra + 180) % 360 - 180) * np.cos(np.deg2rad(b.dec))
        inside = pos[(dra.abs() < half) & ((pos.dec - b.dec).abs() < half)]
        objs = draw_objects(
            c,
            sky.brick_pixels,
            ref,
            seed,
            sky.lenses_per_brick,
            sky.unknown_lenses_per_brick,
            sky.confusers_per_brick,
            sky.theta_e_range_arcsec,
            inside,
            SourceVariant(sky.src_mag_offset, sky.src_size_scale),
        )
        lenses += [(name, o) for o in objs if o.kind == "lens"]
    return lenses


def second_sky_lenses(run: Path) -> list:
    """The second sky's lens objects (:func:`sky_lens_objects`)."""
    cfg = load_config(run / "config.yaml", [])
    cond = pd.read_parquet(run / "population" / "sky" / "conditions.parquet")
    return sky_lens_objects(variant_sky(cfg.sky, cfg.population), cfg.run.seed, cond)


def attach_objects(scored: pd.DataFrame, truth: pd.DataFrame, objs: list) -> pd.DataFrame:
    """The scored lenses (``galaxy_id``, ``theta_e_arcsec``, ``src_mag_r``, …) with their regenerated objects
    (``o``) and bricks, matched to the truth by position, then checked on θE and source magnitude."""
    tr = truth[truth.kind == "lens"]
    ra = np.array([o.ra for _, o in objs])
    dec = np.array([o.dec for _, o in objs])
    idx = []
    for r in tr.itertuples():
        d = np.hypot((ra - r.ra) * np.cos(np.deg2rad(r.dec)), dec - r.dec) * 3600
        idx.append(int(np.argmin(d)) if d.min() < 0.01 else -1)
    tr = tr.assign(obj=idx)
    keep = [c for c in ("galaxy_id", "obj", "brickname") if c not in scored.columns or c == "galaxy_id"]
    m = scored.merge(tr[keep], on="galaxy_id")
    m = m[m.obj >= 0].reset_index(drop=True)
    te = np.array([objs[i][1].params["theta_e"] for i in m.obj])
    sm = np.array([objs[i][1].params["src_mag_r"] for i in m.obj])
    if not (np.allclose(te, m.theta_e_arcsec, atol=1e-6) and np.allclose(sm, m.src_mag_r, atol=1e-6)):
        raise SystemExit("regenerated lenses do not match the sky's truth (θE or source magnitude)")
    return m.assign(o=[objs[i][1] for i in m.obj])


def matched(run: Path) -> pd.DataFrame:
    """The scored second-population lenses with their regenerated objects (:func:`attach_objects`)."""
    pl = pd.read_parquet(run / "population" / "lenses.parquet")
    tr = pd.read_parquet(run / "population" / "sky" / "truth.parquet")
    return attach_objects(pl, tr, second_sky_lenses(run))


def twins(
    run: Path, lenses: pd.DataFrame, k: int, seed: int = 0, arc_noise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(n_lenses, k) scores of each lens's arcs in k deflector-like hosts drawn like the injections'
    (weighted, inside the cell tolerances of the lens's r PSF and depth; the nearest where none is inside),
    and the (n_lenses, k) host galaxy_ids. ``arc_noise``: add the arcs' Poisson noise as our injections do
    (False: none, as the synthetic sky renders its lenses; the same hosts either way)."""
    cfg, ctx, _, _, hosts = run_hosts(run)
    stars = pd.read_parquet(ctx.path("inject", "psf_stars"))
    beta = stars[stars.ok].groupby("brickname").beta.median()
    hb = hosts.brickname.astype(str).map(beta).fillna(float(beta.median())).to_numpy()
    store = StampStore.open(ctx.path("cutouts", "stamps"))
    model = load_frozen(ctx.path("train", "best").parent, "cpu")
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    hosts = hosts.reset_index(drop=True)
    hp, hd = hosts.psfsize_r.to_numpy(float), hosts.psfdepth_mag_r.to_numpy(float)
    tol = (cfg.inject.psf_match_tol_arcsec, cfg.inject.depth_match_tol_mag)
    out = np.zeros((len(lenses), k))
    ids = np.empty((len(lenses), k), dtype=object)
    for i, r in enumerate(lenses.itertuples()):
        near = (np.abs(hp - r.psf_fwhm_r) <= tol[0]) & (np.abs(hd - r.psfdepth_mag_r) <= tol[1])
        if near.sum() >= 1:  # the injections' own host draw: weighted, inside the cell tolerances
            cand = hosts[near]
            keys = [f"twin|{r.galaxy_id}|{j}" for j in range(k)]
            pick = weighted_pick(cand, keys, seed).index.to_numpy()  # labels = positions (index reset)
        else:
            dist = np.hypot((hp - r.psf_fwhm_r) / tol[0], (hd - r.psfdepth_mag_r) / tol[1])
            pick = np.argsort(dist, kind="stable")[:k]
        img, iv, _ = store.read(hosts.row.to_numpy()[pick])
        pad = (img.shape[-1] - ARC_STAMP) // 2
        arcs = np.zeros(img.shape, np.float64)
        for j, h in enumerate(pick):
            for b, band in enumerate("grz"):
                kern = moffat_kernel(float(hosts[f"psfsize_{band}"].iloc[h]), float(hb[h]))
                arcs[j, b, pad : pad + ARC_STAMP, pad : pad + ARC_STAMP] = render_lensed_source(
                    r.o, band, kern, 0, 0
                )
        sig = noise_sigma(img, iv, "invvar")
        noise = rng.standard_normal(arcs.shape) * np.sqrt(arc_noise_variance(arcs, sig)) * float(arc_noise)
        out[i] = np.asarray(model.score((img + arcs + noise).astype(np.float32)), float)
        ids[i] = hosts.galaxy_id.to_numpy()[pick]
    return out, ids


def host_hypotheses(run: Path, lenses: pd.DataFrame, op: float) -> dict:
    """The closure (src_mag table, Beta σ) of both skies with the main injections re-weighted per host:
    ``size``: the host weights gain a shape_r tercile of the positives (hosts matched in size too);
    ``to_true_deflector_shape_r`` / ``…_mag_r_x_shape_r``: (diagnostics that read the truth) hosts re-weighted
    to the second sky's true deflectors in size, and in r and size jointly;
    ``g_r>=1.0`` / ``g_r>=1.2``: hosts bluer than that dropped; ``sersic_window``: hosts whose Tractor Sérsic
    index lies outside the positives' 5th–95th percentiles dropped (the sweeps carry SERSIC, so this one is
    a method a real search could use; the deflector window does not match it);
    ``to_true_deflector_mag_r``: (a diagnostic that reads the truth) hosts re-weighted in r to the second
    sky's true deflectors; ``beta_kernel``: each second-sky brick's lenses judged by a table whose injections
    are weighted by a Gaussian (σ 0.15) in host β around the brick's true β (the star fits recover it to a
    median 0.013, benchmarks/psf_stars.py); pulls binomial-only."""
    from lensaudit.selection.closure import closure_of, sky_lenses
    from lensaudit.stamps.labelled import labelled_stamps

    _, ctx, sample, index, hosts = run_hosts(run)
    pos = labelled_stamps(sample, index)
    pos = pos[pos.label == 1]

    size_bins = (*DEFLECTOR_BINS, ("shape_r", (0, 1 / 3, 2 / 3, 1)))
    w_size = deflector_weights(pos, hosts, size_bins)
    ratio = pd.Series(w_size / hosts.host_weight.to_numpy(float), index=hosts.galaxy_id).replace(
        np.inf, np.nan
    )
    inj = pd.read_parquet(ctx.path("selection", "injection_scores"))
    main = inj[inj.variant == "main"]
    gr = main.host_galaxy_id.map(sample.set_index("galaxy_id").g_r).to_numpy(float)
    # a diagnostic, not a method (it reads the truth): the hosts re-weighted in r magnitude to the second
    # sky's true deflectors, whose catalogued photometry carries 15% of their arc flux (sky.render._catalogue)
    hm = main.host_galaxy_id.map(sample.set_index("galaxy_id").mag_r).to_numpy(float)
    truth = pd.read_parquet(run / "population" / "sky" / "truth.parquet")
    defl = lenses[["galaxy_id"]].merge(truth[["galaxy_id", "mag_r_true", "shape_r_true"]], on="galaxy_id")
    hs = main.host_galaxy_id.map(sample.set_index("galaxy_id").shape_r).to_numpy(float)
    sn = main.host_galaxy_id.map(sample.set_index("galaxy_id").sersic).to_numpy(float)
    sn_lo, sn_hi = np.nanpercentile(pos.sersic.to_numpy(float), [5, 95])
    m_edges = np.array([15.0, 19.5, 20.0, 20.5, 21.0, 21.5, 22.0, 30.0])
    s_edges = np.array([0.0, 0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 10.0])
    weights = {
        "none": None,
        "to_true_deflector_mag_r": to_deflectors([hm], [defl.mag_r_true], [m_edges]),
        # the same diagnostic in size, and in r and size jointly (coarser bins)
        "to_true_deflector_shape_r": to_deflectors([hs], [defl.shape_r_true], [s_edges]),
        "to_true_deflector_mag_r_x_shape_r": to_deflectors(
            [hm, hs],
            [defl.mag_r_true, defl.shape_r_true],
            [np.array([15.0, 20.0, 20.75, 21.5, 30.0]), np.array([0.0, 0.5, 0.8, 1.2, 10.0])],
        ),
        "size": main.host_galaxy_id.map(ratio).fillna(0.0).to_numpy(float),
        "g_r>=1.0": (gr >= 1.0).astype(float),
        "g_r>=1.2": (gr >= 1.2).astype(float),
        "sersic_window": ((sn >= sn_lo) & (sn <= sn_hi)).astype(float),
    }
    demo = sky_lenses(ctx.path("sky", "truth"), ctx.path("evaluate", "scores"))

    def summary(c: dict) -> dict:
        return {
            "expected": c["total"]["expected"],
            "observed": c["total"]["observed"],
            "pull": c["total"]["pull"],
            "fraction_within_1sigma": c["fraction_within_1sigma"],
            "theta_pulls": [b["pull"] for b in c["theta_bins"]],
        }

    out: dict = {}
    for name, w in weights.items():
        sf = weighted_table(run, w)
        out[name] = {
            "demo_sky": summary(closure_of(sf, demo, op, "src_mag_r")),
            "second_population": summary(closure_of(sf, lenses, op, "src_mag_r")),
        }
    cond = pd.read_parquet(run / "population" / "sky" / "conditions.parquet")
    beta = lenses.brickname.map(cond.drop_duplicates("brickname").set_index("brickname").moffat_beta)
    p = np.full(len(lenses), np.nan)
    for b in np.unique(beta):
        sf = weighted_table(run, np.exp(-0.5 * ((main.psf_beta.to_numpy(float) - b) / 0.15) ** 2))
        m = (beta == b).to_numpy()
        p[m] = predict(sf, lenses[m], "src_mag_r")[0]
    det = (lenses.score >= op).to_numpy()
    te = lenses.theta_e_arcsec.to_numpy()
    ok = np.isfinite(p)
    pulls = []
    for lo, hi in zip(THETA_EDGES[:-1], THETA_EDGES[1:]):
        s = ok & (te >= lo) & ((te < hi) | (hi == THETA_EDGES[-1]))
        pulls.append(float((det[s].sum() - p[s].sum()) / np.sqrt((p[s] * (1 - p[s])).sum())))
    out["beta_kernel"] = {
        "second_population": {"expected": float(p[ok].sum()), "theta_pulls_binomial": pulls}
    }
    return out


def to_deflectors(host_cols: list, defl_cols: list, edges: list) -> np.ndarray:
    """Per injection, the density ratio of the true deflectors to the injections' hosts in the histogram of
    ``edges`` over the given columns (0 where no host falls in a bin)."""
    h = np.histogramdd(np.column_stack(host_cols), bins=edges)[0]
    t = np.histogramdd(np.column_stack([np.asarray(c, float) for c in defl_cols]), bins=edges)[0]
    r = np.where(h > 0, (t / t.sum()) / np.maximum(h / h.sum(), 1e-12), 0.0)
    idx = tuple(
        np.clip(np.searchsorted(e, np.asarray(c, float), side="right") - 1, 0, len(e) - 2)
        for c, e in zip(host_cols, edges)
    )
    return r[idx]


def per_host_table(run: Path, lenses: pd.DataFrame, det: np.ndarray, ids: np.ndarray) -> list[dict]:
    """Per host of the twins: how often the arcs it carried were detected at θE < 1.1″ and ≥ 2.3″, beside
    its catalogue properties (TYPE, r, g−r, shape_r, Sérsic n) and its injection weight."""
    _, _, sample, _, hosts = run_hosts(run)
    te = np.repeat(lenses.theta_e_arcsec.to_numpy(), ids.shape[1])
    d = pd.DataFrame({"host": ids.ravel(), "det": det.ravel(), "te": te})
    props = sample.set_index("galaxy_id")[["type", "mag_r", "g_r", "shape_r", "sersic"]]
    g = d.groupby("host").agg(
        n=("det", "size"),
        det_small=("det", lambda x: float(x[d.loc[x.index, "te"] < 1.1].mean())),
        det_large=("det", lambda x: float(x[d.loc[x.index, "te"] >= 2.3].mean())),
    )
    g = g.join(props).join(hosts.set_index("galaxy_id").host_weight)
    return g.sort_values("det_large").reset_index().round(3).to_dict("records")


def frac(k: float, n: float) -> dict:
    b = beta_posterior(k, n, levels=(0.68,))
    ci = [float(b["lo68"]), float(b["hi68"])]
    return {"k": float(k), "n": float(n), "fraction": float(k / n) if n else None, "ci68": ci}


def main(run: Path, k: int = 4, out: Path = OUT) -> dict:
    t0 = time.perf_counter()
    op = json.loads((run / "selection" / "closure.json").read_text())["threshold"]
    lenses = matched(run)
    sf = SelectionFunction.load(RunContext.from_run_dir(run).path("selection", "table_fits"))
    p, _ = predict(sf, lenses, "src_mag_r")
    sc, ids = twins(run, lenses, k)
    true_det = (lenses.score >= op).to_numpy()
    twin_det = (sc >= op).mean(axis=1)
    rows = []
    te = lenses.theta_e_arcsec.to_numpy()
    for lo, hi in zip(THETA_EDGES[:-1], THETA_EDGES[1:]):
        s = (te >= lo) & ((te < hi) | (hi == THETA_EDGES[-1])) & np.isfinite(p)
        n = int(s.sum())
        rows.append(
            {
                "theta_e": [float(lo), float(hi)],
                "n": n,
                "true_deflectors": frac(true_det[s].sum(), n),
                "our_hosts": frac(twin_det[s].sum(), n),
                "table": float(p[s].sum() / n) if n else None,
            }
        )
    hyp = host_hypotheses(run, lenses.drop(columns="o"), op)
    per_host = per_host_table(run, lenses, sc >= op, ids)
    res = {
        "host_hypotheses": hyp,
        "per_host": per_host,
        "run": str(run),
        "operating_threshold": op,
        "hosts_per_lens": k,
        "n_lenses": int(len(lenses)),
        "by_theta_e": rows,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.write_text(json.dumps(res, indent=2) + "\n")
    return res


if __name__ == "__main__":
    run = Path(sys.argv[1])
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    res = main(run, k, Path(sys.argv[3]) if len(sys.argv) > 3 else OUT)
    print(f"{'θE':>9} {'n':>4} {'true':>6} {'twins':>6} {'table':>6}")
    for r in res["by_theta_e"]:
        lo, hi = r["theta_e"]
        true, ours = r["true_deflectors"]["fraction"], r["our_hosts"]["fraction"]
        print(f"{lo:.1f}–{hi:.1f} {r['n']:4d} {true:6.2f} {ours:6.2f} {r['table']:6.2f}")
