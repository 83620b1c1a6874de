"""The training loop: weighted BCE, AdamW, warm-up + cosine schedule, early stopping on the spatial
validation AUC, exact resume from ``last.pt``, red flags (NaN loss with batch ids, AUC stuck at 0.5); and its
setup (:func:`training_data`: the normaliser and the datasets; :func:`new_model`: the seeded model).

Loss: ``Σ w_i·p_i·BCE(z_i, y_i) / Σ w_i·p_i`` with w the sample weight (Tier-A 1.0, Tier-B 0.5, negatives 1.0)
and p the positive-class weight (``pos_weight``, default n_neg/n_pos of the training split) for positives.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lensaudit.audit.metrics import ece
from lensaudit.config import TrainConfig
from lensaudit.errors import LensAuditError
from lensaudit.stamps.normalize import Normalizer, normalizer_from_sigmas, stamp_mad_sigma
from lensaudit.stamps.store import StampStore
from lensaudit.train.data import StampData, TrainTable, epoch_order
from lensaudit.train.models import create_model
from lensaudit.utils import atomic_write_bytes, stable_seed


class TrainingRedFlag(LensAuditError):
    """Training stopped on a red flag (NaN loss, non-finite stamp, AUC stuck at 0.5)."""

    exit_code = 6


def weighted_bce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """Σ w·p·BCE / Σ w·p, with p = pos_weight for positives and 1 for negatives."""
    p = torch.where(y > 0.5, torch.full_like(w, pos_weight), torch.ones_like(w))
    ww = w * p
    return (ww * F.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum() / ww.sum().clamp_min(
        1e-12
    )


def lr_lambda(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    total = max(warm + 1, cfg.epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    floor = cfg.lr_min / cfg.lr
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def val_metrics(p: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    if len(np.unique(y)) < 2:
        return {
            "val_auc": float("nan"),
            "recall_at_p90": float("nan"),
            "precision_at_r90": float("nan"),
            "ece": float("nan"),
        }
    prec, rec, _ = precision_recall_curve(y, p)
    r90 = rec[prec >= 0.9]
    p90 = prec[rec >= 0.9]
    return {
        "val_auc": float(roc_auc_score(y, p)),
        "recall_at_p90": float(r90.max()) if len(r90) else 0.0,
        "precision_at_r90": float(p90.max()) if len(p90) else 0.0,
        "ece": ece(p, y),
    }


@dataclass(frozen=True)
class CheckpointPaths:
    """Where :func:`fit` keeps its state: ``best`` (the weights of the best val-AUC epoch: the frozen
    model), ``last`` (model, optimizer, scheduler and early-stopping counters after the last finished epoch:
    the resume point) and ``history`` (one JSON record per finished epoch)."""

    best: Path
    last: Path
    history: Path


@dataclass
class TrainData:
    """The training and validation datasets of one run, with what was fitted on the training split."""

    train: StampData
    val: StampData
    norm: Normalizer
    #: the positive-class weight of the loss (``train.pos_weight``, or n_neg/n_pos of the training split)
    pos_weight: float
    n_pos: int


def training_data(store: StampStore, t: TrainTable, cfg: TrainConfig, seed: int) -> TrainData:
    """The normaliser (σ per band from ≤ 2000 seeded training stamps) and the train (augmented) / val
    datasets, streamed from the store ``train.loader_buffer_shards`` shards at a time."""
    tr, va = np.flatnonzero(t.split == "train"), np.flatnonzero(t.split == "val")
    rng = np.random.default_rng(stable_seed(seed, "norm"))
    fit_rows = t.rows[rng.choice(tr, size=min(len(tr), 2000), replace=False)] if len(tr) else t.rows[:0]
    fit_rows = np.sort(fit_rows)
    sig = [stamp_mad_sigma(store.read_images(fit_rows[a : a + 256])) for a in range(0, len(fit_rows), 256)]
    norm = normalizer_from_sigmas(
        np.concatenate(sig) if sig else np.zeros((0, len(store.bands))), cfg.normalization == "robust_asinh"
    )
    buf = cfg.loader_buffer_shards
    train_ds = StampData(
        store, t, tr, norm, cfg.crop_pix, cfg.augment, seed, cfg.max_shift_pix, cfg.noise_sigma_frac, buf
    )
    val_ds = StampData(store, t, va, norm, cfg.crop_pix, False, seed, buffer_shards=buf)
    n_pos, n_neg = float(t.label[tr].sum()), float((t.label[tr] == 0).sum())
    pos_weight = cfg.pos_weight or (n_neg / max(n_pos, 1.0))
    return TrainData(train_ds, val_ds, norm, pos_weight, int(n_pos))


def new_model(cfg: TrainConfig, seed: int, device: torch.device) -> torch.nn.Module:
    """The configured architecture, seeded, on ``device`` (channels-last on CUDA); pins torch's CPU threads to
    ``train.threads`` first when set (CPU reductions depend on the thread count)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(stable_seed(seed, "model"))
    model = create_model(cfg.arch, cfg.stem).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


@dataclass
class FitResult:
    best_epoch: int
    best_auc: float
    epochs_run: int
    stopped: str
    history: list[dict]


