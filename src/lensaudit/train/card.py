"""The model card (what the frozen checkpoint is, and what it was trained on) and the training counts (the
gates are in :mod:`lensaudit.validation.gates.train`)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lensaudit.config import TrainConfig
from lensaudit.errors import InputError
from lensaudit.run import git_commit
from lensaudit.train.loop import FitResult, TrainData
from lensaudit.utils import sha256_file


def model_card(
    cfg: TrainConfig,
    data: TrainData,
    res: FitResult,
    best: Path,
    sample: Path,
    index: Path,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """``model_card.json``: architecture, normalisation and crop (what inference needs), the training
    config and outcome, the sha256 of the inputs (``sample``: sample.parquet, ``index``: stamps.parquet) and
    of the frozen checkpoint ``best``, the code commit, seed and device. InputError when no checkpoint was
    frozen (no epoch had a defined validation AUC: the validation split lacks a class)."""
    if not best.is_file():
        raise InputError(
            f"no frozen checkpoint at {best}: no epoch had a defined validation AUC "
            f"({len(data.val)} validation stamps; the validation split needs both classes)"
        )
    return {
        "arch": cfg.arch,
        "stem": cfg.stem,
        "crop_pix": cfg.crop_pix,
        "normalization": data.norm.to_dict(),
        "config": cfg.model_dump(mode="json"),
        "pos_weight": data.pos_weight,
        "best_epoch": res.best_epoch,
        "best_val_auc": res.best_auc,
        "stopped": res.stopped,
        "n_train": len(data.train),
        "n_val": len(data.val),
        "data": {"sample_sha256": sha256_file(sample), "stamps_index_sha256": sha256_file(index)},
        "git_commit": git_commit(),
        "seed": seed,
        "device": str(device),
        "environment": environment(device),
        "frozen_sha256": sha256_file(best),
    }


def environment(device: torch.device) -> str:
    """What the trained weights depend on beyond the data, seed and config, in one line: Python, torch and
    numpy versions, torch's CPU kernel set (``torch.backends.cpu.get_cpu_capability``: AVX2, AVX512, …), the
    CPU model and torch's thread count (or the GPU). One machine gives the same weights bit for bit; another
    CPU kernel set or library version rounds differently, and training diverges from there
    (docs/artifacts.md).

    >>> environment(torch.device("cpu")).startswith("Python ")
    True
    """
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{_cpu_model()}, {torch.get_num_threads()} threads"
    )
    return (
        f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"CPU kernels {torch.backends.cpu.get_cpu_capability()}, {where}"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def train_counts(data: TrainData, res: FitResult) -> dict[str, int]:
    return {
        "train": len(data.train),
        "val": len(data.val),
        "train_pos": data.n_pos,
        "epochs": res.epochs_run,
        "best_epoch": res.best_epoch,
    }


def val_logits(
    model: Any, store: Any, sample: Any, index: Any, threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, logits) of the frozen ``model`` on the quality-ok stamps of the validation split, scored on
    CPU with torch pinned to ``threads`` threads (so the same artifacts give the same logits bit for bit);
    torch's thread count is restored afterwards."""
    from lensaudit.train.data import load_table

    t = load_table(sample, index)
    va = np.flatnonzero(t.split == "val")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        logits = model.score_rows(store, t.rows[va])
    finally:
        torch.set_num_threads(before)
    return t.label[va], logits
