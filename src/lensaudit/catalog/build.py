"""The catalogue build: DR10 sweeps → parent cuts → N1/N2 → 11″ known-lens exclusion → HEALPix split, on Dask;
then the positives ↔ Tractor crossmatch and the catalogue summary (the gates are in
:mod:`lensaudit.validation.gates.catalog`).

Each (sweep file, chunk) is one Dask task that reads only the needed columns, runs the pure
:func:`lensaudit.catalog.pool.build_partition`, writes its pool parts
(``<pool>/split=<s>/part-<stem>.parquet``, stem = ``<sweep file stem>-<chunk:03d>``) and then records its
positive-match candidates and counts in a :class:`~lensaudit.run.ShardLog` under the stem: a restarted build
skips the recorded stems.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from lensaudit import __version__
from lensaudit.catalog.columns import SWEEP_READ
from lensaudit.catalog.n2_rules import RULE_ORDER
from lensaudit.catalog.pool import build_partition, read_pool
from lensaudit.catalog.spatial import SPLITS, ExclusionIndex, assign_split, healpix_columns
from lensaudit.config import CatalogConfig, RunConfig
from lensaudit.errors import InputError
from lensaudit.run import ShardLog, git_commit
from lensaudit.run.context import ConfigView
from lensaudit.survey.lenses import packaged_lenscat_path, read_lenscat_csv
from lensaudit.utils import write_parquet_atomic

#: the summed per-task counts
POOL_COUNTS = ("rows", "parent", "excluded_near_lens", "pool")


def list_sweeps(location: str) -> list[str]:
    """Sweep files from a directory, a glob, or an fsspec URL (directory or glob), sorted."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(location)
    if fs.isdir(path):
        files = fs.glob(path.rstrip("/") + "/sweep-*.fits")
    else:
        files = fs.glob(path)
    if not files:
        raise InputError(f"no sweep files found at {location}")
    proto = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return sorted(files if proto in ("file", "local") else [f"{proto}://{f}" for f in files])


def local_sweeps(location: str) -> list[Path]:
    """The sweep files of a local directory (for input checksums; empty for URLs and globs)."""
    if "://" not in location and Path(location).is_dir():
        return sorted(Path(location).glob("sweep-*.fits"))
    return []


def exclusion_paths(cfg: RunConfig | ConfigView) -> list[Path]:
    """The lens catalogues (lenscat format) whose positions exclude pool rows
    (``catalog.exclusion_catalogs``)."""
    return [
        packaged_lenscat_path() if e == "packaged" else cast(Path, cfg.resolve_path(e))
        for e in cfg.catalog.exclusion_catalogs
    ]


