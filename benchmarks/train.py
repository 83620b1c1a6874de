"""Training throughput (images/s, epoch time) at 64×64 and 101×101 on this machine's device, and DataLoader
throughput with the real augmentations, to show whether the loader or the model is the bottleneck.

    .venv/bin/python benchmarks/train.py [--n 512] [--device cpu|cuda]

On a CUDA device the step is the training loop's: bf16 autocast and channels_last (model and input), AdamW;
after warm-up steps, timed steps with the batch copied from the host each step (as ``fit`` does) and with
batches already on the device; inference (eval, no_grad, bf16 autocast) at ``--infer-batch``; all four
crop/stem pairs; and the same steps on this machine's CPU as the reference (``--ref-cpu``):

    python3 benchmarks/train.py --device cuda --n 512 --batch 256 --steps 20 --warmup 5 --infer-batch 1024
    --ref-cpu

Results go to results/train_cpu.json, or results/train_gpu.json for a CUDA device (``--out-name`` overrides).
"""

from __future__ import annotations

import argparse
import platform
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

CPU_COMBOS = ((48, "standard"), (64, "small"), (64, "standard"), (101, "standard"))
ALL_COMBOS = ((48, "standard"), (64, "small"), (64, "standard"), (101, "small"), (101, "standard"))


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _model(stem: str, dev: torch.device, amp: bool):
    model = create_model("resnet18", stem).to(dev)
    if amp:  # as stages/train.py does on CUDA
        model = model.to(memory_format=torch.channels_last)
    return model, torch.optim.AdamW(model.parameters(), 1e-3)


