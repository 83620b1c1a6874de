"""Why does the closure fail? Swap one ingredient at a time (issue 15, item 5).

The closure test compares the finder's detections of a synthetic sky's true lenses with the selection
function measured by our injections. When it fails, either the *hosts* differ (our deflector-like N1 galaxies
vs the sky's lens deflectors) or the *arcs* differ (our engine and source prior vs the sky's
lenstronomy-rendered multi-clump sources). This diagnosis renders the sky's own lens model
(``sky.model._lens``: its source population, geometry and colours, rendered by
``sky.render.render_lensed_source`` with lenstronomy) into our injection hosts, adds the same arc noise our
engine adds, scores them with the frozen finder at the operating threshold, and compares the detected
fraction, in bins of the lensed arc's r magnitude, with (i) the sky's true lenses and (ii) our main
injections. Sky-style arcs in our hosts detected like the true lenses → the gap is in our arcs; detected like
our injections → it is in the hosts. A second part re-weights the hosts to the known lenses' deflectors
(TYPE, r and g−r of the positives) and recomputes the closure of the m_src table: it measures what
``inject.host_weighting`` does, so it runs only on a run made with ``--set inject.host_weighting=false``.
A third part, the controlled closure, renders sky-model lenses with the demo sky's sources and with the
second population's (``population.src_mag_offset``, ``population.src_size_scale``) into our hosts and judges
them with the run's tables exactly like the closure, θE bin by θE bin: the true deflectors swapped for our
hosts, everything else equal.

    python benchmarks/closure_diagnosis.py runs/demo [N [OUT]]  → OUT (default results/closure_diagnosis.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lensaudit.config import load_config
from lensaudit.lensing.render import arc_noise_variance, noise_sigma
from lensaudit.run import RunContext
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.closure import MAG_OF_AXIS, closure_of, sky_lenses
from lensaudit.selection.completeness import completeness_table4
from lensaudit.selection.conditional import mag_edges
from lensaudit.selection.grid import grid_of
from lensaudit.selection.hosts import deflector_weights, host_pool
from lensaudit.selection.table import SelectionFunction
from lensaudit.sky.model import Reference, SourceVariant, _lens
from lensaudit.sky.render import ARC_STAMP, moffat_kernel, render_lensed_source
from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen

OUT = Path(__file__).parent / "results" / "closure_diagnosis.json"
EDGES = np.array([18.0, 20.0, 21.0, 22.0, 23.0, 26.0])


def run_hosts(run: Path) -> tuple[Any, RunContext, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(config, context, sample, cutouts index, the injection host pool) of a finished run."""
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    sample = pd.read_parquet(ctx.path("sample", "sample"))
    index = pd.read_parquet(ctx.path("cutouts", "index"))
    hosts, _ = host_pool(sample, index, cfg.inject.host_match, cfg.inject.host_splits)
    return cfg, ctx, sample, index, hosts


def sky_style_arcs(run: Path, n: int, seed: int = 0, src: SourceVariant | None = None) -> pd.DataFrame:
    """``n`` sky-model lenses (sources of variant ``src``; None: the demo sky's) rendered into deflector-like
    hosts of the run, scored by its finder, with the closure columns (θE, the host's PSF and depth, source
    and arc magnitudes, ``score``)."""
    cfg, ctx, _, _, hosts = run_hosts(run)
    store = StampStore.open(ctx.path("cutouts", "stamps"))
    model = load_frozen(ctx.path("train", "best").parent, "cpu")
    rng = np.random.default_rng(seed)
    ref = Reference.load()
    pick = rng.integers(0, len(hosts), n)
    img, iv, _ = store.read(hosts.row.to_numpy()[pick])
    size, pad = img.shape[-1], (img.shape[-1] - ARC_STAMP) // 2
    arcs = np.zeros(img.shape, np.float64)
    rows = []
    for i in range(n):
        h = hosts.iloc[pick[i]]
        o = _lens((0.0, 0.0), rng, ref, cfg.sky.theta_e_range_arcsec, "", "", "", src=src)
        for k, band in enumerate("grz"):
            kern = moffat_kernel(float(h[f"psfsize_{band}"]), 3.5)
            arcs[i, k, pad : pad + ARC_STAMP, pad : pad + ARC_STAMP] = render_lensed_source(
                o, band, kern, 0, 0
            )
        flux_r = arcs[i, 1].sum()
        rows.append(
            {
                "theta_e_arcsec": o.params["theta_e"],
                "psf_fwhm_r": float(h.psfsize_r),
                "psfdepth_mag_r": float(h.psfdepth_mag_r),
                "src_mag_r": o.params["src_mag_r"],
                "src_rhalf": half_light_radius(o.params),
                "arc_mag_r": 22.5 - 2.5 * np.log10(flux_r) if flux_r > 0 else np.nan,
            }
        )
    sig = noise_sigma(img, iv, "invvar")
    noise = rng.standard_normal(arcs.shape) * np.sqrt(arc_noise_variance(arcs, sig))
    stamps = (img + arcs + noise).astype(np.float32)
    assert stamps.shape[-1] == size
    torch.set_num_threads(2)
    score = np.asarray(model.score(stamps), float)
    return pd.DataFrame(rows).assign(score=score)


