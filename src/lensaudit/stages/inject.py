"""inject: simulated arcs (our engine) in real N1 test-split hosts over the θE × PSF × depth grid, then the
realism gates (GO/NO-GO). Batches are fixed by the config (deterministic per seed, cell, index and batch size),
written whole to ``inject/stamps.zarr`` with a done marker each, so a restart resumes.

Prior variants for the sensitivity run: ``main`` (the configured prior), ``bright`` and ``faint`` (the source
magnitude range shifted by ∓0.75 mag), and ``morphology`` (the other source model, Sersic ↔ clumpy: the
morphology bracket), each with half the injections per cell.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig
from lensaudit.gates import Gate
from lensaudit.lensing import inject as inject_arcs
from lensaudit.lensing import sample_systems
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.report.rgb import gallery
from lensaudit.selection.degrade import degrade
from lensaudit.selection.grid import axis, cells
from lensaudit.selection.hosts import assign_hosts, host_pool
from lensaudit.selection.realism import colour_gates, measured_arc, noise_gates, probe_gate, snr_gates
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen
from lensaudit.utils import atomic_write_json, stable_seed, write_parquet_atomic

NAME = "inject"
SECTIONS = ("inject",)
DEPENDS = ("cutouts", "sample", "train", "evaluate")
VARIANTS = {"main": 0.0, "bright": -0.75, "faint": 0.75, "morphology": 0.0}
OTHER_MODEL = {"sersic": "clumpy", "clumpy": "sersic"}
N_NOISE_BATCHES = 4  # the noise realism gate uses every pixel of the first batches


def _wanted(v: str, cfg: InjectConfig, prior_variants: int) -> bool:
    return v == "main" or (v == "morphology" and cfg.morphology_bracket) or (v in ("bright", "faint") and prior_variants > 0)


def prior(cfg: InjectConfig, shift: float = 0.0) -> dict:
    return {"src_mag_r": (cfg.src_mag_r_range[0] + shift, cfg.src_mag_r_range[1] + shift), "magnification": cfg.magnification_range,
            "src_reff": cfg.src_reff_arcsec_range, "src_n": cfg.src_n_range, "src_q": cfg.src_q_range,
            "lens_q": cfg.lens_q_range, "shear_max": cfg.shear_max}


def plan(cfg: InjectConfig, ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    sample = pd.read_parquet(ctx.run_dir / "sample" / "sample.parquet")
    stamps = pd.read_parquet(ctx.run_dir / "cutouts" / "stamps.parquet")
    grid = cells(axis(cfg.theta_e_grid), axis(cfg.psf_grid), axis(cfg.depth_grid))
    hosts, host_info = host_pool(sample, stamps, cfg.host_match)
    parts = [assign_hosts(grid, hosts, cfg.n_per_cell if v == "main" else max(1, cfg.n_per_cell // 2), cfg.psf_match_tol_arcsec,
                          cfg.depth_match_tol_mag, cfg.allow_degradation, ctx.seed, v) for v in VARIANTS if _wanted(v, cfg, ctx.config.selection.prior_variants)]
    plan_df = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else pd.DataFrame()
    return grid, plan_df, host_info


def _batch(cfg: InjectConfig, b: pd.DataFrame, store: StampStore, seed: int, k: int):
    img, iv, _ = store.read(b.host_row.to_numpy())
    rng = np.random.default_rng(stable_seed(seed, "inject", k))
    for i, r in enumerate(b.itertuples()):
        if r.degraded:
            img[i], iv[i] = degrade(img[i], iv[i], r.host_psf_r, r.host_depth_r, r.psf_cell, r.depth_cell, rng)
    scale = (b.psf_cell / b.host_psf_r).to_numpy()  # degraded hosts: all bands broadened alike
    psf = {"g": b.host_psf_g.to_numpy() * np.where(b.degraded, scale, 1), "r": np.where(b.degraded, b.psf_cell, b.host_psf_r),
           "z": b.host_psf_z.to_numpy() * np.where(b.degraded, scale, 1)}
    shift = b.variant.map(VARIANTS).to_numpy()
    models = np.where(b.variant.to_numpy() == "morphology", OTHER_MODEL[cfg.source_model], cfg.source_model)
    systems = sample_systems(len(b), b.theta_e.to_numpy(), prior(cfg), rng, psf, 3.5, models)
    for band in "grz":
        systems.src_mag[band] = systems.src_mag[band] + np.asarray(shift)
    stamps, info = inject_arcs(img, iv, systems, rng=rng, noise_model=cfg.noise_model, supersample=cfg.supersample)
    rec = b.assign(source_model=models, src_mag_r=systems.src_mag["r"].numpy(), src_reff=systems.src_reff.numpy(), src_n=systems.src_n.numpy(),
                   magnification=info["magnification"], arc_snr=info["arc_snr"], psf_r=psf["r"])
    return stamps, iv, info, rec, img


def run(cfg: InjectConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    grid, pl, host_info = plan(cfg, ctx)
    if pl.empty:
        return Manifest(counts={"injections": 0}, gates=[Gate.check("hosts_available", False, message=f"no N1 test hosts match any cell ({host_info})")],
                        extra={"verdict": "NO-GO"})
    bs = cfg.batch_size
    zpath = out / "stamps.zarr"
    store_out = StampStore.open(zpath, mode="r+") if (zpath / "zarr.json").is_file() else StampStore.create(zpath, len(pl), shard_size=bs)
    hosts = StampStore.open(ctx.run_dir / "cutouts" / "stamps.zarr")
    (out / "_batches").mkdir(exist_ok=True)
    noise_batches: dict[int, tuple] = {}  # residual statistics from the first N_NOISE_BATCHES batches
    with ctx.progress(len(pl), f"inject: {len(pl)} injections in {pl.cell.nunique()} cells") as bar:
        for k, a in enumerate(range(0, len(pl), bs)):
            marker = out / "_batches" / f"{k:05d}.parquet"
            if marker.is_file():
                bar.advance(min(bs, len(pl) - a))
                continue
            stamps, iv, info, rec, host_img = _batch(cfg, pl.iloc[a:a + bs], hosts, ctx.seed, k)
            store_out.write(a, stamps, iv, np.zeros(stamps.shape[:1] + stamps.shape[2:], np.int32))
            m = measured_arc(stamps)
            rec = rec.assign(meas_snr=m["snr"], meas_g_r=m["g_r"], meas_r_z=m["r_z"], arc_g_r=-2.5 * np.log10(info["noiseless_arc"][:, 0].sum((1, 2)) / info["noiseless_arc"][:, 1].sum((1, 2))),
                             arc_r_z=-2.5 * np.log10(info["noiseless_arc"][:, 1].sum((1, 2)) / info["noiseless_arc"][:, 2].sum((1, 2))))
            write_parquet_atomic(rec, marker)
            if k < N_NOISE_BATCHES:
                noise_batches[k] = _noise_terms(stamps, info, host_img)
            bar.advance(len(rec))
    for k, a in enumerate(range(0, min(len(pl), N_NOISE_BATCHES * bs), bs)):
        if k not in noise_batches:  # resumed run: these batches were written before the restart; redo them (deterministic)
            stamps, _, info, _, host_img = _batch(cfg, pl.iloc[a:a + bs], hosts, ctx.seed, k)
            noise_batches[k] = _noise_terms(stamps, info, host_img)
    noise = tuple(np.concatenate([noise_batches[k][j] for k in sorted(noise_batches)]) for j in range(3)) if noise_batches else None
    inj = pd.concat([pd.read_parquet(p) for p in sorted((out / "_batches").glob("*.parquet"))], ignore_index=True)
    inj.insert(0, "row", np.arange(len(inj)))
    write_parquet_atomic(inj, out / "injections.parquet")
    gates, realism = _realism(cfg, ctx, inj, store_out, noise, out)
    verdict = "NO-GO" if any(g.status == "fail" for g in gates) else "GO"
    realism["verdict"] = verdict
    n_cells = len(grid)
    filled = inj[inj.variant == "main"].cell.nunique()
    gates.append(Gate(name="cells_with_hosts", value=filled / n_cells, warn=0.95, fail=0.5, higher_is_better=True, blocking=False,
                      message=f"{filled}/{n_cells} cells; degraded hosts in {inj[inj.degraded].cell.nunique()} (predecessor: 43% empty)"))
    gates.append(Gate(name="host_pool_size", value=host_info["hosts"], warn=50, fail=10, higher_is_better=True, blocking=False,
                      message=f"{host_info['hosts']} of {host_info['n1_test']} N1 test negatives ({host_info['match']} hosts"
                              + (f": types {host_info['window']['types']}, r {host_info['window']['mag_r'][0]:.2f}–{host_info['window']['mag_r'][1]:.2f}, "
                                 f"g−r {host_info['window']['g_r'][0]:.2f}–{host_info['window']['g_r'][1]:.2f})" if "window" in host_info else ")")))
    realism["hosts"] = host_info
    atomic_write_json(out / "realism.json", realism)
    return Manifest(counts={"injections": len(inj), "cells": n_cells, "cells_filled": int(filled),
                            "degraded_injections": int(inj.degraded.sum()), "host_pool": int(host_info["hosts"])},
                    gates=gates, outputs=["injections.parquet", "stamps.zarr", "realism.json", "realism_panel.png"],
                    extra={"verdict": verdict})


def _noise_terms(stamps: np.ndarray, info: dict, host_img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residual = stamp − host − noiseless arc, added σ, stamp) for the noise realism gate."""
    return stamps - host_img - info["noiseless_arc"], info["added_noise_sigma"], stamps