@torch.no_grad()
def predict(model, ds, bs: int, device: torch.device) -> np.ndarray:
    model.eval()
    out = []
    for x, _, _, _ in ds.batches(np.arange(len(ds)), bs, device):
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(torch.sigmoid(model(x).float().squeeze(1)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def fit(
    model,
    train_ds,
    val_ds,
    cfg: TrainConfig,
    paths: CheckpointPaths,
    seed: int,
    device: torch.device,
    pos_weight: float,
    ids: np.ndarray,
    tiers: np.ndarray,
    on_epoch: Callable[[dict], None] | None = None,
    stop_after_steps: int | None = None,
) -> FitResult:
    """Train with checkpoints at ``paths``; resumes from ``paths.last`` (and ``paths.history``) when
    present."""
    torch.manual_seed(stable_seed(seed, "init"))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_train = (
        len(train_ds) if not cfg.balanced_sampler else 2 * int((train_ds.t.label[train_ds.idx] == 0).sum())
    )
    n_train = min(n_train, cfg.max_train_samples or n_train)
    steps = max(1, math.ceil(n_train / cfg.batch_size))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, steps, cfg))
    start, best_auc, best_epoch, bad, history = 0, -1.0, -1, 0, []
    last = paths.last
    if last.is_file():
        ck = torch.load(last, map_location=device, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start, best_auc, best_epoch, bad = (
            int(ck["epoch"]) + 1,
            float(ck["best_auc"]),
            int(ck["best_epoch"]),
            int(ck["bad_epochs"]),
        )
        history = [json.loads(line) for line in paths.history.read_text().splitlines()][:start]
    stopped, total_steps = "max_epochs", 0
    val_y = val_ds.t.label[val_ds.idx]
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(stable_seed(seed, "epoch", epoch))
        model.train()
        train_ds.epoch = epoch
        order = epoch_order(len(train_ds), seed, epoch, train_ds.t.label[train_ds.idx], cfg.balanced_sampler)[
            :n_train
        ]
        losses = []
        for x, y, w, j in train_ds.batches(train_ds.shard_order(order, epoch), cfg.batch_size, device):
            if not torch.isfinite(x).all():
                bad_ids = [str(ids[k]) for k, xx in zip(j, x) if not torch.isfinite(xx).all()]
                raise TrainingRedFlag(f"non-finite stamp(s) in epoch {epoch}: {', '.join(bad_ids[:10])}")
            if cfg.tier_b_label_smoothing > 0:
                y = torch.where(torch.tensor(tiers[j] == "B"), y * (1 - cfg.tier_b_label_smoothing), y)
            x, y, w = x.to(device), y.to(device), w.to(device)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(x).float().squeeze(1)
            loss = weighted_bce(logits, y, w, pos_weight)
            if not torch.isfinite(loss):
                raise TrainingRedFlag(
                    f"NaN loss in epoch {epoch}; batch galaxy_ids: {', '.join(str(ids[k]) for k in j[:20])}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            total_steps += 1
            if stop_after_steps is not None and total_steps >= stop_after_steps:
                raise KeyboardInterrupt("stopped for the resume test")
        pv = predict(model, val_ds, cfg.batch_size, device)
        m = val_metrics(pv, val_y)
        with torch.no_grad():
            vl = (
                float(
                    weighted_bce(
                        torch.logit(torch.tensor(pv).clamp(1e-6, 1 - 1e-6)),
                        torch.tensor(val_y),
                        torch.tensor(val_ds.t.weight[val_ds.idx]),
                        pos_weight,
                    )
                )
                if len(pv)
                else float("nan")
            )
        rec = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)) if losses else float("nan"),
            "val_loss": vl,
            **m,
            "lr": opt.param_groups[0]["lr"],
            "epoch_s": round(time.perf_counter() - t0, 2),
        }
        history.append(rec)
        improved = np.isfinite(m["val_auc"]) and m["val_auc"] > best_auc
        if improved:
            best_auc, best_epoch, bad = m["val_auc"], epoch, 0
            _save(paths.best, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            bad += 1
        # the history first and atomically: a kill before last.pt leaves one line too many, which the resume
        # trims (``[:start]``); the other order would lose an epoch's record
        atomic_write_bytes(paths.history, "".join(json.dumps(h) + "\n" for h in history).encode())
        _save(
            last,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "best_auc": best_auc,
                "best_epoch": best_epoch,
                "bad_epochs": bad,
            },
        )
        if on_epoch:
            on_epoch(rec)
        recent = [h["val_auc"] for h in history[-cfg.stuck_auc_epochs :]]
        if (
            len(recent) == cfg.stuck_auc_epochs
            and all(abs(a - 0.5) < 0.02 for a in recent if np.isfinite(a))
            and epoch + 1 >= cfg.min_epochs
        ):
            raise TrainingRedFlag(f"val AUC stuck at 0.5 for {cfg.stuck_auc_epochs} epochs: {recent}")
        if epoch + 1 >= cfg.min_epochs and bad >= cfg.patience:
            stopped = f"early stop: no val AUC gain for {cfg.patience} epochs"
            break
    return FitResult(best_epoch, best_auc, len(history), stopped, history)


def _save(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
