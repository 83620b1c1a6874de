"""The batch augmentations against a per-stamp numpy/scipy reference, and their determinism per
(seed, epoch, row)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from lensaudit.train.data import aug_params, augment_batch


def _reference(x: np.ndarray, p: dict, i: int, crop: int) -> np.ndarray:
    """One stamp as the former per-stamp numpy path did it (without the noise): D4, roll, blur, crop."""
    y = np.rot90(x, k=int(p["k"][i]), axes=(-2, -1))
    if p["flip"][i]:
        y = y[..., ::-1]
    y = np.roll(y, (int(p["dy"][i]), int(p["dx"][i])), axis=(-2, -1))
    if p["blur"][i] > 0:
        y = gaussian_filter(y, sigma=(0, p["blur"][i], p["blur"][i]), mode="nearest")
    a = (y.shape[-1] - crop) // 2
    return y[..., a : a + crop, a : a + crop]


def test_batch_augmentation_matches_the_per_stamp_reference():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, 3, 101, 101)).astype(np.float32)
    rows = np.arange(100, 124)
    p = aug_params(7, 2, rows, 5, 0.1)
    assert len(set(zip(p["k"].tolist(), p["flip"].tolist()))) > 4 and (p["blur"] > 0).any()
    p0 = {**p, "noise": np.zeros(len(rows))}
    got = augment_batch(torch.from_numpy(x), p0, 64).numpy()
    for i in range(len(rows)):
        np.testing.assert_allclose(got[i], _reference(x[i], p, i, 64), atol=1e-5)


def test_augmentation_depends_on_seed_epoch_row_only():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 3, 101, 101)).astype(np.float32)
    rows = np.arange(50, 58)
    full = augment_batch(torch.from_numpy(x), aug_params(1, 0, rows, 5, 0.1), 64)
    perm = np.array([5, 2, 7])  # the same rows in another batch, another order
    part = augment_batch(torch.from_numpy(x[perm]), aug_params(1, 0, rows[perm], 5, 0.1), 64)
    assert torch.equal(full[perm], part)
    other = augment_batch(torch.from_numpy(x), aug_params(1, 1, rows, 5, 0.1), 64)
    assert not torch.equal(full, other)
    noise = full - augment_batch(
        torch.from_numpy(x), {**aug_params(1, 0, rows, 5, 0.1), "noise": 0 * rows}, 64
    )
    assert 0 < float(noise.std()) < 0.1