def train_steps(model, opt, batches, steps: int, dev: torch.device, amp: bool) -> float:
    """Images/s over ``steps`` training steps cycling through ``batches`` (the fit() step: copy, autocast,
    BCE, AdamW)."""
    y = torch.ones(max(len(x) for x in batches), device=dev)
    model.train()
    seen = 0
    _sync(dev)
    t0 = time.perf_counter()
    for k in range(steps):
        x = batches[k % len(batches)].to(dev)
        if amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(x).float().squeeze(1)
        loss = weighted_bce(logits, y[: len(x)], y[: len(x)], 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(x)
    _sync(dev)
    return seen / (time.perf_counter() - t0)


@torch.no_grad()
def infer_steps(model, x, steps: int, dev: torch.device, amp: bool) -> float:
    """Images/s of eval-mode forward passes on batch x (as FrozenModel does: autocast, logits back as
    float)."""
    model.eval()
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        xx = x.to(dev)
        if amp:
            xx = xx.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            out = model(xx).float()
    out.cpu()
    _sync(dev)
    return steps * len(x) / (time.perf_counter() - t0)


def make_store(path: Path, n: int, seed: int = 0) -> None:
    """A store of ``n`` synthetic stamps (noise, a central galaxy, a ring on every 4th), written shard by
    shard (the image array only: training reads nothing else) without holding them all."""
    store = StampStore.create(path, n, shard_size=256)
    yy, xx = np.mgrid[0:101, 0:101]
    r = np.hypot(xx - 50, yy - 50)
    gal, ring = 0.05 * np.exp(-r / 3), 0.02 * np.exp(-0.5 * ((r - 7) / 1.2) ** 2)
    for lo in range(0, n, 256):
        hi = min(lo + 256, n)
        rng = np.random.default_rng((seed, lo))
        img = rng.normal(0, 0.003, (hi - lo, 3, 101, 101)).astype(np.float32) + gal.astype(np.float32)
        img[(np.arange(lo, hi) % 4) == 0] += ring.astype(np.float32)
        store.group["image"][lo:hi] = img


def rss_child(path: str, max_train: int, n_val: int) -> int:
    """Train one epoch (``max_train`` samples, the demo's crop/stem/batch) on the store at ``path`` through
    the stage's own functions (training_data, new_model, fit) and print the peak RSS (getrusage)."""
    import json

    from lensaudit.config import TrainConfig
    from lensaudit.train.loop import CheckpointPaths, fit, new_model, training_data

    store = StampStore.open(path)
    n = store.n
    ids = [f"g{i}" for i in range(n)]
    lab = (np.arange(n) % 4 == 0).astype(int)
    sample = pd.DataFrame(
        {
            "galaxy_id": ids,
            "label": lab,
            "weight": 1.0,
            "tier": np.where(lab == 1, "A", ""),
            "split": np.where(np.arange(n) < n_val, "val", "train"),
        }
    )
    t = load_table(sample, pd.DataFrame({"row": np.arange(n), "galaxy_id": ids, "quality_ok": True}))
    cfg = TrainConfig(
        epochs=1,
        min_epochs=1,
        batch_size=32,
        crop_pix=48,
        stem="standard",
        max_train_samples=max_train,
        threads=2,
    )
    t0 = time.perf_counter()
    data = training_data(store, t, cfg, 1)
    cpu = torch.device("cpu")
    model = new_model(cfg, 1, cpu)
    out = Path(tempfile.mkdtemp())
    paths = CheckpointPaths(out / "best.pt", out / "last.pt", out / "history.jsonl")
    res = fit(model, data.train, data.val, cfg, paths, 1, cpu, data.pos_weight, t.galaxy_id, t.tier)
    # VmHWM: this process's peak resident set since exec (ru_maxrss would carry the forking parent's peak)
    peak = next(
        int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:")
    )
    print(
        json.dumps(
            {
                "n": n,
                "peak_rss_mib": round(peak, 1),
                "wall_s": round(time.perf_counter() - t0, 1),
                "val_auc": res.history[-1]["val_auc"],
            }
        )
    )
    return 0


def rss_scaling(n_demo: int, factor: int, max_train: int, n_val: int) -> dict:
    """Peak RSS of training on a store of ``n_demo`` stamps and on one ``factor`` times larger, each in its
    own fresh subprocess (getrusage ru_maxrss of that process)."""
    import json
    import subprocess

    tmp = Path(tempfile.mkdtemp())
    out = {}
    for n in (n_demo, factor * n_demo):
        make_store(tmp / f"s{n}.zarr", n)
        cmd = [sys.executable, __file__, "--rss-child", str(tmp / f"s{n}.zarr"), str(max_train), str(n_val)]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[n] = json.loads(r.stdout.strip().splitlines()[-1])
        import shutil

        shutil.rmtree(tmp / f"s{n}.zarr")
    small, big = out[n_demo], out[factor * n_demo]
    return {
        "rss_store_sizes": [n_demo, factor * n_demo],
        "rss_runs": [small, big],
        "rss_increase_pct": round(100 * (big["peak_rss_mib"] / small["peak_rss_mib"] - 1), 1),
        "rss_target_increase_pct": 20,
        "rss_method": (
            f"each store size trained in a fresh subprocess: training_data + new_model + fit, 1 epoch of "
            f"{max_train} samples (demo crop 48, standard stem, batch 32), val split the first {n_val} "
            "rows, the rest train (normaliser fitted on up to 2000 of them); peak = VmHWM of the child "
            "(/proc/self/status; getrusage's ru_maxrss keeps the forking parent's peak across exec)"
        ),
        "former_in_memory_cache_mib_at_10x": round(factor * n_demo * 3 * 101 * 101 * 4 / 2**20),
    }


def projection(res: dict, combos) -> dict:
    """A 520k-stamp training epoch from the rates measured above: this machine's time is set by the slower
    of model and loader; the loader's memory is one window (loader_buffer_shards × shard_size raw stamps)
    plus a batch, whatever the store size. Adding workers (more processes/GPUs in data parallel) is
    projected as linear in the model rate: an assumption, not a measurement."""
    window_mib = 4 * 256 * 3 * 101 * 101 * 4 / 2**20
    out = {"projection_520k_window_mib": round(window_mib, 1)}
    for crop, stem in combos:
        key = f"crop{crop}_{stem}"
        rate = min(res[f"{key}_train_img_per_s"], res[f"{key}_loader_img_per_s"])
        out[f"projection_520k_{key}_epoch_h_this_machine"] = round(520_000 / rate / 3600, 2)
        out[f"projection_520k_{key}_epoch_h_per_worker_count"] = {
            k: round(520_000 / (k * rate) / 3600, 2) for k in (1, 2, 4, 8)
        }
        out[f"projection_520k_{key}_loader_only_h"] = round(
            520_000 / res[f"{key}_loader_img_per_s"] / 3600, 2
        )
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        return rss_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument(
        "--combos",
        choices=["cpu", "all"],
        default=None,
        help=(
            "crop/stem pairs: cpu = 64 small, 64 standard, 101 standard; all adds 101 small (default all on "
            "CUDA)"
        ),
    )
    ap.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast + channels_last, as the training loop uses on CUDA (default on for CUDA only)",
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="timed training steps (default: one pass over the n stamps)"
    )
    ap.add_argument("--warmup", type=int, default=0, help="untimed training steps first")
    ap.add_argument(
        "--infer-batch", type=int, default=0, help="also time inference at this batch size (0 = no)"
    )
    ap.add_argument("--infer-steps", type=int, default=20)
    ap.add_argument(
        "--ref-cpu", action="store_true", help="also time the same training steps on this machine's CPU"
    )
    ap.add_argument(
        "--ref-steps", type=int, default=2, help="timed CPU reference steps (after one warm-up step)"
    )
    ap.add_argument("--ref-batch", type=int, default=64)
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument(
        "--rss",
        action="store_true",
        help="also measure peak RSS of training on the demo's store size and 10×",
    )
    ap.add_argument("--rss-n", type=int, default=1342, help="the demo's store size (stamps)")
    ap.add_argument("--rss-only", action="store_true", help="only the RSS scaling, merged into the results")
    ap.add_argument(
        "--out-name", default=None, help="result name under results/ (default train_cpu or train_gpu)"
    )
    a = ap.parse_args()
    if a.rss_only:  # re-measure the RSS scaling alone, merged into the existing results
        import json

        from _common import RESULTS

        prev = json.loads((RESULTS / "train_cpu.json").read_text())
        prev.pop("machine", None)
        save(
            "train_cpu",
            {**prev, **rss_scaling(a.rss_n, 10, 512, 256), "rss_measured_in_a_separate_run": True},
        )
        return 0
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    amp = cuda if a.amp is None else a.amp
    combos = ALL_COMBOS if (a.combos or ("all" if cuda else "cpu")) == "all" else CPU_COMBOS
    torch.backends.cudnn.benchmark = a.cudnn_benchmark
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.003, (a.n, 3, 101, 101)).astype(np.float32)
    store = StampStore.create(tmp / "s.zarr", a.n, shard_size=256)
    store.write(0, img, np.ones_like(img), np.zeros((a.n, 101, 101)))
    ids = [f"b_{i}" for i in range(a.n)]
    t = load_table(
        pd.DataFrame(
            {"galaxy_id": ids, "label": rng.integers(0, 2, a.n), "weight": 1.0, "tier": "", "split": "train"}
        ),
        pd.DataFrame({"row": np.arange(a.n), "galaxy_id": ids, "quality_ok": True}),
    )
    res = {"device": str(dev), "n": a.n, "batch": a.batch}
    if cuda or a.amp is not None or a.steps or a.warmup or a.infer_batch or a.ref_cpu:
        res.update(
            {
                "device_name": torch.cuda.get_device_name(dev)
                if cuda
                else platform.processor() or platform.machine(),
                "torch_version": torch.__version__,
                "cuda_version": torch.version.cuda if cuda else None,
                "amp_bf16_channels_last": amp,
                "cudnn_benchmark": a.cudnn_benchmark,
                "warmup_steps": a.warmup,
                "torch_threads": torch.get_num_threads(),
            }
        )
    for crop, stem in combos:
        ds = StampData(store, t, np.arange(a.n), Normalizer([0.003] * 3), crop, True, 0)
        # the streaming loader of fit(): shard-aware shuffled reads, vectorised normalisation, batch
        # augmentations on the device; best of 2 epochs (shared machine)
        loader = 0.0
        for ep in range(2):
            ds.epoch = ep
            t0 = time.perf_counter()
            batches = [x for x, _, _, _ in ds.batches(ds.shard_order(np.arange(a.n), ep), a.batch, dev)]
            _sync(dev)
            loader = max(loader, a.n / (time.perf_counter() - t0))
        batches = [x.cpu() for x in batches]
        key = f"crop{crop}_{stem}"
        model, opt = _model(stem, dev, amp)
        if a.warmup:
            train_steps(model, opt, batches, a.warmup, dev, amp)
        steps = a.steps or len(batches)
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        train_rate = train_steps(model, opt, batches, steps, dev, amp)
        res[f"{key}_train_img_per_s"] = round(train_rate, 1)
        res[f"{key}_loader_img_per_s"] = round(loader, 1)
        res[f"{key}_loader_over_train"] = round(loader / train_rate, 1)
        res[f"{key}_epoch_s_for_520k"] = round(520_000 / train_rate, 1)
        if cuda:
            res[f"{key}_train_cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            on_dev = [x.to(dev) for x in batches]  # the model alone, without the host-to-device copy
            res[f"{key}_train_img_per_s_resident"] = round(
                train_steps(model, opt, on_dev, steps, dev, amp), 1
            )
            del on_dev
        if a.infer_batch:
            xb = torch.cat(batches)
            xb = xb.repeat((a.infer_batch + len(xb) - 1) // len(xb), 1, 1, 1)[: a.infer_batch].contiguous()
            infer_steps(model, xb, 3, dev, amp)
            res[f"{key}_infer_img_per_s"] = round(infer_steps(model, xb, a.infer_steps, dev, amp), 1)
            if cuda:
                res[f"{key}_infer_img_per_s_resident"] = round(
                    infer_steps(model, xb.to(dev), a.infer_steps, dev, amp), 1
                )
            del xb
        if a.ref_cpu:
            cpu = torch.device("cpu")
            rb = [torch.cat(batches)[: a.ref_batch]]
            m_cpu, o_cpu = _model(stem, cpu, False)
            train_steps(m_cpu, o_cpu, rb, 1, cpu, False)
            res[f"{key}_cpu_ref_train_img_per_s"] = round(
                train_steps(m_cpu, o_cpu, rb, a.ref_steps, cpu, False), 1
            )
            res[f"{key}_cpu_ref_batch"] = len(rb[0])
            del m_cpu, o_cpu
        del model, opt
        if cuda:
            torch.cuda.empty_cache()
    if a.ref_cpu:
        res["cpu_ref_threads"] = torch.get_num_threads()
    res.update(projection(res, combos))
    if a.rss:
        res.update(rss_scaling(a.rss_n, 10, 512, 256))
    save(a.out_name or f"train_{'gpu' if cuda else dev.type}", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
