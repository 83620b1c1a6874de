"""Injections: the plan (hosts per grid cell and prior variant), the source prior, the rendering of one batch
and the resumable batch loop that fills ``inject/stamps.zarr``.

Batches are fixed by the config (deterministic per seed, cell, index and batch size): batch ``k`` covers
plan rows ``[k·batch_size, (k+1)·batch_size)`` and draws its arcs' noise from ``stable_seed(seed, "inject",
k)``, so a restarted run renders the same stamps. Each finished batch is written whole to the store, then
recorded in a :class:`~lensaudit.run.shards.ShardLog` (key ``f"{k:05d}"``, the batch's record table) — a
restart skips it.

Variants: ``main`` (the configured prior into the configured hosts), ``morphology`` (the other source model,
Sersic ↔ clumpy: the morphology bracket) and ``allhosts`` (the main prior into every N1 host of the host
splits, not only deflector-like ones: the closure ladder's host term), the brackets with
``inject.bracket_fraction`` × ``n_per_cell`` injections per cell. Source-prior sensitivity needs no
injections: the selection function is conditioned on the source magnitude and re-weighted
(:meth:`lensaudit.selection.table.SelectionFunction.marginalise`).

Paired variants re-render the first ``inject.paired_fraction`` × ``n_per_cell`` main injections of each cell
with one thing changed — the same host (degraded identically), the same lens and source — so that their
completeness shift is measured pair by pair, free of the sampling noise of independent draws:
``psf_beta_<β>`` (the Moffat β of ``inject.psf_beta_bracket`` instead of ``inject.psf_beta``: the PSF-wing
bracket) and ``no_inner`` (the counter-image inside 0.5 θE suppressed: the inner-image ablation). ``stress``
is the SLACS/BELLS-like stress set (:data:`STRESS_PRIOR`, ``inject.stress_n`` injections off the grid).

Every system is drawn from its own seed, ``stable_seed(seed, "system", draw, cell, index)`` (``draw`` is the
variant whose system a paired variant repeats), so a row's lens and source do not depend on the batching.

Every injection records every drawn parameter (lens, shear, source, PSF; :data:`PARAMETER_COLUMNS`,
documented in docs/lensing.md), its unlensed source r magnitude and the lensed arc's r magnitude
(``arc_mag_r`` = ``src_mag_r`` − 2.5 log10 μ, μ the rendered total magnification: the two candidate 4th
axes of the selection function), and the point-source images of the source centre (positions and signed
magnifications, :func:`lensaudit.lensing.images.image_positions`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lensaudit.config import InjectConfig
from lensaudit.lensing import LensSystems, sample_systems
from lensaudit.lensing import inject as inject_arcs
from lensaudit.lensing.images import image_positions
from lensaudit.run.shards import ShardLog
from lensaudit.selection.degrade import degrade
from lensaudit.selection.grid import grid_of
from lensaudit.selection.hosts import assign_hosts, host_columns, host_pool, weighted_pick
from lensaudit.selection.realism import measured_arc, torch_threads
from lensaudit.stamps.store import StampStore
from lensaudit.utils import hash_unit_interval, stable_seed

BRACKETS = ("main", "morphology", "allhosts")
OTHER_MODEL = {"sersic": "clumpy", "clumpy": "sersic"}

#: the SLACS/BELLS-like stress set: small Einstein radii (SLACS, Bolton et al. 2008; BELLS, Brownstein et al.
#: 2012: θE ≈ 0.6–1.8″), bright compact sources (unlensed r 21–24, r_eff 0.05–0.2″) behind the most massive,
#: reddest deflector-like hosts (the brightest quarter in r and the redder half in g−r of the host pool) —
#: where ground-based finders are known to lose lenses to the seeing and the deflector's light
STRESS_PRIOR: dict[str, Any] = {
    "theta_e": (0.6, 1.8),
    "src_mag_r": (21.0, 24.0),
    "magnification": (5.0, 30.0),
    "src_reff": (0.05, 0.2),
    "src_n": (0.5, 2.0),
    "src_q": (0.4, 1.0),
    "lens_q": (0.6, 1.0),
    "shear_max": 0.05,
}

#: the drawn parameters ``injections.parquet`` records (beside the plan's cell, host and θE columns)
PARAMETER_COLUMNS = (
    "lens_q",
    "lens_phi",
    "gamma1",
    "gamma2",
    "lens_x0",
    "lens_y0",
    "src_mag_g",
    "src_mag_r",
    "src_mag_z",
    "src_reff",
    "src_n",
    "src_q",
    "src_phi",
    "src_x",
    "src_y",
    "n_clumps",
    "clump_frac",
    "psf_g",
    "psf_r",
    "psf_z",
    "psf_beta",
)


def beta_variant(b: float) -> str:
    """The name of the paired PSF-β variant at Moffat β ``b``.

    >>> beta_variant(2.5), beta_variant(4.0)
    ('psf_beta_2.5', 'psf_beta_4')
    """
    return f"psf_beta_{b:g}"


def paired_variants(cfg: InjectConfig) -> list[str]:
    """The paired variants the config asks for, in plan order."""
    return [beta_variant(b) for b in cfg.psf_beta_bracket] + (
        ["no_inner"] if cfg.inner_image_ablation else []
    )


def wanted(v: str, cfg: InjectConfig) -> bool:
    """Whether bracket ``v`` is injected: ``main`` always, ``morphology`` with the morphology bracket,
    ``allhosts`` with the host bracket when the main hosts are deflector-like (else it would repeat main)."""
    return (
        v == "main"
        or (v == "morphology" and cfg.morphology_bracket)
        or (v == "allhosts" and cfg.host_bracket and cfg.host_match != "all")
    )


def per_cell(v: str, cfg: InjectConfig) -> int:
    """Injections per cell of variant ``v`` (a paired variant: of the main injections it repeats)."""
    if v == "main":
        return cfg.n_per_cell
    frac = cfg.paired_fraction if v in paired_variants(cfg) else cfg.bracket_fraction
    return max(1, int(round(cfg.n_per_cell * frac)))


def prior(cfg: InjectConfig) -> dict:
    """The source/lens prior ranges for :func:`lensaudit.lensing.sample_systems`."""
    return {
        "src_mag_r": cfg.src_mag_r_range,
        "magnification": cfg.magnification_range,
        "src_reff": cfg.src_reff_arcsec_range,
        "src_n": cfg.src_n_range,
        "src_q": cfg.src_q_range,
        "lens_q": cfg.lens_q_range,
        "shear_max": cfg.shear_max,
    }


def with_host_beta(hosts: pd.DataFrame, betas: pd.DataFrame | None, default: float) -> pd.DataFrame:
    """``hosts`` with ``psf_beta``: their ``brickname``'s Moffat β from ``betas``
    (:func:`~lensaudit.selection.psfshape.brick_betas`; None or a brick it lacks: ``default``)."""
    if betas is None or hosts.empty:
        return hosts.assign(psf_beta=float(default))
    b = hosts.brickname.astype(str).map(betas.set_index("brickname").psf_beta)
    return hosts.assign(psf_beta=b.fillna(default).to_numpy(float))


def plan(
    cfg: InjectConfig,
    sample: pd.DataFrame,
    stamps: pd.DataFrame,
    seed: int,
    betas: pd.DataFrame | None = None,
    exclude: Collection[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(grid cells, one plan row per injection — hosts chosen per variant and cell —, host-pool info).

    ``sample`` is ``sample.parquet``, ``stamps`` the cutouts index ``stamps.parquet``; ``betas`` the host
    bricks' Moffat β (None: ``inject.psf_beta`` for all); ``exclude``: galaxies never used as hosts (the
    finder's own candidates, :func:`~lensaudit.selection.hosts.finder_candidates`); the plan is empty when no
    host matches any cell.
    Grid and stress rows render at their host's β; the paired β variants at the bracket's."""
    grid, _ = grid_of(cfg)
    hosts, host_info = host_pool(sample, stamps, cfg.host_match, cfg.host_splits, exclude, cfg.deflector_bins)
    hosts = with_host_beta(hosts, betas, cfg.psf_beta)
    if not cfg.host_weighting:
        hosts = hosts.assign(host_weight=1.0)
        host_info.pop("hosts_effective", None)
    parts = []
    for v in BRACKETS:
        if not wanted(v, cfg):
            continue
        pool = hosts
        if v == "allhosts":
            pool, all_info = host_pool(sample, stamps, "all", cfg.host_splits, exclude)
            pool = with_host_beta(pool, betas, cfg.psf_beta)
            host_info["hosts_all"] = all_info["hosts"]
        a = assign_hosts(
            grid,
            pool,
            per_cell(v, cfg),
            cfg.psf_match_tol_arcsec,
            cfg.depth_match_tol_mag,
            cfg.allow_degradation,
            seed,
            v,
        )
        parts.append(a.assign(draw=v, suppress_inner=False) if len(a) else a)
    main = parts[0]
    if not len(main):  # no host for any grid cell: no plan at all, and the hosts_available gate says so
        return grid, pd.DataFrame(), host_info
    for v in paired_variants(cfg):
        rep = main[main["index"] < per_cell(v, cfg)].assign(variant=v)
        parts.append(
            rep.assign(suppress_inner=True) if v == "no_inner" else rep.assign(psf_beta=float(v[9:]))
        )
    if cfg.stress_n and len(hosts):
        parts.append(stress_plan(cfg, hosts, seed))
    plan_df = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else pd.DataFrame()
    )
    return grid, plan_df, host_info


