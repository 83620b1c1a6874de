"""The catalogue build: DR10 sweeps → parent cuts → N1/N2 → 11″ known-lens exclusion → HEALPix split, on Dask;
then the positives ↔ Tractor crossmatch and the catalogue gates.

Each (sweep file, chunk) is one Dask task that reads only the needed columns, runs the pure
:func:`lensaudit.catalog.pool.build_partition`, writes its pool parts
(``<pool>/split=<s>/part-<stem>.parquet``, stem = ``<sweep file stem>-<chunk:03d>``) and then records its
positive-match candidates and counts in a :class:`~lensaudit.run.ShardLog` under the stem: a restarted build
skips the recorded stems.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from lensaudit import __version__
from lensaudit.catalog.columns import SWEEP_READ
from lensaudit.catalog.n2_rules import RULE_ORDER
from lensaudit.catalog.pool import build_partition, read_pool
from lensaudit.catalog.spatial import SPLITS, ExclusionIndex, assign_split, healpix_nest
from lensaudit.config import CatalogConfig, RunConfig
from lensaudit.errors import InputError
from lensaudit.gates import Gate
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
    """The provenance columns every pool row carries (``sweep_file`` is added per task)."""
    return {
        "pipeline_version": __version__,
        "git_commit": commit,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


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
    from lensaudit.survey.sweeps import read_sweep

    stem = f"{Path(file).stem}-{k:03d}"
    if log.done(stem):
        return log.summary(stem)
    raw = read_sweep(file, SWEEP_READ)
    bounds = np.linspace(0, len(raw), nparts + 1).astype(int)
    raw = raw.iloc[bounds[k] : bounds[k + 1]]
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
        results.append(fut.result())
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
    pos["healpix_128"] = healpix_nest(pos.ra, pos.dec, cfg.nside)
    pos["healpix_64"] = healpix_nest(pos.ra, pos.dec, cfg.nside_analysis)
    pos["split"] = assign_split(pos.healpix_128, cfg.split_fractions, seed)
    return pos


def catalog_gates(
    pool_dir: Path, cfg: CatalogConfig, matched: pd.DataFrame, counts: dict[str, int]
) -> tuple[list[Gate], dict[str, Any]]:
    """The pool's invariants, split fractions, N2 fraction, TYPE coverage and the positive match rate.

    Adds the per-N2-category and per-split counts to ``counts``; returns (gates, manifest extra).
    """
    cols = [
        "galaxy_id",
        "ra",
        "dec",
        "type",
        "split",
        "pool",
        "n2_category",
        "healpix_128",
        "nobs_z",
        "mag_r",
    ]
    pool = read_pool(pool_dir, cols)
    n = len(pool)
    critical = ["galaxy_id", "ra", "dec", "type", "split", "healpix_128"]
    gates = [
        Gate.check("pool_not_empty", n > 0, value=n),
        Gate.check(
            "unique_galaxy_id",
            not pool.galaxy_id.duplicated().any(),
            value=int(pool.galaxy_id.duplicated().sum()),
        ),
        Gate.check("no_nulls_critical", not pool[critical].isna().any().any()),
        Gate.check(
            "coordinates_in_range", bool(pool.ra.between(0, 360).all() and pool.dec.between(-90, 90).all())
        ),
        Gate.check("one_split_per_cell", bool((pool.groupby("healpix_128").split.nunique() <= 1).all())),
    ]
    frac = pool.split.value_counts(normalize=True).reindex(list(SPLITS), fill_value=0.0)
    for s in SPLITS:
        gates.append(
            Gate(
                name=f"split_fraction_{s}",
                value=float(frac[s]),
                lo=cfg.split_fractions[s] - cfg.split_tolerance,
                hi=cfg.split_fractions[s] + cfg.split_tolerance,
                message=f"target {cfg.split_fractions[s]:.2f}",
            )
        )
    per_cat = {c: int((pool.n2_category == c).sum()) for c in RULE_ORDER}
    n2 = float((pool.pool == "N2").mean()) if n else 0.0
    lo, hi = cfg.n2_fraction_bounds
    gates.append(
        Gate(
            name="n2_fraction",
            value=n2,
            lo=lo,
            hi=hi,
            detail=per_cat,
            message="per category: " + ", ".join(f"{k}={v}" for k, v in per_cat.items()),
        )
    )
    gates.append(
        Gate(
            name="types_present",
            value=int(pool.type.nunique()),
            fail=2.5,
            higher_is_better=True,
            message=", ".join(sorted(pool.type.unique())),
        )
    )
    cov = matched[matched.covered]
    rate = float(cov.matched.mean()) if len(cov) else float("nan")
    seps = cov.match_sep_arcsec.dropna()
    gates.append(
        Gate(
            name="positive_match_rate",
            value=rate,
            warn=cfg.min_match_rate,
            fail=0.5,
            higher_is_better=True,
            message=f"{int(cov.matched.sum())}/{len(cov)} positives with sweep coverage within "
            f"{cfg.match_radius_arcsec}″ (predecessor 93.8%)",
        )
    )
    gates.append(
        Gate(
            name="match_sep_p90_arcsec",
            value=float(seps.quantile(0.9)) if len(seps) else float("nan"),
            warn=cfg.match_radius_arcsec,
            fail=cfg.match_report_radius_arcsec,
            blocking=False,
            message="90th percentile of nearest separations",
        )
    )
    counts.update({f"n2_{k}": v for k, v in per_cat.items()})
    counts.update({f"split_{s}": int((pool.split == s).sum()) for s in SPLITS})
    extra = {
        "n2_fraction": n2,
        "n2_per_category": per_cat,
        "match_rate": rate,
        "sep_quantiles": {str(q): float(seps.quantile(q)) for q in (0.5, 0.9, 0.99)} if len(seps) else {},
    }
    return gates, extra