def by_arc_mag(mag: np.ndarray, det: np.ndarray) -> list[dict]:
    b = np.digitize(mag, EDGES) - 1
    out = []
    for j in range(len(EDGES) - 1):
        s = b == j
        k, m = int(det[s].sum()), int(s.sum())
        post = beta_posterior(k, m, "jeffreys", (0.68,))
        out.append(
            {
                "arc_mag_lo": float(EDGES[j]),
                "arc_mag_hi": float(EDGES[j + 1]),
                "n": m,
                "detected": k,
                "fraction": k / m if m else None,
                "ci68": [float(post["lo68"]), float(post["hi68"])] if m else None,
            }
        )
    return out


def host_weights(sample: pd.DataFrame, index: pd.DataFrame, hosts: pd.DataFrame) -> pd.Series:
    """Per host galaxy id: :func:`lensaudit.selection.hosts.deflector_weights` (the density ratio of the
    positives to the hosts in TYPE, r quartile and g−r tercile), whatever ``inject.host_weighting`` says."""
    q = labelled_stamps(sample, index)
    return pd.Series(deflector_weights(q[q.label == 1], hosts), index=hosts.galaxy_id.to_numpy())


def weighted_table(run: Path, w: np.ndarray | None, axis: str = "src_mag") -> SelectionFunction:
    """The run's 4-D table on ``axis`` (``src_mag``, ``arc_mag`` or ``arc_snr``: log10 of the annulus SNR in
    0.3 dex bins) from its main injections, each weighted by ``w`` (None: unweighted): a cell's k/n becomes
    its weighted detected fraction and its variance p(1 − p)/n_eff (Kish's effective number)."""
    cfg = load_config(run / "config.yaml", [])
    inj = pd.read_parquet(RunContext.from_run_dir(run).path("selection", "injection_scores"))
    main = inj[inj.variant == "main"]
    main = main.assign(
        src_mag=main.src_mag_r, arc_mag=main.arc_mag_r, arc_snr=np.log10(np.clip(main.arc_snr, 1e-3, None))
    )
    if axis == "arc_snr":
        lo = np.floor(main.arc_snr.quantile(0.002) / 0.3) * 0.3
        edges = np.round(np.arange(lo, main.arc_snr.max() + 0.3, 0.3), 6)
    else:
        edges = mag_edges(cfg.inject, cfg.selection, axis, main)
    grid, _ = grid_of(cfg.inject)
    t = completeness_table4(grid, main, axis, edges, cfg.selection, cfg.selection.n_min_mag_bin)
    if w is not None:
        b = np.clip(np.searchsorted(edges, main[axis].to_numpy(), side="right") - 1, 0, len(edges) - 2)
        g = (
            main.assign(b=b, w=w, wd=w * main.detected, w2=w**2)
            .groupby(["cell", "b"])
            .agg(W=("w", "sum"), K=("wd", "sum"), W2=("w2", "sum"))
        )
        at = pd.MultiIndex.from_arrays([t.cell, t.i_mag])
        frac, n_eff = (g.K / g.W).reindex(at).to_numpy(), (g.W**2 / g.W2).reindex(at).to_numpy()
        ok = np.isfinite(frac)
        t = t.assign(k=t.k.astype(float))
        t.loc[ok, "k"] = frac[ok] * t.n.to_numpy()[ok]
        t.loc[ok, "c_var"] = frac[ok] * (1 - frac[ok]) / np.maximum(n_eff[ok], 1.0)
    return SelectionFunction(t, {"AXIS4": axis})


def main_injections(run: Path) -> pd.DataFrame:
    inj = pd.read_parquet(RunContext.from_run_dir(run).path("selection", "injection_scores"))
    return inj[inj.variant == "main"]


