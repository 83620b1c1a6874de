"""Filling the stamp store from a cutout provider, shard by shard, then the per-stamp quality table (the gates
are in :mod:`lensaudit.validation.gates.cutouts`).

Row i of the store is row i of sample.parquet. Each store shard is fetched by one Dask task (or, for the
rate-limited service, by the driver's thread pool), written whole, and recorded in a
:class:`~lensaudit.run.ShardLog` under ``f"{k:06d}"`` with its index part (the provider's per-row record plus
the store ``row``); a restarted run fetches only the shards not recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from lensaudit.config import CutoutsConfig, RunConfig
from lensaudit.run import ShardLog
from lensaudit.stamps.labelled import COPIED
from lensaudit.stamps.providers import ShardResult, get_provider
from lensaudit.stamps.quality import quality_metrics
from lensaudit.stamps.store import StampStore

#: sample columns copied into the stamps index for convenience (the sample's own values win in joins)


def shard_key(k: int) -> str:
    """The ShardLog key of store shard ``k``.

    >>> shard_key(12)
    '000012'
    """
    return f"{k:06d}"


def open_store(path: Path, n: int, cfg: CutoutsConfig) -> StampStore:
    """The store at ``path``: reopened when a previous (killed) run created it, else created for ``n``
    rows."""
    if (path / "zarr.json").is_file():
        return StampStore.open(path)
    return StampStore.create(path, n, cfg.size_pix, cfg.bands.lower(), cfg.shard_size)


def _write(k: int, a: int, res: ShardResult, store_path: str, log: ShardLog) -> int:
    """Write one fetched shard from row ``a``, then record it; returns its row count."""
    store = StampStore.open(store_path, mode="r+")
    store.write(a, res.image, res.invvar, res.maskbits)
    idx = res.index.assign(row=np.arange(a, a + len(res.index)))
    log.record(shard_key(k), idx, {"rows": len(idx)})
    return len(idx)


def _shard(k: int, a: int, rows: pd.DataFrame, cfg: RunConfig, store_path: str, log: ShardLog) -> int:
    """One Dask task: fetch and write store shard ``k`` (rows from ``a``) with its own provider."""
    prov = get_provider(cfg.cutouts.provider, cfg)
    return _write(k, a, prov.fetch(rows), store_path, log)


def fetch_stamps(
    store: StampStore,
    sample: pd.DataFrame,
    cfg: RunConfig,
    log: ShardLog,
    dask_client: Callable[[], Any],
    advance: Callable[[int], None],
) -> None:
    """Fetch every shard ``log`` has not recorded into ``store``.

    ``cfg``: the whole run config (providers read ``cutouts``, ``data`` and ``run.seed``); ``dask_client`` is
    called only when shards remain for a Dask-parallel provider; ``advance(n)`` counts stamps (the
    already-recorded ones first).
    """
    todo = [(k, a, b) for k, (a, b) in enumerate(store.shard_ranges()) if not log.done(shard_key(k))]
    prov = get_provider(cfg.cutouts.provider, cfg)
    advance(len(sample) - sum(b - a for _, a, b in todo))
    if prov.parallel == "threads":
        for k, a, b in todo:
            res = prov.fetch(sample.iloc[a:b], on_done=lambda _: advance(1))
            _write(k, a, res, store.path, log)
    elif todo:
        from dask.distributed import as_completed

        client = dask_client()
        futs = [
            client.submit(
                _shard,
                k,
                a,
                sample.iloc[a:b][["galaxy_id", "ra", "dec"]],
                cfg,
                store.path,
                log,
                key=f"cutouts-shard-{k}",
                pure=False,
            )
            for k, a, b in todo
        ]
        for f in as_completed(futs):
            advance(f.result())


def store_quality(store: StampStore, central_nan_radius: float) -> pd.DataFrame:
    """Quality metrics of every stored stamp, shard by shard, in row order."""
    parts = []
    for a, b in store.shard_ranges():
        img, iv, mb = store.read(slice(a, b))
        parts.append(quality_metrics(img, iv, mb, central_nan_radius))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def quality_verdict(fetched_ok, central_nan, bad_pixel_frac, max_bad_pixel_frac: float) -> np.ndarray:
    """Which stamps are usable: fetched, no NaN near the centre, at most ``max_bad_pixel_frac`` bad pixels.

    >>> quality_verdict(np.array([True, True, False]), np.array([False, True, False]), np.zeros(3), 0.02)
    array([ True, False, False])
    """
    return (
        np.asarray(fetched_ok, bool)
        & ~np.asarray(central_nan, bool)
        & (np.asarray(bad_pixel_frac, float) <= max_bad_pixel_frac)
    )


def stamps_table(
    store: StampStore, index: pd.DataFrame, sample: pd.DataFrame, cfg: CutoutsConfig
) -> pd.DataFrame:
    """The stamps index (``stamps.parquet``): the fetch records in row order, the quality metrics, the
    verdict (``quality_ok``; ``status`` ok/failed/excluded with a ``reason``) and the :data:`COPIED` sample
    columns."""
    index = index.sort_values("row").reset_index(drop=True)
    stamps = pd.concat([index, store_quality(store, cfg.central_nan_radius_pix)], axis=1)
    stamps["quality_ok"] = quality_verdict(
        stamps.status == "ok", stamps.central_nan, stamps.bad_pixel_frac, cfg.max_bad_pixel_frac
    )
    stamps.loc[(stamps.status == "ok") & ~stamps.quality_ok, "status"] = "excluded"
    stamps.loc[stamps.central_nan & (stamps.reason == ""), "reason"] = "NaN within the central radius"
    stamps.loc[(stamps.status == "excluded") & (stamps.reason == ""), "reason"] = (
        f"bad_pixel_frac > {cfg.max_bad_pixel_frac}"
    )
    for c in COPIED:
        stamps[c] = sample[c].to_numpy()
    return stamps


def failure_reasons(s: pd.DataFrame) -> dict[str, int]:
    """Stamps not ok, by reason (first 60 characters), most frequent first."""
    return cast(dict[str, int], s[s.status != "ok"].reason.str.slice(0, 60).value_counts().to_dict())


def stamps_counts(s: pd.DataFrame) -> dict[str, int]:
    return {
        "stamps": len(s),
        "ok": int((s.status == "ok").sum()),
        "failed": int((s.status == "failed").sum()),
        "excluded": int((s.status == "excluded").sum()),
        "quality_ok": int(s.quality_ok.sum()),
        "max_attempts_used": int(s.attempts.max()) if len(s) else 0,
    }
