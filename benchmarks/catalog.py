"""Catalog stage throughput on ≥ 5×10⁶ rows with the real sweep columns (written once as Parquet parts):
the per-partition pipeline (cuts, N2 rules, HEALPix, split, exclusion) on a Dask LocalCluster against a plain
single-process pandas reference doing the same work in the same run. Reports rows/s and peak memory
(driver + workers). Target: Dask ≤ 2.5× the reference wall time on 2 cores, < 2 GB.

FITS ingest (``--fits-files`` sweep files of ``--fits-rows`` rows in the exact 130-column DR10 layout,
written by ``write_sweep``): the stage's reader (``read_sweep``: fitsio, the needed columns, checked and
converted to a DataFrame) against astropy's memmap reader of the same columns (the former path) and against
a bare ``fitsio`` decode of the same columns of the same files (the reference: ≥ 70% target); warm page
cache, alternating repetitions, medians. Memory per worker is the peak RSS of one task (read one file's
chunk + the partition pipeline) in a fresh subprocess. From these, the full DR10 south pass is projected on
N Dask workers with the file and row counts given by ``--dr10-files`` / ``--dr10-rows`` (assumptions,
recorded in the output).

    .venv/bin/python benchmarks/catalog.py [--rows 5000000] [--parts 20] [--workers 2] [--fits-files 3]
        [--fits-rows 300000]
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


def make_sweep(path: Path, n: int, seed: int) -> None:
    """A sweep file of ``n`` rows in the exact DR10 layout; the catalogue's columns filled as make_part."""
    from lensaudit.survey.sweeps import empty_sweep_table, write_sweep

    make_part(path.with_suffix(".parquet"), n, seed)
    df = pd.read_parquet(path.with_suffix(".parquet"))
    rows = empty_sweep_table(n)
    for c in SWEEP_READ:
        rows[c] = df[c].to_numpy()
    write_sweep(path, rows, 0, -20, 60, 30)
    path.with_suffix(".parquet").unlink()


def fits_child(path: str, nparts: int) -> int:
    """One catalog task in a fresh process (the stage's reader on chunk 0 of ``nparts`` + the partition
    pipeline): prints its peak RSS and the baseline RSS after imports."""
    import json
    import resource

    from lensaudit.survey.sweeps import read_sweep, sweep_nrows

    cfg = CatalogConfig()
    rng = np.random.default_rng(9)
    excl = ExclusionIndex(rng.uniform(0, 60, 30000), rng.uniform(-20, 30, 30000), 11.0)
    import psutil

    base = psutil.Process().memory_info().rss / 2**20  # resident now, after imports (ru_maxrss: peak so far)
    n = sweep_nrows(path)
    b = np.linspace(0, n, nparts + 1).astype(int)
    raw = read_sweep(path, SWEEP_READ, rows=(int(b[0]), int(b[1])))
    build_partition(raw, cfg, 1, excl, rng.uniform(0, 60, 5000), rng.uniform(-20, 30, 5000), {})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": int(b[1] - b[0]), "baseline_mib": round(base, 1), "peak_mib": round(peak, 1)}))
    return 0


