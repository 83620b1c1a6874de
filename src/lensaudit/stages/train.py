"""train: the lens finder on the stamps of the train split, early-stopped on the spatial val split, frozen."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pandas as pd
import torch

from lensaudit.config import TrainConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext, git_commit
from lensaudit.stamps.normalize import fit_normalizer
from lensaudit.stamps.store import StampStore
from lensaudit.train.data import StampData, load_table
from lensaudit.train.infer import pick_device
from lensaudit.train.loop import fit
from lensaudit.train.models import create_model
from lensaudit.utils import atomic_write_json, sha256_file, stable_seed

NAME = "train"
SECTIONS = ("train",)
DEPENDS = ("cutouts", "sample")


def run(cfg: TrainConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    sample = pd.read_parquet(ctx.run_dir / "sample" / "sample.parquet")
    stamps = pd.read_parquet(ctx.run_dir / "cutouts" / "stamps.parquet")
    store = StampStore.open(ctx.run_dir / "cutouts" / "stamps.zarr")
    t = load_table(sample, stamps)
    tr, va = np.flatnonzero(t.split == "train"), np.flatnonzero(t.split == "val")
    rng = np.random.default_rng(stable_seed(ctx.seed, "norm"))
    fit_rows = t.rows[rng.choice(tr, size=min(len(tr), 2000), replace=False)] if len(tr) else t.rows[:0]
    norm = fit_normalizer(store.read(np.sort(fit_rows))[0], asinh=cfg.normalization == "robust_asinh")
    train_ds = StampData(store, t, tr, norm, cfg.crop_pix, cfg.augment, ctx.seed, cfg.max_shift_pix, cfg.noise_sigma_frac)
    val_ds = StampData(store, t, va, norm, cfg.crop_pix, False, ctx.seed)
    n_pos, n_neg = float(t.label[tr].sum()), float((t.label[tr] == 0).sum())
    pos_weight = cfg.pos_weight or (n_neg / max(n_pos, 1.0))
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(stable_seed(ctx.seed, "model"))
    model = create_model(cfg.arch, cfg.stem).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    with ctx.progress(cfg.epochs, f"train: {cfg.arch} on {len(tr)} stamps ({int(n_pos)} positives)") as bar:
        res = fit(model, train_ds, val_ds, cfg, out, ctx.seed, device, pos_weight, t.galaxy_id, t.tier,
                  on_epoch=lambda rec: bar.update(advance=1, description=f"train: epoch {rec['epoch']} val AUC {rec['val_auc']:.3f}"))
    frozen = sha256_file(out / "best.pt")
    card = {"arch": cfg.arch, "stem": cfg.stem, "crop_pix": cfg.crop_pix, "normalization": norm.to_dict(),
            "config": ctx.config.section_dict("train"), "pos_weight": pos_weight, "best_epoch": res.best_epoch,
            "best_val_auc": res.best_auc, "stopped": res.stopped, "n_train": int(len(tr)), "n_val": int(len(va)),
            "data": {"sample_sha256": sha256_file(ctx.run_dir / "sample" / "sample.parquet"),
                     "stamps_index_sha256": sha256_file(ctx.run_dir / "cutouts" / "stamps.parquet")},
            "git_commit": git_commit(), "seed": ctx.seed, "device": str(device), "frozen_sha256": frozen}
    atomic_write_json(out / "model_card.json", card)
    plot_curves(res.history, out / "curves.png")
    gates = [Gate(name="best_val_auc", value=res.best_auc, warn=0.75, fail=0.55, higher_is_better=True,
                  message=f"epoch {res.best_epoch}; {res.stopped}"),
             Gate.check("val_has_both_classes", len(np.unique(t.label[va])) == 2, value=int(t.label[va].sum()))]
    return Manifest(counts={"train": int(len(tr)), "val": int(len(va)), "train_pos": int(n_pos), "epochs": res.epochs_run,
                            "best_epoch": res.best_epoch},
                    gates=gates, outputs=["best.pt", "last.pt", "model_card.json", "history.jsonl", "curves.png"],
                    extra={"frozen_sha256": frozen, "best_val_auc": res.best_auc, "stopped": res.stopped})


def plot_curves(history: list[dict], path) -> None:
    import matplotlib.pyplot as plt

    h = pd.DataFrame(history)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(h.epoch, h.train_loss, "o-", label="train")
    ax[0].plot(h.epoch, h.val_loss, "s-", label="val")
    ax[0].set(xlabel="epoch", ylabel="weighted BCE", title="loss")
    ax[0].legend()
    for k in ("val_auc", "recall_at_p90", "precision_at_r90", "ece"):
        ax[1].plot(h.epoch, h[k], "o-", label=k)
    ax[1].set(xlabel="epoch", title="validation (spatial split)", ylim=(0, 1.02))
    ax[1].legend(fontsize=8)
    ax[2].plot(h.epoch, h.lr, "o-")
    ax[2].set(xlabel="epoch", ylabel="learning rate", yscale="log", title="schedule")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