def exclusion_positions(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """RA, Dec (deg) of every lens in the exclusion catalogues, concatenated in order."""
    ras, decs = [], []
    for path in paths:
        t = read_lenscat_csv(path, Path(path).stem).table
        ras.append(t.ra.to_numpy())
        decs.append(t.dec.to_numpy())
    return np.concatenate(ras) if ras else np.zeros(0), np.concatenate(decs) if decs else np.zeros(0)


def provenance(commit: str) -> dict[str, str]:
    """The provenance columns every pool row carries (``sweep_file`` is added per task). No wall-clock time:
    a restarted or distributed run must write the same bytes (the manifest records when the stage ran)."""
    return {"pipeline_version": __version__, "git_commit": commit}


def _task(
    file: str,
    k: int,
    nparts: int,
    pool_dir: str,
    log: ShardLog,
    cfg: CatalogConfig,
    seed: int,
    excl: ExclusionIndex,
    pos_ra: np.ndarray,
    pos_dec: np.ndarray,
    prov: dict[str, str],
) -> dict[str, Any]:
    """One Dask task: read, process and write chunk ``k`` of ``nparts`` of one sweep file (idempotent)."""
    from lensaudit.survey.sweeps import read_sweep, sweep_nrows

    stem = f"{Path(file).stem}-{k:03d}"
    if log.done(stem):
        return log.summary(stem)
    try:  # only this chunk's rows of the needed columns are decoded
        bounds = np.linspace(0, sweep_nrows(file), nparts + 1).astype(int)
        raw = read_sweep(file, SWEEP_READ, rows=(int(bounds[k]), int(bounds[k + 1])))
        raw.index = np.arange(bounds[k], bounds[k + 1])  # the row in the file: the pool's sweep_row
    except InputError as exc:  # returned, not raised: the driver raises it (no worker traceback in the log)
        return {"error": str(exc), "stem": stem}
    res = build_partition(raw, cfg, seed, excl, pos_ra, pos_dec, {**prov, "sweep_file": Path(file).name})
    for split in SPLITS:
        part = res.pool[res.pool.split == split]
        write_parquet_atomic(part, Path(pool_dir) / f"split={split}" / f"part-{stem}.parquet")
    counts = {**res.counts, "stem": stem}
    log.record(stem, res.matches, counts)
    return counts


def build_pool(
    client: Any,
    files: list[str],
    nparts: int,
    pool_dir: Path,
    log: ShardLog,
    cfg: CatalogConfig,
    seed: int,
    excl: ExclusionIndex,
    positives: pd.DataFrame,
    on_task: Callable[[], Any] | None = None,
) -> dict[str, int]:
    """Map :func:`_task` over every (sweep file, chunk) on Dask; returns the summed :data:`POOL_COUNTS`.

    ``excl``: the known-lens exclusion index (broadcast to the workers); ``positives``: the positives table,
    whose RA/Dec each task matches against its Tractor rows; ``on_task`` is called as each task finishes.
    """
    from dask.distributed import as_completed

    prov = provenance(git_commit())
    [excl_f] = client.scatter([excl], broadcast=True)
    pos_ra, pos_dec = positives.ra.to_numpy(), positives.dec.to_numpy()
    common = (str(pool_dir), log, cfg, seed, excl_f, pos_ra, pos_dec, prov)
    futs = [
        client.submit(_task, f, k, nparts, *common, key=f"catalog-{Path(f).stem}-{k}", pure=False)
        for f in files
        for k in range(nparts)
    ]
    results = []
    for fut in as_completed(futs):
        res = fut.result()
        if "error" in res:
            client.cancel(futs)
            raise InputError(res["error"])
        results.append(res)
        if on_task:
            on_task()
    return {k: int(sum(r[k] for r in results)) for k in POOL_COUNTS}


def crossmatch_positives(
    positives: pd.DataFrame, matches: pd.DataFrame, cfg: CatalogConfig, seed: int
) -> pd.DataFrame:
    """Nearest Tractor row per positive (reported to 5″, matched within 1″); split from the positive's cell.

    ``matches``: the build's match candidates (the ShardLog's table: ``pos_index``, ``sep_arcsec``,
    ``covered`` and the Tractor columns).
    """
    m = matches if len(matches.columns) else pd.DataFrame(columns=["pos_index", "sep_arcsec", "covered"])
    covered = set(m.pos_index.astype(int))
    near = m.dropna(subset=["sep_arcsec"]).sort_values(["pos_index", "sep_arcsec", "galaxy_id"])
    near = near.drop_duplicates("pos_index")
    pos = positives.reset_index(drop=True).copy()
    pos["covered"] = pos.index.isin(covered)
    near = near.drop(columns=["covered"]).set_index("pos_index")
    pos = pos.join(near.rename(columns={"sep_arcsec": "match_sep_arcsec"}), how="left", rsuffix="_tractor")
    pos["matched"] = pos.match_sep_arcsec <= cfg.match_radius_arcsec
    for k, v in healpix_columns(pos.ra, pos.dec, cfg.nside, cfg.nside_analysis).items():
        pos[k] = v
    pos["split"] = assign_split(pos.healpix, cfg.split_fractions, seed)
    return pos


def catalog_summary(pool_dir: Path, matched: pd.DataFrame, counts: dict[str, int]) -> dict[str, Any]:
    """The per-N2-category and per-split counts (added to ``counts``) and the manifest extra: the N2
    fraction, the N2 counts per category, the positive match rate and the separation quantiles. (The gates
    are in :mod:`lensaudit.validation.gates.catalog`.)"""
    pool = read_pool(pool_dir, ["split", "pool", "n2_category"])
    per_cat = n2_per_category(pool)
    n2 = float((pool.pool == "N2").mean()) if len(pool) else 0.0
    rate, seps = match_rate(matched)
    counts.update({f"n2_{k}": v for k, v in per_cat.items()})
    counts.update({f"split_{s}": int((pool.split == s).sum()) for s in SPLITS})
    return {
        "n2_fraction": n2,
        "n2_per_category": per_cat,
        "match_rate": rate,
        "sep_quantiles": {str(q): float(seps.quantile(q)) for q in (0.5, 0.9, 0.99)} if len(seps) else {},
    }


def n2_per_category(pool: pd.DataFrame) -> dict[str, int]:
    """Pool rows per N2 category, in rule order."""
    return {c: int((pool.n2_category == c).sum()) for c in RULE_ORDER}


def match_rate(matched: pd.DataFrame) -> tuple[float, pd.Series]:
    """The match rate of the positives with sweep coverage (NaN without any), and their nearest
    separations (″)."""
    cov = matched[matched.covered]
    rate = float(cov.matched.mean()) if len(cov) else float("nan")
    return rate, cov.match_sep_arcsec.dropna()
