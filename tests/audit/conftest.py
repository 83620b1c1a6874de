"""A tiny audit world on disk: a stamp store, a frozen (randomly initialised) finder, the sample and the
cutouts index, and (for the stage tests) the upstream manifests, selection table and sky truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lensaudit.run import Manifest
from lensaudit.stamps.store import StampStore
from lensaudit.train.models import create_model
from lensaudit.utils import atomic_write_json, sha256_file

N = 300  # > 256: scoring crosses a chunk boundary


def _images(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:101, 0:101]
    r = np.hypot(xx - 50, yy - 50)
    img = rng.normal(0, 0.003, size=(len(label), 3, 101, 101)).astype(np.float32)
    img += (0.05 * np.exp(-r / 3))[None, None].astype(np.float32)
    img[label == 1] += (0.02 * np.exp(-0.5 * ((r - 7) / 1.2) ** 2))[None, None].astype(np.float32)
    return img


def _tables(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    i = np.arange(N)
    ids = [f"g{k:04d}" for k in i]
    label = (i % 4 == 0).astype(int)
    n2 = np.where(label == 1, "", np.array(["", "ring_proxy", "spiral_proxy", "", "edge_on_proxy"])[i % 5])
    sample = pd.DataFrame(
        {
            "galaxy_id": ids,
            "ra": 150 + rng.random(N),
            "dec": 2 + rng.random(N),
            "label": label,
            "tier": np.where(label == 1, np.where(i % 8 == 0, "A", "B"), ""),
            "pool": np.where(label == 1, "positive", "negative"),
            "n2_category": n2,
            "split": np.array(["test", "val", "train"])[i % 3],
            "nobs_z_bin": np.array(["1-2", "3-4", "5+"])[i % 3],
            "healpix": rng.integers(0, 1000, N),
            "type": np.array(["DEV", "SER", "EXP", "REX"])[i % 4],
            "nobs_z": rng.integers(1, 8, N),
            "ebv": rng.random(N).astype(np.float32) * 0.1,
            "mag_r": 18 + 3 * rng.random(N),
            "shape_r": (0.3 + 2 * rng.random(N)).astype(np.float32),
            "g_r": rng.random(N),
            "ellipticity": rng.random(N) * 0.5,
        }
    )
    for b in "grz":
        sample[f"psfsize_{b}"] = (0.9 + rng.random(N)).astype(np.float32)
        sample[f"psfdepth_mag_{b}"] = 23 + 2.5 * rng.random(N)
    rows = rng.permutation(N)  # store rows are not in sample order: the join must sort by row
    stamps = pd.DataFrame(
        {
            "galaxy_id": ids,
            "row": rows,
            "bad_pixel_frac": np.where(i % 17 == 0, 0.2, 0.0),
            "star_mask_frac": 0.0,
            "quality_ok": i % 23 != 5,
        }
    )
    for b in "grz":
        for r in (2, 3, 4, 8, 12):
            stamps[f"core{r}_{b}"] = rng.lognormal(np.log(0.02), 0.5, N).astype(np.float32)
        stamps[f"annulus_{b}"] = rng.normal(0.002, 0.001, N).astype(np.float32)
        stamps[f"mad_{b}"] = rng.normal(0.002, 0.0002, N).astype(np.float32)
    core10 = np.random.default_rng(
        10
    )  # the design's core aperture, drawn apart: the other draws are unchanged
    for b in "grz":
        stamps[f"core10_{b}"] = core10.lognormal(np.log(0.05), 0.5, N).astype(np.float32)
    # the cutouts index carries copies of sample columns; the sample's values must win
    stamps["label"], stamps["split"], stamps["psfsize_r"] = -1, "bogus", np.float32(99.0)
    return sample, stamps


@pytest.fixture(scope="session")
def audit_world(tmp_path_factory) -> dict[str, Path]:
    """Paths of a tiny run's upstream artifacts (built once): sample, stamps index and store, frozen finder,
    selection table, sky truth and the completed manifests of sample, cutouts, train and selection."""
    rng = np.random.default_rng(3)
    run = tmp_path_factory.mktemp("audit_run")
    sample, stamps = _tables(rng)
    (run / "sample").mkdir()
    (run / "cutouts").mkdir()
    (run / "train").mkdir()
    (run / "selection").mkdir()
    (run / "sky").mkdir()
    sample.to_parquet(run / "sample" / "sample.parquet", index=False)
    stamps.to_parquet(run / "cutouts" / "stamps.parquet", index=False)
    order = np.argsort(stamps.row.to_numpy())
    store = StampStore.create(run / "cutouts" / "stamps.zarr", N, shard_size=64, overwrite=True)
    img = _images(sample.label.to_numpy()[order], rng)
    store.write(0, img, np.ones_like(img), np.zeros((N, 101, 101)))
    torch.manual_seed(0)
    best = run / "train" / "best.pt"
    torch.save(create_model("resnet18", "standard").state_dict(), best)
    card = {
        "arch": "resnet18",
        "stem": "standard",
        "crop_pix": 32,
        "normalization": {"sigma": [0.003, 0.003, 0.003], "asinh": True, "outer_radius_pix": 30.0},
        "frozen_sha256": sha256_file(best),
    }
    (run / "train" / "model_card.json").write_text(json.dumps(card))
    cells = pd.DataFrame(
        {"cell": np.arange(6), "n": [50, 50, 3, 50, 50, 50], "c_mean": [0.1, 0.5, 0.05, 0.15, 0.9, 0.3]}
    )
    cells["insufficient"] = cells.n < 10
    cells.to_parquet(run / "selection" / "selection_marginal.parquet", index=False)
    kinds = np.array(["galaxy", "ring", "spiral", "edge_on", "merger", "blue_clumpy"])
    truth = pd.DataFrame(
        {
            "galaxy_id": sample.galaxy_id,
            "objid": np.arange(N),
            "kind": np.where(sample.label == 1, "lens", kinds[np.arange(N) % 6]),
            "theta_e_arcsec": np.where(sample.label == 1, 0.6 + 2 * rng.random(N), np.nan),
            "arc_snr": np.where(sample.label == 1, 50 * rng.random(N), np.nan),
        }
    )
    truth.to_parquet(run / "sky" / "truth.parquet", index=False)
    for stage in ("sample", "cutouts", "train", "selection"):
        atomic_write_json(run / stage / "_stage.json", Manifest(stage=stage, fingerprint=stage).to_dict())
    return {
        "run": run,
        "store": run / "cutouts" / "stamps.zarr",
        "best": best,
        "card": run / "train" / "model_card.json",
        "sample": run / "sample" / "sample.parquet",
        "stamps": run / "cutouts" / "stamps.parquet",
    }
