"""catalog: DR10 sweeps → parent cuts → N1/N2 → 11″ known-lens exclusion → HEALPix split (on Dask);
plus the positives ↔ Tractor crossmatch.

Each (sweep file, chunk) is one Dask task that reads only the needed columns, runs the pure
``catalog.pool.build_partition`` and writes its pool part (``pool/split=<s>/part-<file>-<k>.parquet``) and a
done marker; a restarted run skips finished parts.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

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
from lensaudit.pipeline import Manifest, RunContext, git_commit, log
from lensaudit.survey.lenses import packaged_lenscat_path, read_lenscat_csv
from lensaudit.utils import atomic_write_json, write_parquet_atomic

NAME = "catalog"
SECTIONS = ("catalog", "data")
DEPENDS = ("positives",)


def list_sweeps(location: str) -> list[str]:
    """Sweep files from a directory, a glob, or an fsspec URL (directory or glob)."""
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


def exclusion_positions(cfg: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    ras, decs = [], []
    for entry in cfg.catalog.exclusion_catalogs:
        path = packaged_lenscat_path() if entry == "packaged" else cfg.resolve_path(entry)
        t = read_lenscat_csv(path, Path(path).stem).table
        ras.append(t.ra.to_numpy())
        decs.append(t.dec.to_numpy())
    return np.concatenate(ras) if ras else np.zeros(0), np.concatenate(decs) if decs else np.zeros(0)


def inputs(cfg: RunConfig) -> list[Path]:
    out = [packaged_lenscat_path() if e == "packaged" else cfg.resolve_path(e) for e in cfg.catalog.exclusion_catalogs]
    loc = cfg.sweeps_location
    if "://" not in loc and Path(loc).is_dir():
        out += sorted(Path(loc).glob("sweep-*.fits"))
    return [p for p in out if Path(p).is_file()]


def _task(file: str, k: int, nparts: int, out_dir: str, cfg: CatalogConfig, seed: int, excl, pos_ra, pos_dec, prov: dict) -> dict:
    """One Dask task: read, process and write one chunk of one sweep file (idempotent)."""
    from lensaudit.survey.sweeps import read_sweep

    out = Path(out_dir)
    stem = f"{Path(file).stem}-{k:03d}"
    marker = out / "_parts" / f"{stem}.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    raw = read_sweep(file, SWEEP_READ)
    bounds = np.linspace(0, len(raw), nparts + 1).astype(int)
    raw = raw.iloc[bounds[k]:bounds[k + 1]]
    res = build_partition(raw, cfg, seed, excl, pos_ra, pos_dec, {**prov, "sweep_file": Path(file).name})
    for split in SPLITS:
        part = res.pool[res.pool.split == split]
        write_parquet_atomic(part, out / "pool" / f"split={split}" / f"part-{stem}.parquet")
    write_parquet_atomic(res.matches, out / "_parts" / f"{stem}.matches.parquet")
    counts = {**res.counts, "stem": stem}
    atomic_write_json(marker, counts)
    return counts


def run(cfg: CatalogConfig, ctx: RunContext) -> Manifest:
    if ctx.config.data.source == "synthetic":
        ctx.require("sky")
    out = ctx.stage_dir(NAME)
    files = list_sweeps(ctx.config.sweeps_location)
    positives = pd.read_parquet(ctx.run_dir / "positives" / "positives.parquet")
    ex_ra, ex_dec = exclusion_positions(ctx.config)
    excl = ExclusionIndex(ex_ra, ex_dec, cfg.exclusion_radius_arcsec)
    prov = {"pipeline_version": __version__, "git_commit": git_commit(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    nparts = ctx.config.engine.partitions_per_file
    client = ctx.dask_client()
    from dask.distributed import as_completed

    [excl_f] = client.scatter([excl], broadcast=True)
    pos_ra, pos_dec = positives.ra.to_numpy(), positives.dec.to_numpy()
    futs = [client.submit(_task, f, k, nparts, str(out), cfg, ctx.seed, excl_f, pos_ra, pos_dec, prov,
                          key=f"catalog-{Path(f).stem}-{k}", pure=False) for f in files for k in range(nparts)]
    results = []
    with ctx.progress(len(futs), f"catalog: {len(files)} sweep files") as bar:
        for fut in as_completed(futs):
            results.append(fut.result())
            bar.advance(1)
    counts = {k: int(sum(r[k] for r in results)) for k in ("rows", "parent", "excluded_near_lens", "pool")}
    matched = crossmatch_positives(positives, out, cfg, ctx.seed)
    write_parquet_atomic(matched, out / "positives_matched.parquet")
    gates, extra = _gates(out, cfg, matched, counts)
    counts.update({"sweep_files": len(files), "positives_covered": int(matched.covered.sum()),
                   "positives_matched": int(matched.matched.sum())})
    return Manifest(counts=counts, gates=gates, outputs=["pool/", "positives_matched.parquet"], extra=extra)


def crossmatch_positives(positives: pd.DataFrame, out: Path, cfg: CatalogConfig, seed: int) -> pd.DataFrame:
    """Nearest Tractor row per positive (reported to 5″, matched within 1″); split from the positive's cell."""
    parts = [pd.read_parquet(p) for p in sorted((out / "_parts").glob("*.matches.parquet"))]
    m = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["pos_index", "sep_arcsec", "covered"])
    covered = set(m.pos_index.astype(int))
    near = m.dropna(subset=["sep_arcsec"]).sort_values(["pos_index", "sep_arcsec", "galaxy_id"]).drop_duplicates("pos_index")
    pos = positives.reset_index(drop=True).copy()
    pos["covered"] = pos.index.isin(covered)
    near = near.drop(columns=["covered"]).set_index("pos_index")
    pos = pos.join(near.rename(columns={"sep_arcsec": "match_sep_arcsec"}), how="left", rsuffix="_tractor")
    pos["matched"] = pos.match_sep_arcsec <= cfg.match_radius_arcsec
    pos["healpix_128"] = healpix_nest(pos.ra, pos.dec, cfg.nside)
    pos["healpix_64"] = healpix_nest(pos.ra, pos.dec, cfg.nside_analysis)
    pos["split"] = assign_split(pos.healpix_128, cfg.split_fractions, seed)
    return pos