def host_weighted_closure(run: Path, lz: pd.DataFrame, op: float) -> dict:
    """Closure (rung b, m_src) with the main injections weighted by :func:`host_weights`, against the
    unweighted table."""
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    sample, index = (
        pd.read_parquet(ctx.path("sample", "sample")),
        pd.read_parquet(ctx.path("cutouts", "index")),
    )
    hosts, _ = host_pool(sample, index, cfg.inject.host_match, cfg.inject.host_splits)
    hw = host_weights(sample, index, hosts)
    w = hw.reindex(main_injections(run).host_galaxy_id).fillna(0.0).to_numpy()
    return {
        "unweighted": closure_of(weighted_table(run, None), lz, op, "src_mag_r")["total"],
        "host_weighted": closure_of(weighted_table(run, w), lz, op, "src_mag_r")["total"],
        "host_weights_n_eff": float(hw.sum() ** 2 / (hw**2).sum()),
    }


def half_light_radius(params: dict, pix: float = 0.01, half: float = 2.0) -> float:
    """The unlensed source's circular half-light radius (arcsec) about its light centroid, from the sky's
    own multi-component Sérsic light model on a ``pix`` grid."""
    from lenstronomy.LightModel.light_model import LightModel

    comps = params["components"]
    light = LightModel(["SERSIC_ELLIPSE"] * len(comps))
    ks = [
        {"amp": 1.0, "R_sersic": c["reff"], "n_sersic": c["n"], "e1": c["e1"], "e2": c["e2"],
         "center_x": c["dx"], "center_y": c["dy"]}
        for c in comps
    ]  # fmt: skip
    for k, c, u in zip(ks, comps, light.total_flux(ks, norm=False)):
        k["amp"] = c["frac"] / u
    g = np.arange(-half, half, pix) + pix / 2
    x, y = (a.ravel() for a in np.meshgrid(g, g))
    f = np.asarray(light.surface_brightness(x, y, ks), float)
    f /= f.sum()
    r = np.hypot(x - (f * x).sum(), y - (f * y).sum())
    o = np.argsort(r)
    return float(r[o][np.searchsorted(np.cumsum(f[o]), 0.5)])


def size_weighted(run: Path, lz: pd.DataFrame, op: float) -> dict:
    """The controlled closure of ``lz`` with the main injections re-weighted to ``lz``'s source half-light
    radii (a Gaussian KDE over the injection prior's uniform r_eff): does the source size carry the gap?"""
    from scipy.stats import gaussian_kde

    w = gaussian_kde(lz.src_rhalf.to_numpy())(main_injections(run).src_reff.to_numpy())
    w = w / w.mean()
    n_eff = float(w.sum() ** 2 / (w**2).sum() / len(w))
    out: dict = {"src_rhalf_median": float(lz.src_rhalf.median()), "n_eff_over_n": n_eff}
    for axis in ("src_mag", "arc_mag"):
        for lab, ww in (("unweighted", None), ("size_weighted", w)):
            c = closure_of(weighted_table(run, ww, axis), lz, op, MAG_OF_AXIS[axis])
            out[f"{axis}_{lab}"] = {"total": c["total"], "chi2_pvalue": c["chi2_pvalue"]}
    return out


def snr_axis(run: Path, sets: dict[str, pd.DataFrame], op: float) -> dict:
    """The closure of true-lens ``sets`` against the 4-D table on log10 arc annulus SNR (the same estimator
    as the sky's truth), the third candidate axis."""
    sf = weighted_table(run, None, "arc_snr")
    out = {}
    for k, lz in sets.items():
        c = closure_of(sf, lz.assign(lsnr=np.log10(np.clip(lz.arc_snr, 1e-3, None))), op, "lsnr")
        out[k] = {
            "total": c["total"],
            "n_excluded": c["n_excluded"],
            "chi2_pvalue": c["chi2_pvalue"],
            "fraction_within_1sigma": c["fraction_within_1sigma"],
            "theta_pulls": [b["pull"] for b in c["theta_bins"]],
        }
    return out


def controlled(run: Path, lz: pd.DataFrame, op: float) -> dict:
    """The closure of sky-model lenses in our hosts (``lz``, from :func:`sky_style_arcs`) against the run's
    written tables: the same test as the closure, with the true deflectors swapped for our hosts. Where it
    fails like the sky's closure, the gap is in the arcs; where it closes while the sky's fails (or the
    reverse), in the hosts."""
    ctx = RunContext.from_run_dir(run)
    out = {}
    for path in (ctx.path("selection", "table"), ctx.path("selection", "table_alt")):
        sf = SelectionFunction.load(path)
        c = closure_of(sf, lz, op, MAG_OF_AXIS[str(sf.mag_axis)])
        out[str(sf.mag_axis)] = {
            "total": c["total"],
            "chi2_pvalue": c["chi2_pvalue"],
            "fraction_within_1sigma": c["fraction_within_1sigma"],
            "theta_bins": [
                {k: b[k] for k in ("lo", "hi", "n", "expected", "observed", "pull")} for b in c["theta_bins"]
            ],
        }
    return out