def fits_ingest(tmp: Path, n_files: int, n_rows: int, reps: int) -> dict:
    import json
    import subprocess

    import fitsio
    from astropy.io import fits

    from lensaudit.survey.sweeps import _read_hdu, read_sweep

    files = []
    for k in range(n_files):
        f = tmp / f"sweep-{k:03d}p000-{k:03d}p005.fits"
        make_sweep(f, n_rows, 100 + k)
        files.append(str(f))

    def astropy_memmap() -> int:
        n = 0
        for f in files:
            with fits.open(f, memmap=True) as h:
                n += len(_read_hdu(h, f, SWEEP_READ))
        return n

    def stage_reader() -> int:
        return sum(len(read_sweep(f, SWEEP_READ)) for f in files)

    def raw_fitsio() -> int:
        return sum(len(fitsio.read(f, columns=SWEEP_READ, ext=1)) for f in files)

    times: dict[str, list[float]] = {"astropy_memmap": [], "stage_fitsio": [], "raw_fitsio": []}
    fns = {"astropy_memmap": astropy_memmap, "stage_fitsio": stage_reader, "raw_fitsio": raw_fitsio}
    for fn in fns.values():  # warm the page cache
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            assert fn() == n_files * n_rows
            times[k].append(time.perf_counter() - t0)
    rate = {k: n_files * n_rows / float(np.median(v)) for k, v in times.items()}
    # one task of the stage: its rows of the file read, then the partition pipeline; single process
    cfg = CatalogConfig()
    rng = np.random.default_rng(9)
    excl = ExclusionIndex(rng.uniform(0, 60, 30000), rng.uniform(-20, 30, 30000), 11.0)
    pra, pdec = rng.uniform(0, 60, 5000), rng.uniform(-20, 30, 5000)
    t0 = time.perf_counter()
    for f in files:
        build_partition(read_sweep(f, SWEEP_READ), cfg, 1, excl, pra, pdec, {"sweep_file": Path(f).name})
    task_rate = n_files * n_rows / (time.perf_counter() - t0)
    r = subprocess.run(
        [sys.executable, __file__, "--fits-child", files[0], "1"], capture_output=True, text=True, check=True
    )
    mem = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "fits_files": n_files,
        "fits_rows_per_file": n_rows,
        "fits_file_mib": round(Path(files[0]).stat().st_size / 2**20, 1),
        "fits_columns_read": len(SWEEP_READ),
        "fits_reps": reps,
        "fits_astropy_memmap_rows_per_s": round(rate["astropy_memmap"]),
        "fits_stage_fitsio_rows_per_s": round(rate["stage_fitsio"]),
        "fits_raw_fitsio_rows_per_s": round(rate["raw_fitsio"]),
        "fits_stage_over_raw": round(rate["stage_fitsio"] / rate["raw_fitsio"], 3),
        "fits_astropy_over_raw": round(rate["astropy_memmap"] / rate["raw_fitsio"], 3),
        "fits_target_stage_over_raw": 0.7,
        "task_rows_per_s_1proc": round(task_rate),
        "task_memory": mem,
        "task_mib_per_million_rows": round((mem["peak_mib"] - mem["baseline_mib"]) / (mem["rows"] / 1e6), 1),
    }


def projection(fits: dict, dr10_files: int, dr10_rows: float, workers: list[int]) -> dict:
    """The DR10 south pass from the measured single-process task rate, assuming linear scaling with Dask
    workers (one core each; the stage's tasks are independent files/chunks) and a chunk of
    rows/file ÷ engine.partitions_per_file rows per task in memory at a time."""
    from lensaudit.config import EngineConfig

    per_file = dr10_rows / dr10_files
    chunk = per_file / EngineConfig().partitions_per_file
    mem = fits["task_memory"]["baseline_mib"] + fits["task_mib_per_million_rows"] * chunk / 1e6
    return {
        "dr10_south_files_assumed": dr10_files,
        "dr10_south_rows_assumed": dr10_rows,
        "dr10_rows_per_file": round(per_file),
        "dr10_projection_hours_by_workers": {
            n: round(dr10_rows / (fits["task_rows_per_s_1proc"] * n) / 3600, 2) for n in workers
        },
        "dr10_projection_ingest_only_hours_by_workers": {
            n: round(dr10_rows / (fits["fits_stage_fitsio_rows_per_s"] * n) / 3600, 2) for n in workers
        },
        "dr10_projection_mib_per_worker": round(mem),
        "dr10_projection_mib_per_worker_by_partitions_per_file": {
            k: round(
                fits["task_memory"]["baseline_mib"] + fits["task_mib_per_million_rows"] * per_file / k / 1e6
            )
            for k in (1, 2, 4, 8)
        },
        "dr10_projection_basis": (
            "hours = rows / (measured 1-process task rate × workers): linear scaling assumed, not measured "
            "beyond 2 workers; memory per worker = measured baseline + measured MiB per million rows × rows "
            "per task (rows per file / engine.partitions_per_file, the default)"
        ),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--fits-child":
        return fits_child(sys.argv[2], int(sys.argv[3]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--parts", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--fits-files", type=int, default=3)
    ap.add_argument("--fits-rows", type=int, default=300_000)
    ap.add_argument("--fits-reps", type=int, default=3)
    ap.add_argument(
        "--fits-only", action="store_true", help="only the FITS ingest (merged into catalog.json)"
    )
    ap.add_argument("--dr10-files", type=int, default=1436, help="DR10 south sweep files (assumed)")
    ap.add_argument("--dr10-rows", type=float, default=2.8e9, help="DR10 south sweep rows (assumed)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    fits = fits_ingest(tmp, a.fits_files, a.fits_rows, a.fits_reps)
    fits.update(projection(fits, a.dr10_files, a.dr10_rows, [1, 2, 8, 32, 128]))
    if a.fits_only:
        import json

        from _common import RESULTS

        prev = json.loads((RESULTS / "catalog.json").read_text())
        prev.pop("machine", None)
        save("catalog", {**prev, **fits, "fits_measured_in_a_separate_run_from_the_dask_numbers": True})
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        return 0
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
            **fits,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
