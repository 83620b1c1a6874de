"""Training throughput (images/s, epoch time) at 64×64 and 101×101 on this machine's device, and DataLoader
throughput with the real augmentations, to show whether the loader or the model is the bottleneck.

    .venv/bin/python benchmarks/train.py [--n 512] [--device cpu|cuda]
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

from lensaudit.stamps.normalize import Normalizer  # noqa: E402
from lensaudit.stamps.store import StampStore  # noqa: E402
from lensaudit.train.data import StampData, load_table  # noqa: E402
from lensaudit.train.loop import weighted_bce  # noqa: E402
from lensaudit.train.models import create_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    dev = torch.device(a.device)
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.003, (a.n, 3, 101, 101)).astype(np.float32)
    store = StampStore.create(tmp / "s.zarr", a.n, shard_size=256)
    store.write(0, img, np.ones_like(img), np.zeros((a.n, 101, 101)))
    ids = [f"b_{i}" for i in range(a.n)]
    t = load_table(pd.DataFrame({"galaxy_id": ids, "label": rng.integers(0, 2, a.n), "weight": 1.0, "tier": "", "split": "train"}),
                   pd.DataFrame({"row": np.arange(a.n), "galaxy_id": ids, "quality_ok": True}))
    res = {"device": str(dev), "n": a.n, "batch": a.batch}
    for crop, stem in ((64, "small"), (64, "standard"), (101, "standard")):
        ds = StampData(store, t, np.arange(a.n), Normalizer([0.003] * 3), crop, True, 0)
        t0 = time.perf_counter()
        batches = [torch.stack([ds[i][0] for i in range(s, min(s + a.batch, a.n))]) for s in range(0, a.n, a.batch)]
        loader = a.n / (time.perf_counter() - t0)
        model = create_model("resnet18", stem).to(dev)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)
        y = torch.ones(a.batch, device=dev)
        t0 = time.perf_counter()
        for x in batches:
            x = x.to(dev)
            loss = weighted_bce(model(x).squeeze(1), y[: len(x)], y[: len(x)], 1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_rate = a.n / (time.perf_counter() - t0)
        res[f"crop{crop}_{stem}_train_img_per_s"] = round(train_rate, 1)
        res[f"crop{crop}_{stem}_loader_img_per_s"] = round(loader, 1)
        res[f"crop{crop}_{stem}_epoch_s_for_520k"] = round(520_000 / train_rate, 1)
    save(f"train_{dev.type}", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
