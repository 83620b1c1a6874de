"""The frozen finder: ``load_frozen(train_dir)`` → scores, logits and penultimate features for stamps in
nanomaggies, with the stored normalisation and crop applied; ``sha256`` identifies the checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lensaudit.errors import InputError
from lensaudit.stamps.normalize import Normalizer
from lensaudit.train.data import center_crop
from lensaudit.train.models import create_model, penultimate
from lensaudit.utils import sha256_file


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class FrozenModel:
    def __init__(self, train_dir: str | Path, device: str = "auto", batch_size: int = 256):
        d = Path(train_dir)
        card, best = d / "model_card.json", d / "best.pt"
        if not card.is_file() or not best.is_file():
            raise InputError(f"no frozen model in {d} (model_card.json and best.pt expected); run `lensaudit train`")
        self.card = json.loads(card.read_text())
        self.sha256 = sha256_file(best)
        if self.card.get("frozen_sha256") not in (None, self.sha256):
            raise InputError(f"{best} changed after it was frozen (sha256 {self.sha256[:12]} ≠ card {self.card['frozen_sha256'][:12]})")
        self.device = pick_device(device)
        self.model = create_model(self.card["arch"], self.card["stem"]).to(self.device)
        self.model.load_state_dict(torch.load(best, map_location=self.device, weights_only=True))
        self.model.eval()
        self.norm = Normalizer(**self.card["normalization"])
        self.crop = int(self.card["crop_pix"])
        self.batch_size = batch_size

    def _prep(self, images: np.ndarray) -> torch.Tensor:
        x = self.norm(np.asarray(images, np.float32))
        return torch.from_numpy(np.ascontiguousarray(center_crop(np.nan_to_num(x), self.crop)))

    @torch.no_grad()
    def _run(self, images: np.ndarray, fn) -> np.ndarray:
        out = []
        for a in range(0, len(images), self.batch_size):
            x = self._prep(images[a:a + self.batch_size]).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                out.append(fn(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N,) logits for stamps (N, 3, S, S) in nanomaggies."""
        return self._run(images, lambda x: self.model(x).squeeze(1))

    def score(self, images: np.ndarray) -> np.ndarray:
        """(N,) probabilities."""
        return 1.0 / (1.0 + np.exp(-self.logits(images)))

    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, D) penultimate-layer features."""
        return self._run(images, lambda x: penultimate(self.model, x))


def load_frozen(train_dir: str | Path, device: str = "auto") -> FrozenModel:
    return FrozenModel(train_dir, device)
