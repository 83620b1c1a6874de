"""The training loop: the weights enter the loss, exact resume after a kill, red flags with ids."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lensaudit.config import TrainConfig
from lensaudit.stamps.normalize import Normalizer, fit_normalizer
from lensaudit.stamps.store import StampStore
from lensaudit.train.data import StampData, load_table
from lensaudit.train.loop import CheckpointPaths, TrainingRedFlag, fit, weighted_bce
from lensaudit.train.models import create_model


def test_weighted_bce_hand_computed():
    logits = torch.tensor([0.0, 2.0, -1.0])
    y = torch.tensor([1.0, 0.0, 1.0])
    w = torch.tensor([1.0, 1.0, 0.5])  # Tier-A positive, negative, Tier-B positive
    bce = [math.log(2.0), math.log(1 + math.e**2), math.log(1 + math.e)]
    pw = 3.0
    expect = (1 * pw * bce[0] + 1 * 1 * bce[1] + 0.5 * pw * bce[2]) / (pw + 1 + 0.5 * pw)
    assert float(weighted_bce(logits, y, w, pw)) == pytest.approx(expect, rel=1e-6)
    assert float(weighted_bce(logits, y, torch.tensor([1.0, 1.0, 1.0]), pw)) != pytest.approx(expect)


def _fixture(tmp_path, n=48, nan_row=None):
    rng = np.random.default_rng(0)
    img = rng.normal(0, 0.003, size=(n, 3, 101, 101)).astype(np.float32)
    yy, xx = np.mgrid[0:101, 0:101]
    r = np.hypot(xx - 50, yy - 50)
    label = (np.arange(n) % 4 == 0).astype(int)
    img += (0.05 * np.exp(-r / 3))[None, None]
    img[label == 1] += (0.02 * np.exp(-0.5 * ((r - 7) / 1.2) ** 2))[None, None]
    if nan_row is not None:
        img[nan_row] = np.nan
    store = StampStore.create(tmp_path / "s.zarr", n, shard_size=16, overwrite=True)
    store.write(0, img, np.ones_like(img), np.zeros((n, 101, 101)))
    ids = [f"b_{i}" for i in range(n)]
    split = np.where(np.arange(n) % 3 == 0, "val", "train")
    sample = pd.DataFrame(
        {
            "galaxy_id": ids,
            "label": label,
            "weight": np.where(label == 1, 0.5, 1.0),
            "tier": np.where(label == 1, "B", ""),
            "split": split,
        }
    )
    stamps = pd.DataFrame({"row": np.arange(n), "galaxy_id": ids, "quality_ok": True})
    return store, load_table(sample, stamps)


def _train(tmp_path, out, cfg, stop_after=None, nan_row=None):
    store, t = _fixture(tmp_path, nan_row=nan_row)
    tr, va = np.flatnonzero(t.split == "train"), np.flatnonzero(t.split == "val")
    norm = Normalizer([0.003] * 3)
    torch.manual_seed(0)
    model = create_model("resnet18", "standard")
    out.mkdir(exist_ok=True)
    paths = CheckpointPaths(best=out / "best.pt", last=out / "last.pt", history=out / "history.jsonl")
    return model, fit(
        model,
        StampData(store, t, tr, norm, 32, True, 1),
        StampData(store, t, va, norm, 32, False, 1),
        cfg,
        paths,
        1,
        torch.device("cpu"),
        3.0,
        t.galaxy_id,
        t.tier,
        stop_after_steps=stop_after,
    )


def test_kill_mid_epoch_and_resume_gives_identical_weights(tmp_path):
    cfg = TrainConfig(epochs=3, min_epochs=3, batch_size=8, warmup_epochs=0.5)
    m_full, res = _train(tmp_path, tmp_path / "full", cfg)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, tmp_path / "killed", cfg, stop_after=6)  # dies in epoch 1 (4 steps per epoch)
    m_res, res2 = _train(tmp_path, tmp_path / "killed", cfg)
    for (k, a), b in zip(m_full.state_dict().items(), m_res.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["train_loss"] for h in res.history] == [h["train_loss"] for h in res2.history]


def test_nan_stamp_is_caught_with_its_id(tmp_path):
    cfg = TrainConfig(epochs=1, min_epochs=1, batch_size=8)
    with pytest.raises(TrainingRedFlag, match="b_4"):
        _train(tmp_path, tmp_path / "nan", cfg, nan_row=4)


def test_normalizer_uses_outer_annulus():
    img = np.random.default_rng(1).normal(5.0, 2.0, size=(20, 3, 101, 101)).astype(np.float32)
    norm = fit_normalizer(img)
    assert norm.sigma == pytest.approx([2.0] * 3, rel=0.05)
    x = norm(img)
    assert abs(float(np.median(x))) < 0.05 and float(np.std(x)) == pytest.approx(1.0, rel=0.05)
