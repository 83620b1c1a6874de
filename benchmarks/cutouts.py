"""Cutout throughput and store read speed.

- stamps/s for the `coadds` provider and the `service` provider against `lensaudit sky serve` (same machine);
- training-style reads from the stamp store: shuffled batches in the shard-aware order
  (:mod:`lensaudit.stamps.loader`: shard order shuffled, ``--buffer`` shards read per call, shuffled within),
  in one process (``iter_batches(reuse=True)``, training's read) and in a torch DataLoader with 2 worker
  processes (``WorkerBatches``: the workers fill batch slots in shared memory), against the same stamps
  stored one .npz per file (the predecessor's layout, read in random order by a plain Dataset, in this
  process and in a DataLoader with 2 worker processes) on the same disk, in the same run. Target: ≥ 5×;
- the reader paths behind the choice of codec and reader (docs/data.md): zarr-python slice reads of whole
  shards of a zstd store and of an uncompressed store, the direct reader of uncompressed shards
  (``StampStore.read_images``), and tensorstore (zarr3 driver) on the same uncompressed store; random
  single-stamp reads for reference;
- cold reads: the page cache of the store's shard files (and of a sequential-read probe file of
  ``--probe-mib``) is dropped without root by ``posix_fadvise(POSIX_FADV_DONTNEED)`` after ``fsync``,
  checked with ``fincore``-style residency (``os`` has no mincore: we report the warm/cold ratio of the
  probe instead); the cold shuffled-batch read rate is given as MB/s and as % of the probe's cold
  sequential read bandwidth measured in the same run.

The real stamps of the synthetic sky (``--n``) are tiled to ``--rows`` store rows so that reads span many
shards. The machine is shared (2 cores, other engineers' jobs): both sides of each ratio ran in this run.

    .venv/bin/python benchmarks/cutouts.py [--n 400] [--rows 4096] [--buffer 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import save  # noqa: E402
from lensaudit.config import SkyConfig  # noqa: E402
from lensaudit.sky.build import build_sky  # noqa: E402
from lensaudit.sky.server import serve  # noqa: E402
from lensaudit.stamps.loader import WorkerBatches, iter_batches, shard_windows  # noqa: E402
from lensaudit.stamps.store import StampStore  # noqa: E402
from lensaudit.survey.coadds import CoaddReader  # noqa: E402
from lensaudit.survey.cutout_service import CutoutClient  # noqa: E402


class NpzSet(torch.utils.data.Dataset):
    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        with np.load(self.files[i]) as d:
            return torch.from_numpy(np.ascontiguousarray(d["cutout"].transpose(2, 0, 1)))


class ZarrSet(torch.utils.data.Dataset):
    def __init__(self, path, n):
        self.path, self.n, self.store = path, n, None

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if self.store is None:
            self.store = StampStore.open(self.path)
        return torch.from_numpy(self.store.read_image(i))


def rate(ds, order, workers):
    if workers == 0:
        t0 = time.perf_counter()
        for i in order:
            ds[int(i)]
        return len(order) / (time.perf_counter() - t0)
    dl = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, order), batch_size=32, num_workers=workers)
    t0 = time.perf_counter()
    for _ in dl:
        pass
    return len(order) / (time.perf_counter() - t0)


def steady(dl, n: int) -> float:
    """Items/s of a DataLoader with persistent workers over its second pass (worker start-up excluded)."""
    for _ in dl:
        pass
    t0 = time.perf_counter()
    k = 0
    for b in dl:
        k += len(b[0]) if isinstance(b, (tuple, list)) else len(b)
    assert k == n
    return n / (time.perf_counter() - t0)


class _One(torch.utils.data.IterableDataset):
    def __iter__(self):
        yield 0


def dataloader_overhead_s() -> float:
    """Seconds for a DataLoader with 2 worker processes to start, deliver one item and stop: the fixed cost
    that each fresh-loader epoch above pays on both sides (it grows with this process's memory: fork)."""
    t0 = time.perf_counter()
    for _ in torch.utils.data.DataLoader(_One(), batch_size=None, num_workers=2):
        pass
    return time.perf_counter() - t0


def steady_pair(path: Path, rows: np.ndarray, files, order, a) -> tuple[float, float]:
    """(shuffled batches, npz) stamps/s with 2 persistent DataLoader workers, second pass."""
    windows = shard_windows(rows, 256, np.random.default_rng(5), a.buffer)
    dl = WorkerBatches(StampStore.open(path), rows, windows, a.batch, workers=2, persistent=True)
    npz = torch.utils.data.DataLoader(
        torch.utils.data.Subset(NpzSet(files), order), batch_size=32, num_workers=2, persistent_workers=True
    )
    return steady(dl, len(rows)), steady(npz, len(order))


def drop_cache(paths) -> None:
    """Evict the files' pages from the page cache (no root needed): fsync, then POSIX_FADV_DONTNEED."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def shard_files(path: Path) -> list[Path]:
    return sorted(p for p in (path / "image" / "c").rglob("*") if p.is_file())


def seq_read_mb_s(path: Path, block: int = 8 << 20) -> float:
    buf = bytearray(block)
    t0 = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while k := f.readinto(buf):
            n += k
    return n / 1e6 / (time.perf_counter() - t0)


def shuffled_epoch(path: Path, rows: np.ndarray, shard: int, buffer: int, batch: int, workers: int) -> float:
    """Stamps/s of one shuffled-batch epoch in the shard-aware order, images only (the training read)."""
    windows = shard_windows(rows, shard, np.random.default_rng(5), buffer)
    t0 = time.perf_counter()
    n = 0
    st = StampStore.open(path)
    if workers <= 0:  # in this process (training's read); -k: k reader threads reading windows ahead
        for pos, _ in iter_batches(st, rows, windows, batch, threads=-workers, reuse=True):
            n += len(pos)
    else:  # a DataLoader with `workers` worker processes
        for pos, _ in WorkerBatches(st, rows, windows, batch, workers=workers):
            n += len(pos)
    assert n == len(rows)
    return n / (time.perf_counter() - t0)


def tensorstore_paths(path: Path, rows: np.ndarray, buffer: int, single: np.ndarray) -> dict:
    """The same reads through tensorstore (zarr3 driver, default context: its own thread pools): whole
    shards, the shuffled windows of the shard-aware order (one ``oindex`` read per window), random single
    stamps. Bytes checked against the direct reader."""
    import tensorstore as ts

    arr = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / "image")}}).result()
    st = StampStore.open(path)
    n = len(rows)
    assert np.array_equal(arr.oindex[rows[:64]].read().result(), st.read_images(rows[:64]))
    out = {}
    t0 = time.perf_counter()
    for lo in range(0, n, 256):
        arr[lo : lo + 256].read().result()
    out["tensorstore_shard_slices_none_per_s"] = round(n / (time.perf_counter() - t0))
    windows = shard_windows(rows, 256, np.random.default_rng(5), buffer)
    t0 = time.perf_counter()
    for pos in windows:
        arr.oindex[rows[pos]].read().result()
    out["tensorstore_shuffled_windows_none_per_s"] = round(n / (time.perf_counter() - t0))
    buf = np.empty((max(len(p) for p in windows),) + st.read_images(rows[:1]).shape[1:], np.float32)
    t0 = time.perf_counter()
    for pos in windows:
        st.read_images(rows[pos], out=buf[: len(pos)])
    out["direct_reader_shuffled_windows_none_per_s"] = round(n / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for i in single:
        arr[int(i)].read().result()
    out["tensorstore_random_single_none_per_s"] = round(len(single) / (time.perf_counter() - t0))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument(
        "--buffer", type=int, default=4, help="shards per read window (train.loader_buffer_shards)"
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--probe-mib", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(2)
    load_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp())
    build_sky(tmp / "sky", SkyConfig(n_bricks=2, brick_pixels=1200, workers=1), seed=1, workers=1)
    truth = pd.read_parquet(tmp / "sky" / "truth.parquet")
    pos = truth[truth.objid >= 0].sample(min(a.n, int((truth.objid >= 0).sum())), random_state=0)
    reader = CoaddReader(tmp / "sky" / "coadd")
    reader.cutout(pos.ra.iloc[0], pos.dec.iloc[0])
    t0 = time.perf_counter()
    stamps = [reader.cutout(r, d) for r, d in zip(pos.ra, pos.dec)]
    coadds_rate = len(stamps) / (time.perf_counter() - t0)
    with serve(tmp / "sky") as srv:
        client = CutoutClient(srv.url, requests_per_second=1000, concurrency=4, seed=0)
        m = min(200, len(pos))
        t0 = time.perf_counter()
        res = client.fetch_many(list(zip(pos.ra[:m], pos.dec[:m])))
        service_rate = m / (time.perf_counter() - t0)
    n = a.rows
    tile = np.arange(n) % len(stamps)
    img = np.stack([s[0] for s in stamps])
    iv, mb = np.stack([s[1] for s in stamps]), np.stack([s[2] for s in stamps])
    stores = {}
    for codec in ("none", "zstd"):
        st = StampStore.create(tmp / f"{codec}.zarr", n, shard_size=256, codec=codec)
        for lo in range(0, n, 256):
            t = tile[lo : lo + 256]
            st.write(lo, img[t], iv[t], mb[t])
        stores[codec] = tmp / f"{codec}.zarr"
    check = np.random.default_rng(1).integers(0, n, 256)
    exact = bool(np.array_equal(StampStore.open(stores["none"]).read_images(check), img[tile[check]]))
    got = StampStore.open(stores["none"]).read(check)  # all three arrays, direct reader
    exact_read = all(np.array_equal(g, w[tile[check]]) for g, w in zip(got, (img, iv, mb)))
    ex_rows = np.random.default_rng(0).permutation(n)
    ex_win = shard_windows(ex_rows, 256, np.random.default_rng(5), a.buffer)
    exact_workers = all(  # every batch of one 2-worker epoch against the written stamps
        np.array_equal(x.numpy(), img[tile[ex_rows[p]]])
        for p, x in WorkerBatches(StampStore.open(stores["none"]), ex_rows, ex_win, a.batch, workers=2)
    )
    files = []
    for i in range(n):
        f = tmp / "npz" / f"{i}.npz"
        f.parent.mkdir(exist_ok=True)
        np.savez(f, cutout=img[tile[i]].transpose(1, 2, 0), meta_galaxy_id=str(i))
        files.append(f)
    rows = np.random.default_rng(0).permutation(n)
    order = rows[: min(n, 2048)]
    # warm passes (everything in the page cache): shuffled batches vs random .npz files
    path = stores["none"]
    # the machine is shared: the two sides alternate, --reps times each, and the medians are compared
    shuffled_epoch(path, rows, 256, a.buffer, a.batch, 0)
    reps: dict[str, list[float]] = {"sb0": [], "nr0": [], "sb2": [], "sb2t": [], "nr2": []}
    for _ in range(a.reps):
        reps["sb0"].append(shuffled_epoch(path, rows, 256, a.buffer, a.batch, 0))
        reps["nr0"].append(rate(NpzSet(files), order, 0))
    for _ in range(a.reps):
        reps["sb2"].append(shuffled_epoch(path, rows, 256, a.buffer, a.batch, 2))
        reps["sb2t"].append(shuffled_epoch(path, rows, 256, a.buffer, a.batch, -2))
        reps["nr2"].append(rate(NpzSet(files), order, 2))
    sb0, nr0, sb2, sb2t, nr2 = (float(np.median(reps[k])) for k in ("sb0", "nr0", "sb2", "sb2t", "nr2"))
    steady_reps = [steady_pair(path, rows, files, order, a) for _ in range(a.reps)]
    overhead = float(np.median([dataloader_overhead_s() for _ in range(a.reps)]))
    sb2s, nr2s = (float(np.median([r[i] for r in steady_reps])) for i in (0, 1))
    # reader paths: whole-shard reads of each codec through zarr-python, and the direct reader
    paths = {}
    for codec, p in stores.items():
        arr = StampStore.open(p).group["image"]
        t0 = time.perf_counter()
        for lo in range(0, n, 256):
            arr[lo : lo + 256]
        paths[f"zarr_python_shard_slices_{codec}_per_s"] = round(n / (time.perf_counter() - t0))
    st = StampStore.open(path)
    t0 = time.perf_counter()
    for lo in range(0, n, 256):
        st.read_images(np.arange(lo, min(lo + 256, n)))
    paths["direct_reader_shard_slices_none_per_s"] = round(n / (time.perf_counter() - t0))
    zs = StampStore.open(stores["zstd"])
    single = order[:300]
    t0 = time.perf_counter()
    for i in single:
        zs.read_image(int(i))
    paths["random_single_zarr_python_zstd_per_s"] = round(len(single) / (time.perf_counter() - t0))
    t0 = time.perf_counter()
    for i in single:
        st.read_images([int(i)])
    paths["random_single_direct_none_per_s"] = round(len(single) / (time.perf_counter() - t0))
    paths["shuffled_batches_zstd_store_1proc_per_s"] = round(
        shuffled_epoch(stores["zstd"], rows, 256, a.buffer, a.batch, 0)
    )
    paths |= tensorstore_paths(path, rows, a.buffer, single)
    # cold reads: page cache dropped with fadvise, then one shuffled epoch; the probe's cold sequential read
    probe = tmp / "probe.bin"
    with open(probe, "wb") as f:
        blk = np.random.default_rng(2).bytes(8 << 20)
        for _ in range(max(1, a.probe_mib // 8)):
            f.write(blk)
    drop_cache([probe])
    seq_cold = seq_read_mb_s(probe)
    seq_warm = seq_read_mb_s(probe)
    drop_cache([probe])
    seq_cold2 = seq_read_mb_s(probe)
    stamp_mb = img[0].nbytes / 1e6
    cold = {}
    for workers in (0, 2):
        drop_cache(shard_files(path))
        r = shuffled_epoch(path, rows, 256, a.buffer, a.batch, workers)
        cold[f"cold_shuffled_batches_{workers or 1}{'proc' if not workers else 'workers'}_per_s"] = round(r)
        cold[f"cold_shuffled_batches_{workers or 1}{'proc' if not workers else 'workers'}_mb_s"] = round(
            r * stamp_mb, 1
        )
        cold[f"cold_pct_of_seq_bandwidth_{workers or 1}{'proc' if not workers else 'workers'}"] = round(
            100 * r * stamp_mb / max(seq_cold, seq_cold2), 1
        )
    save(
        "cutouts",
        {
            "load_average_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
            "dataloader_2workers_start_stop_s": round(overhead, 3),
            "dataloader_overhead_note": (
                "an empty DataLoader with 2 worker processes started, iterated and stopped in this process "
                "(median of reps): paid by every fresh-loader epoch, both sides; the store's epoch of "
                "store_rows stamps takes store_rows / shuffled_batches_per_s_2workers seconds in all"
            ),
            "note": (
                "shared machine (2 cores, other engineers' jobs running: see load_average_1min_start_end); "
                "each ratio's sides ran in this run, alternating; 2workers = a fresh torch DataLoader with 2 "
                "worker processes per epoch on both sides (store: lensaudit.stamps.loader.WorkerBatches, "
                "start-up included; npz: a map-style Dataset, batch 32); 1proc = iter_batches(reuse=True), "
                "training's read, against np.load per file"
            ),
            "stamps_real": len(stamps),
            "store_rows": n,
            "store_bytes_per_image_mb": round(stamp_mb, 4),
            "shard_size": 256,
            "buffer_shards": a.buffer,
            "batch": a.batch,
            "bytes_exact_vs_written": exact,
            "bytes_exact_read_all_arrays": exact_read,
            "bytes_exact_2worker_epoch": exact_workers,
            "coadds_stamps_per_s": round(coadds_rate, 1),
            "service_stamps_per_s": round(service_rate, 1),
            "service_all_ok": all(r.ok for r in res),
            "shuffled_batches_per_s_1proc": round(sb0),
            "npz_random_per_s_1proc": round(nr0),
            "shuffled_batches_per_s_2workers": round(sb2),
            "npz_random_per_s_2workers": round(nr2),
            "reps_per_s": {k: [round(x) for x in v] for k, v in reps.items()},
            "ratio_1proc": round(sb0 / nr0, 2),
            "ratio_2workers": round(sb2 / nr2, 2),
            "shuffled_batches_per_s_2workers_steady": round(sb2s),
            "npz_random_per_s_2workers_steady": round(nr2s),
            "ratio_2workers_steady": round(sb2s / nr2s, 2),
            "steady_method": "persistent DataLoader workers, 2nd pass timed (no start-up), both sides",
            "shuffled_batches_per_s_2reader_threads": round(sb2t),
            "ratio_2reader_threads_vs_npz_2workers": round(sb2t / nr2, 2),
            "target_ratio": 5,
            "reader_paths": paths,
            "tensorstore": (
                "tensorstore 0.1.86 zarr3 driver on the same uncompressed store, in reader_paths "
                "(tensorstore_*); bytes equal to the direct reader's"
            ),
            "seq_probe_mib": a.probe_mib,
            "seq_read_cold_mb_s": round(seq_cold, 1),
            "seq_read_cold_repeat_mb_s": round(seq_cold2, 1),
            "seq_read_warm_mb_s": round(seq_warm, 1),
            **cold,
            "cold_method": "fsync + posix_fadvise(POSIX_FADV_DONTNEED) on every shard file / the probe (no "
            "root); warm vs cold probe rates show whether the eviction took effect",
        },
    )
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)  # ~2 GB of stores, .npz files and the probe
    return 0


if __name__ == "__main__":
    sys.exit(main())
