"""Catalog stage throughput on ≥ 5×10⁶ rows with the real sweep columns (written once as Parquet parts):
the per-partition pipeline (cuts, N2 rules, HEALPix, split, exclusion) on a Dask LocalCluster against a plain
single-process pandas reference doing the same work in the same run. Reports rows/s and peak memory
(driver + workers). Target: Dask ≤ 2.5× the reference wall time on 2 cores, < 2 GB.

    .venv/bin/python benchmarks/catalog.py [--rows 5000000] [--parts 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, save  # noqa: E402
from lensaudit.catalog.columns import SWEEP_READ  # noqa: E402
from lensaudit.catalog.pool import build_partition  # noqa: E402
from lensaudit.catalog.spatial import ExclusionIndex  # noqa: E402
from lensaudit.config import CatalogConfig  # noqa: E402
from lensaudit.survey.sweeps import sweep_dtype  # noqa: E402


def make_part(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dt = sweep_dtype()
    d = {}
    for c in SWEEP_READ:
        kind = dt[c].kind
        if c == "TYPE":
            d[c] = rng.choice(["PSF", "REX", "EXP", "DEV", "SER"], n)
        elif c == "BRICKNAME":
            d[c] = np.full(n, f"{seed:04d}p000")
        elif c == "RA":
            d[c] = rng.uniform(0, 60, n)
        elif c == "DEC":
            d[c] = rng.uniform(-20, 30, n)
        elif c.startswith("NOBS"):
            d[c] = rng.poisson(4, n).astype(np.int16)
        elif c.startswith("FLUX"):
            d[c] = rng.lognormal(0, 1.2, n).astype(np.float32)
        elif c == "OBJID":
            d[c] = np.arange(n, dtype=np.int32)
        elif kind in "iu":
            d[c] = rng.integers(0, 3, n).astype(dt[c].base)
        else:
            d[c] = rng.uniform(0.01, 3.0, n).astype(np.float32)
    d["SHAPE_E1"] = rng.normal(0, 0.2, n).astype(np.float32)
    d["SHAPE_E2"] = rng.normal(0, 0.2, n).astype(np.float32)
    d["MASKBITS"] = np.where(rng.random(n) < 0.05, 2, 0).astype(np.int32)
    d["PSFDEPTH_R"] = rng.uniform(500, 3000, n).astype(np.float32)
    pd.DataFrame(d).to_parquet(path)


def work(path: str, cfg: CatalogConfig, excl, pos_ra, pos_dec) -> int:
    res = build_partition(
        pd.read_parquet(path), cfg, 1, excl, pos_ra, pos_dec, {"sweep_file": Path(path).name}
    )
    return len(res.pool)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    files = []
    for k in range(a.parts):
        f = tmp / f"part-{k:03d}.parquet"
        make_part(f, a.rows // a.parts, k)
        files.append(str(f))
    cfg = CatalogConfig()
    rng = np.random.default_rng(9)
    excl = ExclusionIndex(rng.uniform(0, 60, 30000), rng.uniform(-20, 30, 30000), 11.0)
    pos_ra, pos_dec = rng.uniform(0, 60, 5000), rng.uniform(-20, 30, 5000)
    with PeakRSS() as mem_ref:
        t0 = time.perf_counter()
        n_ref = sum(work(f, cfg, excl, pos_ra, pos_dec) for f in files)
        t_ref = time.perf_counter() - t0
    from dask.distributed import Client, LocalCluster

    with PeakRSS() as mem_dask:
        cluster = LocalCluster(
            n_workers=a.workers, threads_per_worker=1, memory_limit="2GB", dashboard_address=None
        )
        client = Client(cluster)
        t0 = time.perf_counter()
        ex = client.scatter(excl, broadcast=True)
        n_dask = sum(client.gather(client.map(work, files, cfg=cfg, excl=ex, pos_ra=pos_ra, pos_dec=pos_dec)))
        t_dask = time.perf_counter() - t0
        client.close()
        cluster.close()
    assert n_dask == n_ref
    save(
        "catalog",
        {
            "rows": a.rows,
            "parts": a.parts,
            "workers": a.workers,
            "pool_rows": n_ref,
            "pandas_s": round(t_ref, 1),
            "pandas_rows_per_s": round(a.rows / t_ref),
            "pandas_peak_mib": round(mem_ref.peak),
            "dask_s": round(t_dask, 1),
            "dask_rows_per_s": round(a.rows / t_dask),
            "dask_peak_mib_incl_workers": round(mem_dask.peak),
            "dask_over_pandas_wall": round(t_dask / t_ref, 2),
            "target_ratio": 2.5,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
