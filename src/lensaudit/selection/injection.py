"""Injections: the plan (hosts per grid cell and prior variant), the source prior, the rendering of one batch
and the resumable batch loop that fills ``inject/stamps.zarr``.

Batches are fixed by the config (deterministic per seed, cell, index and batch size): batch ``k`` covers
plan rows ``[k·batch_size, (k+1)·batch_size)`` and draws from ``stable_seed(seed, "inject", k)``, so a
restarted run renders the same stamps. Each finished batch is written whole to the store, then recorded in a
:class:`~lensaudit.run.shards.ShardLog` (key ``f"{k:05d}"``, the batch's record table) — a restart skips it.

Variants: ``main`` (the configured prior into the configured hosts), ``morphology`` (the other source model,
Sersic ↔ clumpy: the morphology bracket) and ``allhosts`` (the main prior into every N1 host of the host
splits, not only deflector-like ones: the closure ladder's host term), the brackets with
``inject.bracket_fraction`` × ``n_per_cell`` injections per cell. Source-prior sensitivity needs no
injections: the selection function is conditioned on the source magnitude and re-weighted
(:meth:`lensaudit.selection.table.SelectionFunction.marginalise`).

Every injection records its unlensed source r magnitude and the lensed arc's r magnitude
(``arc_mag_r`` = ``src_mag_r`` − 2.5 log10 μ, μ the rendered total magnification), the two candidate 4th
axes of the selection function.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig
from lensaudit.lensing import inject as inject_arcs
from lensaudit.lensing import sample_systems
from lensaudit.run.shards import ShardLog
from lensaudit.selection.degrade import degrade
from lensaudit.selection.grid import grid_of
from lensaudit.selection.hosts import assign_hosts, host_pool
from lensaudit.selection.realism import measured_arc
from lensaudit.stamps.store import StampStore
from lensaudit.utils import hash_unit_interval, stable_seed

VARIANTS = ("main", "morphology", "allhosts")
OTHER_MODEL = {"sersic": "clumpy", "clumpy": "sersic"}


def wanted(v: str, cfg: InjectConfig) -> bool:
    """Whether variant ``v`` is injected: ``main`` always, ``morphology`` with the morphology bracket,
    ``allhosts`` with the host bracket when the main hosts are deflector-like (else it would repeat main)."""
    return (
        v == "main"
        or (v == "morphology" and cfg.morphology_bracket)
        or (v == "allhosts" and cfg.host_bracket and cfg.host_match != "all")
    )


def per_cell(v: str, cfg: InjectConfig) -> int:
    """Injections per cell of variant ``v``."""
    return cfg.n_per_cell if v == "main" else max(1, int(round(cfg.n_per_cell * cfg.bracket_fraction)))


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


def plan(
    cfg: InjectConfig, sample: pd.DataFrame, stamps: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(grid cells, one plan row per injection — hosts chosen per variant and cell —, host-pool info).

    ``sample`` is ``sample.parquet``, ``stamps`` the cutouts index ``stamps.parquet``; the plan is empty when
    no host matches any cell."""
    grid, _ = grid_of(cfg)
    hosts, host_info = host_pool(sample, stamps, cfg.host_match, cfg.host_splits)
    if not cfg.host_weighting:
        hosts = hosts.assign(host_weight=1.0)
        host_info.pop("hosts_effective", None)
    parts = []
    for v in VARIANTS:
        if not wanted(v, cfg):
            continue
        pool = hosts
        if v == "allhosts":
            pool, all_info = host_pool(sample, stamps, "all", cfg.host_splits)
            host_info["hosts_all"] = all_info["hosts"]
        parts.append(
            assign_hosts(
                grid,
                pool,
                per_cell(v, cfg),
                cfg.psf_match_tol_arcsec,
                cfg.depth_match_tol_mag,
                cfg.allow_degradation,
                seed,
                v,
            )
        )
    plan_df = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else pd.DataFrame()
    )
    return grid, plan_df, host_info


def stratified_mags(b: pd.DataFrame, cfg: InjectConfig, seed: int) -> np.ndarray:
    """Unlensed source r magnitudes of plan rows ``b``: row ``index`` j of a cell's n injections (per variant)
    falls in slice j of n equal slices of ``inject.src_mag_r_range``, at a hash-uniform point within it.

    >>> cfg = InjectConfig(n_per_cell=4, src_mag_r_range=(20.0, 24.0))
    >>> b = pd.DataFrame({"variant": "main", "cell": 0, "index": [0, 1, 2, 3]})
    >>> np.floor(stratified_mags(b, cfg, 1)).tolist()
    [20.0, 21.0, 22.0, 23.0]
    """
    lo, hi = cfg.src_mag_r_range
    n = b.variant.map(lambda v: per_cell(str(v), cfg)).to_numpy(float)
    keys = [f"mag|{v}|{c}|{j}" for v, c, j in zip(b.variant, b.cell, b["index"])]
    u = hash_unit_interval(keys, seed)
    return lo + (b["index"].to_numpy(float) + u) / n * (hi - lo)


