"""Pass/fail cases of the train gates: a real tiny store and a real frozen checkpoint (``best.pt`` + model
card) of the registry's ResNet-18. Its weights are untrained but its answer is known: with default BatchNorm
statistics the network is positively homogeneous, so a flat stamp scores the fc bias and a scaled pattern
scores further along the sign the checkpoint is given — the positives (patterned) outrank the negatives
(flat). The failing cases flip that sign or leave the validation split without positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from helpers import Run

from lensaudit.stamps.normalize import Normalizer
from lensaudit.stamps.quality import radius_map
from lensaudit.stamps.store import StampStore
from lensaudit.train.models import create_model
from lensaudit.utils import sha256_file
from lensaudit.validation import Inputs

N, S, CROP = 24, 101, 48


def _stamps() -> tuple[np.ndarray, np.ndarray]:
    """Positives (odd rows): a Gaussian core at 1–3× a unit amplitude; negatives: flat stamps."""
    label = np.arange(N) % 2
    core = np.exp(-(radius_map(S) ** 2) / (2 * 4.0**2)).astype(np.float32)
    amp = np.where(label == 1, 1.0 + 2.0 * np.arange(N) / N, 0.0)
    img = np.repeat((amp[:, None, None] * core)[:, None], 3, axis=1).astype(np.float32)
    return img, label


def make(root: Path, flip: bool = False, val_positives: bool = True, with_model: bool = True) -> Inputs:
    run = Run(root, "train.threads=1")
    img, label = _stamps()
    store = StampStore.create(run.path("cutouts", "stamps"), N, S, "grz", shard_size=N)
    store.write(0, img, np.ones_like(img), np.zeros((N, S, S), np.int32))
    ids = [f"1500p020_{i:02d}" for i in range(N)]
    split = np.where(np.arange(N) < N // 2, "val", "train")
    if not val_positives:
        split = np.where(label == 1, "train", split)
    run.table(
        "sample",
        "sample",
        pd.DataFrame({"galaxy_id": ids, "label": label, "weight": 1.0, "tier": "", "split": split}),
    )
    run.table("cutouts", "index", pd.DataFrame({"row": np.arange(N), "galaxy_id": ids, "quality_ok": True}))
    if not with_model:
        return run.inputs()
    torch.manual_seed(0)
    model = create_model("resnet18", "standard").eval()
    norm = Normalizer(sigma=[1.0, 1.0, 1.0])
    with torch.no_grad():
        x = torch.from_numpy(norm.prepare(img[label == 1][:1], CROP))
        sign = float(model(x).squeeze() - model.fc.bias.squeeze())
    if (sign < 0) != flip:  # positives above the bias, or below it when flipped
        model.fc.weight.data *= -1
    best = run.path("train", "best")
    torch.save(model.state_dict(), best)
    card = {
        "arch": "resnet18",
        "stem": "standard",
        "crop_pix": CROP,
        "normalization": norm.to_dict(),
        "best_epoch": 1,
        "best_val_auc": None,
        "stopped": "max_epochs",
        "frozen_sha256": sha256_file(best),
    }
    run.json("train", "model_card", card)
    return run.inputs()


CASES = {
    "best_val_auc": (lambda p: make(p), lambda p: make(p, flip=True)),
    "val_has_both_classes": (
        lambda p: make(p, with_model=False),
        lambda p: make(p, val_positives=False, with_model=False),
    ),
}