def stress_plan(cfg: InjectConfig, hosts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``inject.stress_n`` plan rows of the SLACS/BELLS-like stress set: hosts drawn (weighted as the main
    ones) from the brightest quarter in r and the redder half in g−r of the host pool, each at its own PSF and
    depth (never degraded), θE uniform in :data:`STRESS_PRIOR`; ``cell`` is −1 (off the grid)."""
    massive = hosts[
        (hosts.mag_r <= np.nanquantile(hosts.mag_r, 0.25)) & (hosts.g_r >= np.nanquantile(hosts.g_r, 0.5))
    ]
    massive = massive if len(massive) else hosts
    n = cfg.stress_n
    keys = [f"stress|{j}" for j in range(n)]
    h = weighted_pick(massive, keys, seed)
    lo, hi = STRESS_PRIOR["theta_e"]
    return pd.DataFrame(
        {
            "variant": "stress",
            "cell": -1,
            "index": np.arange(n),
            "theta_e": lo + (hi - lo) * hash_unit_interval([f"te|{k}" for k in keys], seed),
            "psf_cell": h.psfsize_r.to_numpy(),
            "depth_cell": h.psfdepth_mag_r.to_numpy(),
            **host_columns(h),
            "degraded": False,
            "draw": "stress",
            "suppress_inner": False,
        }
    )


def stratified_mags(b: pd.DataFrame, cfg: InjectConfig, seed: int) -> np.ndarray:
    """Unlensed source r magnitudes of plan rows ``b``: row ``index`` j of a cell's n injections (per drawn
    variant: a paired variant takes its main row's) falls in slice j of n equal slices of
    ``inject.src_mag_r_range``, at a hash-uniform point within it.

    >>> cfg = InjectConfig(n_per_cell=4, src_mag_r_range=(20.0, 24.0))
    >>> b = pd.DataFrame({"draw": "main", "cell": 0, "index": [0, 1, 2, 3]})
    >>> np.floor(stratified_mags(b, cfg, 1)).tolist()
    [20.0, 21.0, 22.0, 23.0]
    """
    lo, hi = cfg.src_mag_r_range
    n = b.draw.map(lambda v: per_cell(str(v), cfg)).to_numpy(float)
    keys = [f"mag|{v}|{c}|{j}" for v, c, j in zip(b.draw, b.cell, b["index"])]
    u = hash_unit_interval(keys, seed)
    return lo + (b["index"].to_numpy(float) + u) / n * (hi - lo)


def draw_systems(
    cfg: InjectConfig, b: pd.DataFrame, psf: dict[str, np.ndarray], seed: int
) -> tuple[LensSystems, np.ndarray]:
    """The lens systems of plan rows ``b`` (each from its own seed; see the module docstring) and their source
    models. Grid rows take stratified source magnitudes (colours kept); stress rows draw from
    :data:`STRESS_PRIOR`."""
    main_prior = prior(cfg)
    models = np.where(b.draw.to_numpy() == "morphology", OTHER_MODEL[cfg.source_model], cfg.source_model)
    parts = []
    for i, r in enumerate(b.itertuples()):
        rng = np.random.default_rng(stable_seed(seed, "system", str(r.draw), int(r.cell), int(r.index)))
        parts.append(
            sample_systems(
                1,
                np.array([r.theta_e]),
                STRESS_PRIOR if r.draw == "stress" else main_prior,
                rng,
                {band: psf[band][i : i + 1] for band in "grz"},
                float(r.psf_beta),
                models[i : i + 1],
            )
        )
    systems = concat_systems(parts)
    grid_rows = b.draw.to_numpy() != "stress"
    if grid_rows.any():
        # stratified source magnitudes: injection j of n in a cell takes the j-th of n equal slices of the
        # prior (jittered within it), so every magnitude bin of the conditional table gets its share
        m = systems.src_mag["r"].numpy().copy()
        m[grid_rows] = stratified_mags(b[grid_rows], cfg, seed)
        delta = torch.as_tensor(m - systems.src_mag["r"].numpy())
        systems.src_mag = {band: systems.src_mag[band] + delta for band in systems.src_mag}
    return systems, models


def concat_systems(parts: list[LensSystems]) -> LensSystems:
    """One :class:`LensSystems` of the systems of ``parts``, in order; Sersic systems beside clumpy ones get
    clumps carrying no flux (as :func:`sample_systems` gives them in a mixed batch)."""
    k = max((p.clump_x.shape[-1] for p in parts if p.clump_x.numel()), default=0)
    kw: dict[str, Any] = {}
    for f in fields(LensSystems):
        vals = []
        for p in parts:
            v = getattr(p, f.name)
            if f.name.startswith("clump") and k and not p.clump_x.numel():
                n = len(p)
                v = {
                    "clump_x": torch.zeros(n, k, dtype=torch.float64),
                    "clump_y": torch.zeros(n, k, dtype=torch.float64),
                    "clump_sigma": torch.full((n, k), 0.04, dtype=torch.float64),
                    "clump_frac": torch.zeros(n, dtype=torch.float64),
                }[f.name]
            vals.append(v)
        if isinstance(vals[0], dict):
            kw[f.name] = {band: torch.cat([v[band] for v in vals]) for band in vals[0]}
        else:
            kw[f.name] = torch.cat(vals)
    return LensSystems(**kw)


def render_batch(
    cfg: InjectConfig, b: pd.DataFrame, store: StampStore, seed: int, k: int
) -> tuple[np.ndarray, np.ndarray, dict, pd.DataFrame, np.ndarray]:
    """Render batch ``k`` (plan rows ``b``) into its hosts from ``store`` (degraded where the plan says so).

    Returns (stamps, invvar, injection info, the batch's record table, the host images as read/degraded)."""
    img, iv, _ = store.read(b.host_row.to_numpy())
    for i, r in enumerate(b.itertuples()):
        if r.degraded:  # seeded per host and cell: a paired variant sees the same degraded host as main
            rng_d = np.random.default_rng(stable_seed(seed, "degrade", int(r.host_row), int(r.cell)))
            img[i], iv[i] = degrade(
                img[i], iv[i], r.host_psf_r, r.host_depth_r, r.psf_cell, r.depth_cell, rng_d
            )
    scale = (b.psf_cell / b.host_psf_r).to_numpy()  # degraded hosts: all bands broadened alike
    psf = {
        "g": b.host_psf_g.to_numpy() * np.where(b.degraded, scale, 1),
        "r": np.where(b.degraded, b.psf_cell, b.host_psf_r).astype(float),
        "z": b.host_psf_z.to_numpy() * np.where(b.degraded, scale, 1),
    }
    systems, models = draw_systems(cfg, b, psf, seed)
    rng = np.random.default_rng(stable_seed(seed, "inject", k))
    inner = b.suppress_inner.to_numpy(bool)
    stamps = np.empty_like(img)
    info: dict[str, np.ndarray] = {}
    for flag in (False, True):  # the inner-image ablation renders with the counter-image suppressed
        idx = np.flatnonzero(inner == flag)
        if not len(idx):
            continue
        st, inf = inject_arcs(
            img[idx],
            iv[idx],
            systems.subset(torch.as_tensor(idx)),
            rng=rng,
            noise_model=cfg.noise_model,
            supersample=cfg.supersample,
            accuracy=cfg.accuracy,
            suppress_inner=flag,
        )
        stamps[idx] = st
        for key in ("magnification", "arc_snr", "noiseless_arc", "rays_per_pixel"):
            if key not in inf:
                continue
            v = np.asarray(inf[key])
            info.setdefault(key, np.zeros((len(b),) + v.shape[1:], v.dtype))[idx] = v
    return stamps, iv, info, record(b, systems, models, info), img


def record(b: pd.DataFrame, s: LensSystems, models: np.ndarray, info: dict) -> pd.DataFrame:
    """The batch's record table: the plan rows with every drawn parameter, the rendered magnification and arc
    SNR, and the point-source images of the source centre (positions in arcsec east and north of the lens
    centre, signed magnifications; lists, brightest first)."""
    n = lambda t: t.numpy().astype(float)  # noqa: E731
    mu = np.asarray(info["magnification"], float)
    src_mag_r = n(s.src_mag["r"])
    ix, iy, imu = image_positions(
        n(s.theta_e), n(s.q), n(s.phi), n(s.gamma1), n(s.gamma2), n(s.src_x - s.x0), n(s.src_y - s.y0)
    )
    ok = np.isfinite(ix)
    clumps = s.clump_frac.numel() > 0
    return b.assign(
        source_model=models,
        lens_q=n(s.q),
        lens_phi=n(s.phi),
        gamma1=n(s.gamma1),
        gamma2=n(s.gamma2),
        lens_x0=n(s.x0),
        lens_y0=n(s.y0),
        src_mag_g=n(s.src_mag["g"]),
        src_mag_r=src_mag_r,
        src_mag_z=n(s.src_mag["z"]),
        arc_mag_r=np.where(mu > 0, src_mag_r - 2.5 * np.log10(np.where(mu > 0, mu, 1.0)), np.nan),
        src_reff=n(s.src_reff),
        src_n=n(s.src_n),
        src_q=n(s.src_q),
        src_phi=n(s.src_phi),
        src_x=n(s.src_x),
        src_y=n(s.src_y),
        n_clumps=np.where(n(s.clump_frac) > 0, s.clump_x.shape[-1], 0) if clumps else 0,
        clump_frac=n(s.clump_frac) if clumps else 0.0,
        psf_g=n(s.psf_fwhm["g"]),
        psf_r=n(s.psf_fwhm["r"]),
        psf_z=n(s.psf_fwhm["z"]),
        magnification=mu,
        arc_snr=info["arc_snr"],
        rays_per_pixel=np.asarray(info.get("rays_per_pixel", np.full(len(b), np.nan)), float),
        n_images=ok.sum(1),
        image_x=[r[m].round(5) for r, m in zip(ix, ok)],
        image_y=[r[m].round(5) for r, m in zip(iy, ok)],
        image_mu=[r[m].round(5) for r, m in zip(imu, ok)],
    )


def measured_record(rec: pd.DataFrame, stamps: np.ndarray, info: dict) -> pd.DataFrame:
    """The batch record with the measured arc (annulus SNR, colours) and the true arc colours (mag)."""
    m = measured_arc(stamps)
    arc = info["noiseless_arc"]
    return rec.assign(
        meas_snr=m["snr"],
        meas_g_r=m["g_r"],
        meas_r_z=m["r_z"],
        arc_g_r=-2.5 * np.log10(arc[:, 0].sum((1, 2)) / arc[:, 1].sum((1, 2))),
        arc_r_z=-2.5 * np.log10(arc[:, 1].sum((1, 2)) / arc[:, 2].sum((1, 2))),
    )


def inject_all(
    cfg: InjectConfig,
    pl: pd.DataFrame,
    hosts: StampStore,
    store_path: Path,
    shards: ShardLog,
    seed: int,
    advance: Callable[[int], Any] | None = None,
    client: Any = None,
) -> tuple[pd.DataFrame, StampStore]:
    """Render every batch of the plan into the store at ``store_path`` (created, or reopened on a restart),
    skipping batches recorded in ``shards``. ``advance(n)`` after each batch (a progress bar).

    Rendering runs on ``inject.threads`` torch threads (CPU reductions depend on the count). With a Dask
    ``client`` (``inject.distributed``) the pending batches are rendered on its workers, each writing its own
    store shard and resume record; the bytes are those of an in-process run, since a batch depends only on the
    config, the seed and its rows.

    Returns (the injections table — the batches' records in order, with ``row`` = store row —, the output
    store)."""
    bs = cfg.batch_size
    resumed = (store_path / "zarr.json").is_file()
    out = (
        StampStore.open(store_path, mode="r+")
        if resumed
        else StampStore.create(store_path, len(pl), shard_size=bs)
    )
    todo = []
    for k, a in enumerate(range(0, len(pl), bs)):
        if shards.done(f"{k:05d}"):
            if advance is not None:
                advance(min(bs, len(pl) - a))
        else:
            todo.append((k, a))
    if client is None:
        for k, a in todo:
            with torch_threads(cfg.threads):
                n = _batch(cfg, pl.iloc[a : a + bs], hosts, out, shards, seed, k, a)
            if advance is not None:
                advance(n)
    else:
        from dask.distributed import as_completed

        futs = [
            client.submit(
                _remote_batch,
                cfg,
                pl.iloc[a : a + bs],
                str(hosts.path),
                str(store_path),
                str(shards.dir),
                seed,
                k,
                a,
                cfg.threads,
                key=f"inject-{k:05d}",
                pure=False,
            )
            for k, a in todo
        ]
        for fut in as_completed(futs):
            n = fut.result()
            if advance is not None:
                advance(n)
    inj = shards.table()
    inj.insert(0, "row", np.arange(len(inj)))
    return inj, out


def _batch(
    cfg: InjectConfig,
    b: pd.DataFrame,
    hosts: StampStore,
    out: StampStore,
    shards: ShardLog,
    seed: int,
    k: int,
    a: int,
) -> int:
    """Render batch ``k`` (plan rows ``b``, store rows from ``a``), write it, record it; its row count."""
    stamps, iv, info, rec, _ = render_batch(cfg, b, hosts, seed, k)
    out.write(a, stamps, iv, np.zeros(stamps.shape[:1] + stamps.shape[2:], np.int32))
    rec = measured_record(rec, stamps, info)
    shards.record(f"{k:05d}", rec, {"start": a, "rows": len(rec)})
    return len(rec)


def _remote_batch(
    cfg: InjectConfig,
    b: pd.DataFrame,
    hosts_path: str,
    store_path: str,
    log_dir: str,
    seed: int,
    k: int,
    a: int,
    threads: int,
) -> int:
    """:func:`_batch` on a Dask worker: the stores and the resume log reopened from their paths, torch on
    ``threads`` threads."""
    torch.set_num_threads(threads)
    hosts, out = StampStore.open(hosts_path), StampStore.open(store_path, mode="r+")
    return _batch(cfg, b, hosts, out, ShardLog(log_dir), seed, k, a)


def counts(grid: pd.DataFrame, inj: pd.DataFrame, host_info: dict) -> dict[str, int]:
    """The inject manifest's counts."""
    return {
        "injections": len(inj),
        "cells": len(grid),
        "cells_filled": int(inj[inj.variant == "main"].cell.nunique()),
        "degraded_injections": int(inj.degraded.sum()),
        "host_pool": int(host_info["hosts"]),
        "candidate_hosts_excluded": int(host_info.get("candidates_excluded", 0)),
    }
