"""Training data: stamps from the store joined with sample.parquet, the safe augmentations, and batching.

Augmentations (safe set only — no brightness, contrast or colour jitter, which create shortcuts): the 8 D4
rotations/flips, integer shifts ≤ max_shift px, Gaussian noise with σ ≤ 0.1 of the (normalised, = 1)
background, and a mild Gaussian PSF blur (σ ≤ 0.6 px), applied per batch in torch on the model's device.
Every random draw is seeded by (seed, epoch, row), so a stamp's augmentation does not depend on the batch,
the worker count or the order, and a resumed epoch replays exactly. Stamps stream from the store
(docs/data.md): no full in-memory copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.stamps.loader import iter_batches, shard_windows
from lensaudit.stamps.normalize import Normalizer
from lensaudit.utils import stable_seed


@dataclass
class TrainTable:
    rows: np.ndarray  # store rows
    label: np.ndarray
    weight: np.ndarray
    tier: np.ndarray
    galaxy_id: np.ndarray
    split: np.ndarray


def load_table(sample: pd.DataFrame, stamps: pd.DataFrame) -> TrainTable:
    """Join on galaxy_id; keep stamps that passed the quality gates."""
    s = labelled_stamps(sample, stamps)
    return TrainTable(
        s.row.to_numpy(np.int64),
        s.label.to_numpy(np.float32),
        s.weight.to_numpy(np.float32),
        s.tier.astype(str).to_numpy(),
        s.galaxy_id.astype(str).to_numpy(),
        s.split.astype(str).to_numpy(),
    )


def aug_params(seed: int, epoch: int, rows: np.ndarray, max_shift: int, noise_frac: float) -> dict:
    """The random draws of the augmentation of each stamp, from ``rng_for(seed, "aug", epoch, row)``: so a
    stamp's augmentation depends only on (seed, epoch, store row), never on the batch it lands in, the
    worker count or the order. Keys: ``k`` (quarter turns), ``flip``, ``dy``, ``dx`` (shift, px), ``blur``
    (Gaussian σ in px, 0 = none; drawn U(0, 0.6), applied when > 0.2), ``noise`` (σ, U(0, noise_frac)) and
    ``noise_seed``."""
    n = len(rows)
    out = {k: np.zeros(n, np.int64) for k in ("k", "flip", "dy", "dx", "noise_seed")}
    out |= {k: np.zeros(n, np.float64) for k in ("blur", "noise")}
    for i, r in enumerate(np.asarray(rows).tolist()):
        g = np.random.default_rng(stable_seed(seed, "aug", epoch, int(r)))
        k, flip, dy, dx = g.integers(4), g.random() < 0.5, *g.integers(-max_shift, max_shift + 1, size=2)
        sig, noise, ns = g.uniform(0.0, 0.6), g.uniform(0.0, noise_frac), g.integers(2**62)
        out["k"][i], out["flip"][i], out["dy"][i], out["dx"][i] = k, flip, dy, dx
        out["blur"][i], out["noise"][i], out["noise_seed"][i] = (sig if sig > 0.2 else 0.0), noise, ns
    return out


def _gauss_kernels(sigma: np.ndarray, radius: int) -> np.ndarray:
    """(n, 2·radius+1) normalised 1-D Gaussians, truncated as scipy's ``gaussian_filter`` does (radius
    int(4σ + 0.5)); σ = 0 gives the identity."""
    t = np.arange(-radius, radius + 1)[None, :]
    s = np.maximum(sigma, 1e-6)[:, None]
    r = (4.0 * sigma + 0.5).astype(int)[:, None]
    k = np.where(np.abs(t) <= r, np.exp(-0.5 * (t / s) ** 2), 0.0)
    k[sigma <= 0] = (t == 0)[0]
    return k / k.sum(axis=1, keepdims=True)


def augment_batch(x: torch.Tensor, p: dict, crop: int) -> torch.Tensor:
    """The safe augmentations of a batch (n, B, S, S) of normalised stamps, vectorised in torch on
    ``x``'s device, then the (shifted) centre crop to ``crop``: D4 (``k`` quarter turns, then a left-right
    flip), a mild Gaussian blur (per-stamp σ, edge pixels repeated as scipy's mode 'nearest'), the shift
    (the crop window moves by (−dy, −dx), i.e. ``np.roll`` by (dy, dx) then centre crop, wrapping at the
    stamp's edge as ``np.roll`` does) and Gaussian noise of σ ``noise`` from a generator seeded by
    ``noise_seed`` on ``x``'s device (CPU and CUDA draw different values for the same seed)."""
    import torch.nn.functional as F

    n, b, s, _ = x.shape
    dev = x.device
    k, flip = torch.as_tensor(p["k"], device=dev), torch.as_tensor(p["flip"], device=dev).bool()
    out = torch.empty_like(x)
    for kk in range(4):
        for ff in (False, True):
            m = (k == kk) & (flip == ff)
            if bool(m.any()):
                y = torch.rot90(x[m], kk, dims=(-2, -1))
                out[m] = torch.flip(y, dims=(-1,)) if ff else y
    x = out
    if bool((p["blur"] > 0).any()):
        rad = 2
        ker = torch.as_tensor(_gauss_kernels(p["blur"], rad), dtype=x.dtype, device=dev)
        ker = ker.repeat_interleave(b, dim=0)  # one kernel per (stamp, band)
        y = F.pad(x.reshape(1, n * b, s, s), (rad, rad, rad, rad), mode="replicate")
        y = F.conv2d(y, ker[:, None, :, None], groups=n * b)
        y = F.conv2d(y, ker[:, None, None, :], groups=n * b)
        x = y.reshape(n, b, s, s)
    a = (s - crop) // 2
    base = torch.arange(crop, device=dev)[None, :] + a
    iy = (base - torch.as_tensor(p["dy"], device=dev)[:, None]) % s  # (n, crop)
    ix = (base - torch.as_tensor(p["dx"], device=dev)[:, None]) % s
    x = x[
        torch.arange(n, device=dev)[:, None, None, None],
        torch.arange(b, device=dev)[None, :, None, None],
        iy[:, None, :, None],
        ix[:, None, None, :],
    ]
    noise = torch.empty_like(x)
    for i, ns in enumerate(p["noise_seed"].tolist()):
        g = torch.Generator(device=dev).manual_seed(int(ns))
        noise[i] = torch.randn(x.shape[1:], generator=g, device=dev, dtype=x.dtype)
    return (
        x + noise * torch.as_tensor(p["noise"], dtype=x.dtype, device=dev)[:, None, None, None]
    ).contiguous()


class StampData:
    """Normalised, cropped (and optionally augmented) stamps streamed from the store: nothing is held but
    the window of shards being read (``buffer_shards`` shards of raw images), so memory does not grow with
    the dataset. :meth:`batches` reads in the shard-aware order of :mod:`lensaudit.stamps.loader`
    (training) or in store order (evaluation), normalises each batch vectorised (:meth:`Normalizer.prepare`,
    the scoring path) and augments it on the target device (:func:`augment_batch`)."""

    def __init__(
        self,
        store,
        table: TrainTable,
        idx: np.ndarray,
        norm: Normalizer,
        crop: int,
        augment: bool,
        seed: int,
        max_shift: int = 5,
        noise_frac: float = 0.1,
        buffer_shards: int = 4,
    ):
        self.store, self.t, self.idx, self.norm, self.crop = store, table, np.asarray(idx), norm, crop
        self.aug, self.seed, self.max_shift, self.noise = augment, seed, max_shift, noise_frac
        self.buffer_shards = buffer_shards
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.idx)

    def shard_order(self, items: np.ndarray, epoch: int) -> np.ndarray:
        """``items`` (positions into this dataset, repeats allowed) rearranged shard-aware: shard order
        shuffled, windows of ``buffer_shards`` shards, shuffled within (seeded by (seed, epoch))."""
        items = np.asarray(items)
        rng = np.random.default_rng(stable_seed(self.seed, "shards", epoch))
        rows = self.t.rows[self.idx[items]]
        return items[np.concatenate(shard_windows(rows, self.store.shard_size, rng, self.buffer_shards))]

    def batches(self, order: np.ndarray, bs: int, device: torch.device | None = None):
        """(x, y, w, j) batches over ``order`` (positions into this dataset): x (n, B, crop, crop) float32 on
        ``device``, labels, weights and table indices ``j``. Reads follow ``order``'s windows: consecutive
        positions are read together (one :meth:`read_images` per ``buffer_shards``·shard_size items)."""
        order = np.asarray(order, np.int64)
        dev = device or torch.device("cpu")
        step = max(bs, self.buffer_shards * self.store.shard_size)
        windows = [np.arange(a, min(a + step, len(order))) for a in range(0, len(order), step)]
        rows = self.t.rows[self.idx[order]]
        for pos, img in iter_batches(self.store, rows, windows, bs, reuse=True):  # img: valid until next
            j = self.idx[order[pos]]
            x = torch.from_numpy(self.norm.prepare(img, None if self.aug else self.crop)).to(dev)
            if self.aug:
                p = aug_params(self.seed, self.epoch, self.t.rows[j], self.max_shift, self.noise)
                x = augment_batch(x, p, self.crop)
            yield x, torch.from_numpy(self.t.label[j]), torch.from_numpy(self.t.weight[j]), j.tolist()


def epoch_order(
    n: int, seed: int, epoch: int, labels: np.ndarray | None = None, balanced: bool = False
) -> np.ndarray:
    """The sample order of an epoch (seeded by (seed, epoch)); balanced: positives oversampled to 1:1."""
    rng = np.random.default_rng(stable_seed(seed, "order", epoch))
    if balanced and labels is not None and labels.sum() > 0:
        pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        pos = rng.choice(pos, size=len(neg), replace=True)
        return rng.permutation(np.concatenate([pos, neg]))
    return rng.permutation(n)