def main(run: Path, n: int, out: Path = OUT) -> dict:
    t0 = time.perf_counter()
    ctx = RunContext.from_run_dir(run)
    op = float(json.loads(ctx.path("evaluate", "metrics").read_text())["operating_threshold"])
    sky = sky_style_arcs(run, n)
    cfg = load_config(run / "config.yaml", [])
    pop = SourceVariant(cfg.population.src_mag_offset, cfg.population.src_size_scale)
    pop_arcs = sky_style_arcs(run, n, seed=1, src=pop)
    lz = sky_lenses(ctx.path("sky", "truth"), ctx.path("evaluate", "scores"))
    snr_sets = {"demo sky": lz}
    if ctx.path("population", "lenses").is_file():
        snr_sets["second population"] = pd.read_parquet(ctx.path("population", "lenses"))
    inj = pd.read_parquet(ctx.path("selection", "injection_scores"))
    main_inj = inj[inj.variant == "main"]
    sets = {
        "true lenses of the sky (its deflectors, its arcs)": (
            lz.arc_mag_r.to_numpy(),
            lz.score.to_numpy() >= op,
        ),
        "sky-model arcs (lenstronomy) in our hosts": (sky.arc_mag_r.to_numpy(), sky.score.to_numpy() >= op),
        "our injections (our engine and prior) in our hosts": (
            main_inj.arc_mag_r.to_numpy(),
            main_inj.detected.to_numpy(bool),
        ),
    }
    res = {
        "run": str(run),
        "operating_threshold": op,
        "n_sky_style": n,
        "by_arc_mag": {k: by_arc_mag(m, d) for k, (m, d) in sets.items()},
        "host_weighting": (
            {"skipped": "the run's injections are already host-weighted (inject.host_weighting=true)"}
            if cfg.inject.host_weighting
            else host_weighted_closure(run, lz, op)
        ),
        "controlled": {
            "what": "sky-model lenses rendered into our deflector-like hosts (true deflectors swapped for "
            "our hosts), judged by the run's tables like the closure",
            "demo_sources": controlled(run, sky, op),
            f"population_sources (r +{pop.mag_offset:g} mag, size x{pop.size_scale:g})": controlled(
                run, pop_arcs, op
            ),
            "size_reweighting": {
                "demo_sources": size_weighted(run, sky, op),
                "population_sources": size_weighted(run, pop_arcs, op),
            },
        },
        "arc_snr_axis": snr_axis(run, snr_sets, op),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    head = f"{'arc r mag':>10} " + " ".join(f"{k[:26]:>28}" for k in sets)
    print(head)
    for j in range(len(EDGES) - 1):
        cells = []
        for k in sets:
            r = res["by_arc_mag"][k][j]
            cells.append(
                f"{r['detected']:>4}/{r['n']:<5} {r['fraction'] or 0:5.2f}".rjust(28)
                if r["n"]
                else "—".rjust(28)
            )
        print(f"{EDGES[j]:>4.0f}–{EDGES[j + 1]:<4.0f} " + " ".join(cells))
    hw = res["host_weighting"]
    if "skipped" not in hw:
        print(
            f"closure (m_src): unweighted hosts pull {hw['unweighted']['pull']:+.2f}, hosts weighted to the "
            f"positives' (TYPE, r, g−r) pull {hw['host_weighted']['pull']:+.2f}"
        )
    for k, v in res["controlled"].items():
        if not isinstance(v, dict) or k == "size_reweighting":
            continue
        for ax, c in v.items():
            t = c["total"]
            pulls = " ".join(f"{b['pull']:+.1f}" for b in c["theta_bins"])
            print(f"controlled, {k[:40]}, {ax}: pull {t['pull']:+.2f}; per θE bin {pulls}")
    return res


if __name__ == "__main__":
    main(
        Path(sys.argv[1] if len(sys.argv) > 1 else "runs/demo"),
        int(sys.argv[2]) if len(sys.argv) > 2 else 400,
        Path(sys.argv[3]) if len(sys.argv) > 3 else OUT,
    )
