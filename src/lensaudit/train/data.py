"""Training data: stamps from the store joined with sample.parquet, the safe augmentations, and batching.

Augmentations (safe set only — no brightness, contrast or colour jitter, which create shortcuts): the 8 D4
rotations/flips, integer shifts ≤ max_shift px, Gaussian noise with σ ≤ 0.1 of the (normalised, = 1)
background, and a mild Gaussian PSF blur (σ ≤ 0.6 px). Every random draw is seeded by (seed, epoch, row),
so batches do not depend on worker count or order, and a resumed epoch replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lensaudit.stamps.labelled import labelled_stamps
from lensaudit.stamps.normalize import Normalizer, center_crop
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


def augment(x: np.ndarray, seed: int, max_shift: int, noise_frac: float) -> np.ndarray:
    """One stamp (B, S, S), normalised: D4, shift, noise, mild blur."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = np.rot90(x, k=int(rng.integers(4)), axes=(-2, -1))
    if rng.random() < 0.5:
        x = x[..., ::-1]
    if max_shift:
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        x = np.roll(x, (int(dy), int(dx)), axis=(-2, -1))
    sig = rng.uniform(0.0, 0.6)
    if sig > 0.2:
        x = gaussian_filter(x, sigma=(0, sig, sig), mode="nearest")
    x = x + rng.normal(0.0, rng.uniform(0, noise_frac), size=x.shape)
    return np.ascontiguousarray(x, dtype=np.float32)


class StampData(torch.utils.data.Dataset):
    """Normalised, cropped (and optionally augmented) stamps; images are loaded once (float32 in memory) or
    read per item from the store when ``cache=False``."""

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
        cache: bool = True,
    ):
        self.store, self.t, self.idx, self.norm, self.crop = store, table, np.asarray(idx), norm, crop
        self.aug, self.seed, self.max_shift, self.noise = augment, seed, max_shift, noise_frac
        self.epoch = 0
        self.cache = None
        if cache:
            img, _, _ = store.read(table.rows[self.idx])
            self.cache = norm.prepare(img)

    def __len__(self) -> int:
        return len(self.idx)

    def image(self, i: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache[i]
        return self.norm.prepare(self.store.read_image(int(self.t.rows[self.idx[i]]))[None])[0]

    def __getitem__(self, i: int):
        x = self.image(i)
        j = self.idx[i]
        if self.aug:
            x = augment(
                x, stable_seed(self.seed, "aug", self.epoch, int(self.t.rows[j])), self.max_shift, self.noise
            )
        x = center_crop(x, self.crop)
        return (
            torch.from_numpy(np.ascontiguousarray(x)),
            float(self.t.label[j]),
            float(self.t.weight[j]),
            int(j),
        )


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