def render_batch(
    cfg: InjectConfig, b: pd.DataFrame, store: StampStore, seed: int, k: int
) -> tuple[np.ndarray, np.ndarray, dict, pd.DataFrame, np.ndarray]:
    """Render batch ``k`` (plan rows ``b``) into its hosts from ``store`` (degraded where the plan says so).

    Returns (stamps, invvar, injection info, the batch's record table, the host images as read/degraded)."""
    img, iv, _ = store.read(b.host_row.to_numpy())
    rng = np.random.default_rng(stable_seed(seed, "inject", k))
    for i, r in enumerate(b.itertuples()):
        if r.degraded:
            img[i], iv[i] = degrade(
                img[i], iv[i], r.host_psf_r, r.host_depth_r, r.psf_cell, r.depth_cell, rng
            )
    scale = (b.psf_cell / b.host_psf_r).to_numpy()  # degraded hosts: all bands broadened alike
    psf = {
        "g": b.host_psf_g.to_numpy() * np.where(b.degraded, scale, 1),
        "r": np.where(b.degraded, b.psf_cell, b.host_psf_r),
        "z": b.host_psf_z.to_numpy() * np.where(b.degraded, scale, 1),
    }
    models = np.where(b.variant.to_numpy() == "morphology", OTHER_MODEL[cfg.source_model], cfg.source_model)
    systems = sample_systems(len(b), b.theta_e.to_numpy(), prior(cfg), rng, psf, 3.5, models)
    # stratified source magnitudes: injection j of n in a cell takes the j-th of n equal slices of the prior
    # (jittered within it), so every magnitude bin of the conditional table gets its share; colours are kept
    m = stratified_mags(b, cfg, seed)
    delta = m - systems.src_mag["r"].numpy()
    for band in "grz":
        # torch broadcasts the float64 array into the tensor (the stubs type the sum as an ndarray)
        systems.src_mag[band] = systems.src_mag[band] + delta  # type: ignore[assignment]
    stamps, info = inject_arcs(
        img,
        iv,
        systems,
        rng=rng,
        noise_model=cfg.noise_model,
        supersample=cfg.supersample,
        accuracy=cfg.accuracy,
    )
    src_mag_r = systems.src_mag["r"].numpy()
    mu = np.asarray(info["magnification"], float)
    rec = b.assign(
        source_model=models,
        src_mag_r=src_mag_r,
        arc_mag_r=np.where(mu > 0, src_mag_r - 2.5 * np.log10(np.where(mu > 0, mu, 1.0)), np.nan),
        src_reff=systems.src_reff.numpy(),
        src_n=systems.src_n.numpy(),
        magnification=mu,
        arc_snr=info["arc_snr"],
        psf_r=psf["r"],
    )
    return stamps, iv, info, rec, img


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
) -> tuple[pd.DataFrame, StampStore]:
    """Render every batch of the plan into the store at ``store_path`` (created, or reopened on a restart),
    skipping batches recorded in ``shards``. ``advance(n)`` after each batch (a progress bar).

    Returns (the injections table — the batches' records in order, with ``row`` = store row —, the output
    store)."""
    bs = cfg.batch_size
    resumed = (store_path / "zarr.json").is_file()
    out = (
        StampStore.open(store_path, mode="r+")
        if resumed
        else StampStore.create(store_path, len(pl), shard_size=bs)
    )
    for k, a in enumerate(range(0, len(pl), bs)):
        if shards.done(f"{k:05d}"):
            if advance is not None:
                advance(min(bs, len(pl) - a))
            continue
        stamps, iv, info, rec, _ = render_batch(cfg, pl.iloc[a : a + bs], hosts, seed, k)
        out.write(a, stamps, iv, np.zeros(stamps.shape[:1] + stamps.shape[2:], np.int32))
        rec = measured_record(rec, stamps, info)
        shards.record(f"{k:05d}", rec, {"start": a, "rows": len(rec)})
        if advance is not None:
            advance(len(rec))
    inj = shards.table()
    inj.insert(0, "row", np.arange(len(inj)))
    return inj, out


def counts(grid: pd.DataFrame, inj: pd.DataFrame, host_info: dict) -> dict[str, int]:
    """The inject manifest's counts."""
    return {
        "injections": len(inj),
        "cells": len(grid),
        "cells_filled": int(inj[inj.variant == "main"].cell.nunique()),
        "degraded_injections": int(inj.degraded.sum()),
        "host_pool": int(host_info["hosts"]),
    }
