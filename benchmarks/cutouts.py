"""Cutout throughput and store read speed.

- stamps/s for the `coadds` provider and the `service` provider against `lensaudit sky serve` (same machine);
- random single-stamp reads/s from the Zarr store (single process and a DataLoader with 2 workers) against
  the same stamps stored one .npz per file (the predecessor's layout) on the same disk. Target: ≥ 5×.

    .venv/bin/python benchmarks/cutouts.py [--n 600]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=600)
    a = ap.parse_args()
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
    n = len(stamps)
    store = StampStore.create(tmp / "s.zarr", n, shard_size=256)
    store.write(
        0,
        np.stack([s[0] for s in stamps]),
        np.stack([s[1] for s in stamps]),
        np.stack([s[2] for s in stamps]),
    )
    files = []
    for i, s in enumerate(stamps):
        f = tmp / "npz" / f"{i}.npz"
        f.parent.mkdir(exist_ok=True)
        np.savez(f, cutout=s[0].transpose(1, 2, 0), meta_galaxy_id=str(i))
        files.append(f)
    order = np.random.default_rng(0).permutation(n)
    zr0, nr0 = rate(ZarrSet(tmp / "s.zarr", n), order, 0), rate(NpzSet(files), order, 0)
    zr2, nr2 = rate(ZarrSet(tmp / "s.zarr", n), order, 2), rate(NpzSet(files), order, 2)
    save(
        "cutouts",
        {
            "stamps": n,
            "coadds_stamps_per_s": round(coadds_rate, 1),
            "service_stamps_per_s": round(service_rate, 1),
            "service_all_ok": all(r.ok for r in res),
            "store_read_per_s_1proc": round(zr0),
            "npz_read_per_s_1proc": round(nr0),
            "store_read_per_s_2workers": round(zr2),
            "npz_read_per_s_2workers": round(nr2),
            "ratio_1proc": round(zr0 / nr0, 2),
            "ratio_2workers": round(zr2 / nr2, 2),
            "target_ratio": 5,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
