"""The frozen finder: ``load_frozen(best=…, card=…)`` (or ``load_frozen(train_dir)``) → scores, logits and
penultimate features for stamps in nanomaggies, with the stored normalisation and crop applied; ``sha256``
identifies the checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lensaudit.errors import InputError
from lensaudit.run.artifacts import relpath
from lensaudit.stamps.normalize import Normalizer
from lensaudit.train.models import create_model, penultimate
from lensaudit.utils import sha256_file


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class FrozenModel:
    """The frozen checkpoint ``best`` (``best.pt``) with its model card ``card`` (``model_card.json``:
    architecture, normalisation, crop and the sha256 recorded when the checkpoint was frozen, checked
    here)."""

    def __init__(self, best: str | Path, card: str | Path, device: str = "auto", batch_size: int = 256):
        best, card = Path(best), Path(card)
        if not card.is_file() or not best.is_file():
            raise InputError(f"no frozen model: {best} and {card} expected; run `lensaudit train`")
        self.card = json.loads(card.read_text())
        self.sha256 = sha256_file(best)
        if self.card.get("frozen_sha256") not in (None, self.sha256):
            frozen = self.card["frozen_sha256"]
            raise InputError(
                f"{best} changed after it was frozen (sha256 {self.sha256[:12]} ≠ card {frozen[:12]})"
            )
        self.device = pick_device(device)
        self.model = create_model(self.card["arch"], self.card["stem"]).to(self.device)
        self.model.load_state_dict(torch.load(best, map_location=self.device, weights_only=True))
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.eval()
        self.norm = Normalizer(**self.card["normalization"])
        self.crop = int(self.card["crop_pix"])
        self.batch_size = batch_size

    def _prep(self, images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.norm.prepare(images, self.crop))

    @torch.no_grad()
    def _run(self, images: np.ndarray, fn) -> np.ndarray:
        """``fn`` on batches of ``batch_size``: on CUDA the input is channels-last (as the model) and the
        forward pass runs under bf16 autocast; outputs come back as float32."""
        out = []
        cuda = self.device.type == "cuda"
        for a in range(0, len(images), self.batch_size):
            x = self._prep(images[a : a + self.batch_size]).to(self.device, non_blocking=cuda)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cuda):
                out.append(fn(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0,))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N,) logits for stamps (N, 3, S, S) in nanomaggies."""
        return self._run(images, lambda x: self.model(x).squeeze(1))

    def score(self, images: np.ndarray) -> np.ndarray:
        """(N,) probabilities."""
        return sigmoid(self.logits(images))

    def score_rows(
        self, store: Any, rows: np.ndarray, on_batch: Callable[[int], None] | None = None, chunk: int = 256
    ) -> np.ndarray:
        """(N,) logits of the stamps at ``rows`` of a :class:`~lensaudit.stamps.store.StampStore`, in the
        order of ``rows``: the one scoring path of evaluate, selection, failures and hard-negative mining.

        Rows are scored in store order, ``chunk`` at a time, so each read is a few contiguous runs
        (:meth:`StampStore.read_images`; objects with only ``read(rows)`` — e.g. in-memory stamps — are read
        with that), then put back in the order asked; ``on_batch(n)`` after each chunk, for a progress bar.
        On CUDA the batches are channels-last under bf16 autocast (:meth:`_run`). A stamp's logit does not
        depend on the chunk it is scored in (eval mode: no batch statistics)."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        read = getattr(store, "read_images", None) or (lambda r: store.read(r)[0])
        out = np.zeros(len(rows), np.float32)
        for a in range(0, len(rows), chunk):
            img = read(srt[a : a + chunk])
            out[order[a : a + len(img)]] = self.logits(img)
            if on_batch is not None:
                on_batch(len(img))
        return out

    def features(self, images: np.ndarray) -> np.ndarray:
        """(N, D) penultimate-layer features."""
        return self._run(images, lambda x: penultimate(self.model, x))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Scores from logits (the same float expression everywhere, so scores repeat bit for bit)."""
    return 1.0 / (1.0 + np.exp(-logits))


def load_frozen(
    train_dir: str | Path | None = None,
    device: str = "auto",
    *,
    best: str | Path | None = None,
    card: str | Path | None = None,
) -> FrozenModel:
    """The frozen finder, from the explicit checkpoint and model-card paths (``best``, ``card``: what a stage
    gets from ``ctx.artifact("train", "best")`` and ``ctx.artifact("train", "model_card")``) or, when they are
    not given, from the train stage's directory ``train_dir`` holding both under their registered names.
    InputError when a file is missing or the checkpoint changed after it was frozen (sha256 ≠ the card's)."""
    if best is None or card is None:
        if train_dir is None:
            raise TypeError("load_frozen needs train_dir or both best= and card=")
        d = Path(train_dir)
        best = d / relpath("train", "best") if best is None else best
        card = d / relpath("train", "model_card") if card is None else card
    return FrozenModel(best, card, device)