def _gates(out: Path, cfg: CatalogConfig, matched: pd.DataFrame, counts: dict) -> tuple[list[Gate], dict]:
    cols = ["galaxy_id", "ra", "dec", "type", "split", "pool", "n2_category", "healpix_128", "nobs_z", "mag_r"]
    pool = read_pool(out / "pool", cols)
    n = len(pool)
    gates = [Gate.check("pool_not_empty", n > 0, value=n),
             Gate.check("unique_galaxy_id", not pool.galaxy_id.duplicated().any(), value=int(pool.galaxy_id.duplicated().sum())),
             Gate.check("no_nulls_critical", not pool[["galaxy_id", "ra", "dec", "type", "split", "healpix_128"]].isna().any().any()),
             Gate.check("coordinates_in_range", bool(pool.ra.between(0, 360).all() and pool.dec.between(-90, 90).all())),
             Gate.check("one_split_per_cell", bool((pool.groupby("healpix_128").split.nunique() <= 1).all()))]
    frac = pool.split.value_counts(normalize=True).reindex(list(SPLITS), fill_value=0.0)
    for s in SPLITS:
        gates.append(Gate(name=f"split_fraction_{s}", value=float(frac[s]), lo=cfg.split_fractions[s] - cfg.split_tolerance,
                          hi=cfg.split_fractions[s] + cfg.split_tolerance, message=f"target {cfg.split_fractions[s]:.2f}"))
    per_cat = {c: int((pool.n2_category == c).sum()) for c in RULE_ORDER}
    n2 = float((pool.pool == "N2").mean()) if n else 0.0
    lo, hi = cfg.n2_fraction_bounds
    gates.append(Gate(name="n2_fraction", value=n2, lo=lo, hi=hi, detail=per_cat,
                      message="per category: " + ", ".join(f"{k}={v}" for k, v in per_cat.items())))
    gates.append(Gate(name="types_present", value=int(pool.type.nunique()), fail=2.5, higher_is_better=True,
                      message=", ".join(sorted(pool.type.unique()))))
    cov = matched[matched.covered]
    rate = float(cov.matched.mean()) if len(cov) else float("nan")
    seps = cov.match_sep_arcsec.dropna()
    gates.append(Gate(name="positive_match_rate", value=rate, warn=cfg.min_match_rate, fail=0.5, higher_is_better=True,
                      message=f"{int(cov.matched.sum())}/{len(cov)} positives with sweep coverage within {cfg.match_radius_arcsec}″ (predecessor 93.8%)"))
    gates.append(Gate(name="match_sep_p90_arcsec", value=float(seps.quantile(0.9)) if len(seps) else float("nan"),
                      warn=cfg.match_radius_arcsec, fail=cfg.match_report_radius_arcsec, blocking=False,
                      message="90th percentile of nearest separations"))
    counts.update({f"n2_{k}": v for k, v in per_cat.items()})
    counts.update({f"split_{s}": int((pool.split == s).sum()) for s in SPLITS})
    extra = {"n2_fraction": n2, "n2_per_category": per_cat, "match_rate": rate,
             "sep_quantiles": {str(q): float(seps.quantile(q)) for q in (0.5, 0.9, 0.99)} if len(seps) else {}}
    return gates, extra
