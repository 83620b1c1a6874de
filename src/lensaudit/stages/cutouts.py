"""cutouts: sample → 101×101 grz stamps (+ invvar, maskbits) in a sharded Zarr store → quality gates.

Row i of the store is row i of sample.parquet. Work is split into store shards; each shard is fetched by one
Dask task (or, for the rate-limited service, by the driver's thread pool), written whole, and marked done
with its index part; a restarted run fetches only the missing shards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.config import CutoutsConfig, RunConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.stamps.providers import get_provider
from lensaudit.stamps.quality import quality_metrics
from lensaudit.stamps.store import StampStore
from lensaudit.utils import write_parquet_atomic

NAME = "cutouts"
SECTIONS = ("cutouts", "data")
DEPENDS = ("sample",)


def _shard(k: int, a: int, b: int, rows: pd.DataFrame, cfg: RunConfig, out: str) -> int:
    prov = get_provider(cfg.cutouts.provider, cfg)
    res = prov.fetch(rows)
    return _write(k, a, res, out)


def _write(k: int, a: int, res, out: str) -> int:
    store = StampStore.open(Path(out) / "stamps.zarr", mode="r+")
    store.write(a, res.image, res.invvar, res.maskbits)
    idx = res.index.assign(row=np.arange(a, a + len(res.index)))
    write_parquet_atomic(idx, Path(out) / "_shards" / f"{k:06d}.parquet")
    return len(idx)


def run(cfg: CutoutsConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    sample = pd.read_parquet(ctx.run_dir / "sample" / "sample.parquet")
    n = len(sample)
    zpath = out / "stamps.zarr"
    store = StampStore.open(zpath) if (zpath / "zarr.json").is_file() else \
        StampStore.create(zpath, n, cfg.size_pix, cfg.bands.lower(), cfg.shard_size)
    todo = [(k, a, b) for k, (a, b) in enumerate(store.shard_ranges()) if not (out / "_shards" / f"{k:06d}.parquet").is_file()]
    prov = get_provider(cfg.provider, ctx.config)
    with ctx.progress(n, f"cutouts ({cfg.provider}): stamps") as bar:
        bar.advance(n - sum(b - a for _, a, b in todo))
        if prov.parallel == "threads":
            for k, a, b in todo:
                res = prov.fetch(sample.iloc[a:b], on_done=lambda _: bar.advance(1))
                _write(k, a, res, str(out))
        elif todo:
            from dask.distributed import as_completed

            client = ctx.dask_client()
            futs = [client.submit(_shard, k, a, b, sample.iloc[a:b][["galaxy_id", "ra", "dec"]], ctx.config, str(out),
                                  key=f"cutouts-shard-{k}", pure=False) for k, a, b in todo]
            for f in as_completed(futs):
                bar.advance(f.result())
    index = pd.concat([pd.read_parquet(p) for p in sorted((out / "_shards").glob("*.parquet"))], ignore_index=True)
    index = index.sort_values("row").reset_index(drop=True)
    qual = _quality(store, cfg)
    stamps = pd.concat([index, qual], axis=1)
    stamps["quality_ok"] = (stamps.status == "ok") & ~stamps.central_nan & (stamps.bad_pixel_frac <= cfg.max_bad_pixel_frac)
    stamps.loc[(stamps.status == "ok") & ~stamps.quality_ok, "status"] = "excluded"
    stamps.loc[stamps.central_nan & (stamps.reason == ""), "reason"] = "NaN within the central radius"
    stamps.loc[(stamps.status == "excluded") & (stamps.reason == ""), "reason"] = f"bad_pixel_frac > {cfg.max_bad_pixel_frac}"
    for c in ("label", "pool", "split", "psfsize_r", "psfdepth_mag_r"):
        stamps[c] = sample[c].to_numpy()
    write_parquet_atomic(stamps, out / "stamps.parquet")
    return Manifest(counts=_counts(stamps), gates=_gates(stamps, cfg), outputs=["stamps.zarr", "stamps.parquet"],
                    extra={"failures_by_reason": stamps[stamps.status != "ok"].reason.str.slice(0, 60).value_counts().to_dict()})


def _quality(store: StampStore, cfg: CutoutsConfig) -> pd.DataFrame:
    parts = []
    for a, b in store.shard_ranges():
        img, iv, mb = store.read(slice(a, b))
        parts.append(quality_metrics(img, iv, mb, cfg.central_nan_radius_pix))
    return pd.concat(parts, ignore_index=True)


def _counts(s: pd.DataFrame) -> dict:
    return {"stamps": len(s), "ok": int((s.status == "ok").sum()), "failed": int((s.status == "failed").sum()),
            "excluded": int((s.status == "excluded").sum()), "quality_ok": int(s.quality_ok.sum()),
            "max_attempts_used": int(s.attempts.max()) if len(s) else 0}


def _gates(s: pd.DataFrame, cfg: CutoutsConfig) -> list[Gate]:
    frac = float(s.quality_ok.mean()) if len(s) else 0.0
    reasons = s[s.status != "ok"].reason.str.slice(0, 60).value_counts().to_dict()
    gates = [Gate(name="fraction_ok", value=frac, fail=cfg.min_ok_fraction, higher_is_better=True, detail=reasons,
                  message="failures: " + "; ".join(f"{k} ×{v}" for k, v in list(reasons.items())[:5]))]
    ok = s[s.quality_ok]
    pos, neg = ok[ok.label == 1].core3_r, ok[ok.label == 0].core3_r
    ratio = float(pos.median() / neg.median()) if len(pos) and len(neg) and neg.median() > 0 else float("nan")
    lo, hi = cfg.core_ratio_bounds
    gates.append(Gate(name="core_brightness_ratio_pos_neg", value=ratio, lo=lo, hi=hi, soft=True, blocking=False,
                      message="median inner-core (r<3 px) r flux, positives/negatives: a shortcut warning sign outside 0.9–1.1"))
    return gates