def condition_weights(main: pd.DataFrame, pos: pd.DataFrame) -> np.ndarray:
    """Sampling weights over the main injections that reproduce the real positives' (PSF, depth) distribution:
    each positive votes for its nearest grid (PSF, depth) cell, shared among that cell's injections. The realism
    gates then compare like with like ("matched in conditions where possible"); falls back to uniform weights when
    no positive lies near a filled cell."""
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


def _realism(cfg: InjectConfig, ctx: RunContext, inj: pd.DataFrame, store: StampStore, noise: tuple | None, out):
    sample = pd.read_parquet(ctx.run_dir / "sample" / "sample.parquet")
    stamps = pd.read_parquet(ctx.run_dir / "cutouts" / "stamps.parquet")
    pos = stamps[stamps.quality_ok][["row", "galaxy_id"]].merge(sample[sample.label == 1], on="galaxy_id").sort_values("row")
    hosts = StampStore.open(ctx.run_dir / "cutouts" / "stamps.zarr")
    real_img = hosts.read(pos.row.to_numpy())[0]
    real = measured_arc(real_img)
    main = inj[inj.variant == "main"]
    rng = np.random.default_rng(stable_seed(ctx.seed, "probe"))
    w = condition_weights(main, pos)
    pick = np.sort(rng.choice(main.row.to_numpy(), size=min(int((w > 0).sum()), max(200, 3 * len(pos))), replace=False, p=w))
    inj_img = store.read(pick)[0]
    inj_m = measured_arc(inj_img)
    gates = snr_gates(inj_m["snr"], real["snr"], cfg.snr_ratio_bounds)
    gates += colour_gates(inj_m, real, cfg.colour_tol_mag)
    gates += noise_gates(*noise) if noise else []
    model = load_frozen(ctx.run_dir / "train", ctx.config.train.device)
    by_row = main.set_index("row")
    hosts_of_pick = by_row.loc[pick, "host_galaxy_id"].to_numpy()
    g, probe = probe_gate(model.features(real_img), model.features(inj_img), cfg.probe_warn, cfg.probe_fail, ctx.seed,
                          groups_real=pos.galaxy_id.to_numpy(), groups_inj=hosts_of_pick)
    gates.append(g)
    k = min(8, len(pos))
    idx = np.sort(rng.choice(len(inj_img), size=k, replace=False)) if k else []
    panel = np.concatenate([real_img[:k], inj_img[idx]]) if k else np.zeros((0, 3, 101, 101))
    titles = [f"real {gid}" for gid in pos.galaxy_id[:k]] + [f"inj θE={t:.2f}″ snr={s:.1f}" for t, s in zip(by_row.loc[pick[idx], "theta_e"], by_row.loc[pick[idx], "arc_snr"])]
    gallery(panel, titles, out / "realism_panel.png", ncol=max(k, 1), title="real positives (top) vs matched injections (bottom)")
    realism = {"gates": [x.to_dict() for x in gates], "probe": probe, "n_real": len(pos), "n_inj_compared": len(pick),
               "matching": "injections drawn with weights reproducing the real positives' (PSF, depth) cells",
               "real_snr_percentiles": np.nanpercentile(real["snr"], [10, 50, 90]).tolist() if len(pos) else None,
               "inj_snr_percentiles": np.nanpercentile(inj_m["snr"], [10, 50, 90]).tolist()}
    return gates, realism
