"""Passing and failing cases of the inject gates, from a tiny real world on disk: real positives and hosts in
a cutouts stamp store, arcs injected into the hosts with :func:`lensaudit.lensing.inject` (the stamps in an
inject stamp store), the sample, the cutouts index, the injections table and a frozen (randomly initialised)
finder for the probe."""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from helpers import Run

from lensaudit.lensing import inject, sample_systems
from lensaudit.stamps.store import StampStore
from lensaudit.train.models import create_model
from lensaudit.utils import sha256_file
from lensaudit.validation import Inputs

S, SIGMA, PSF, DEPTH = 101, 0.003, 1.2, 24.0
N_HOSTS, N_USED_HOSTS, N_POS, PER_CELL = 60, 8, 40, 16
THETA_E = (1.0, 1.5, 2.0)
GRID = (
    "inject.theta_e_grid=[1.0, 2.0, 0.5]",
    "inject.psf_grid=[1.2, 1.2, 0.15]",
    "inject.depth_grid=[24, 24, 0.5]",
)
PRIOR = {
    "src_mag_r": (21.5, 22.5),
    "magnification": (5, 15),
    "src_reff": (0.1, 0.3),
    "src_n": (0.7, 1.5),
    "src_q": (0.5, 1),
    "lens_q": (0.7, 1),
}


def _galaxies(n: int, rng: np.random.Generator) -> np.ndarray:
    """n smooth red galaxies with background noise σ = SIGMA (nanomaggies, g r z)."""
    yy, xx = np.mgrid[0:S, 0:S]
    r = np.hypot(xx - 50, yy - 50)
    amp = rng.uniform(0.03, 0.08, n)[:, None, None, None] * np.array([0.5, 1.0, 1.6])[None, :, None, None]
    img = amp * np.exp(-r / 3)[None, None] + rng.normal(0, SIGMA, (n, 3, S, S))
    return img.astype(np.float32)


def _arcs(host: np.ndarray, theta_e: np.ndarray, seed: int, brighter: float = 0.0, redder: float = 0.0):
    """Arcs injected into ``host`` with the pipeline's engine: (stamps, noiseless arcs)."""
    rng = np.random.default_rng(seed)
    prior = {**PRIOR, "src_mag_r": (PRIOR["src_mag_r"][0] - brighter, PRIOR["src_mag_r"][1] - brighter)}
    s = sample_systems(len(host), theta_e, prior, rng, {"g": PSF + 0.1, "r": PSF, "z": PSF - 0.1})
    s.src_mag["g"] = s.src_mag["g"] + redder
    iv = np.full_like(host, 1 / SIGMA**2)
    stamps, info = inject(host, iv, s, rng=rng, supersample=2)
    return stamps, info["noiseless_arc"]


@functools.cache
def _real() -> tuple[np.ndarray, np.ndarray]:
    """(hosts, the real positives' stamps)."""
    rng = np.random.default_rng(0)
    hosts = _galaxies(N_HOSTS, rng)
    return hosts, _arcs(_galaxies(N_POS, rng), rng.uniform(1.0, 2.0, N_POS), 1)[0]


@functools.cache
def _injected(brighter: float, redder: float) -> tuple[np.ndarray, np.ndarray]:
    """(stamps, noiseless arcs) of the injections."""
    hosts = _real()[0]
    cells = np.repeat(np.arange(len(THETA_E)), PER_CELL)
    return _arcs(hosts[np.arange(len(cells)) % N_USED_HOSTS], np.asarray(THETA_E)[cells], 2, brighter, redder)


def _world(brighter: float = 0.0, redder: float = 0.0, noise: float = 1.0):
    """(hosts, positives' stamps, injections table, injected stamps); ``noise`` scales the added noise."""
    hosts, real = _real()
    cells = np.repeat(np.arange(len(THETA_E)), PER_CELL)
    host_row = np.arange(len(cells)) % N_USED_HOSTS
    theta_e = np.asarray(THETA_E)[cells]
    stamps, arc = _injected(brighter, redder)
    if noise != 1.0:
        added = stamps.astype(np.float64) - hosts[host_row] - arc
        stamps = (hosts[host_row].astype(np.float64) + arc + noise * added).astype(np.float32)
    inj = pd.DataFrame(
        {
            "row": np.arange(len(cells)),
            "variant": "main",
            "cell": cells,
            "index": np.arange(len(cells)) % PER_CELL,
            "theta_e": theta_e,
            "psf_cell": PSF,
            "depth_cell": DEPTH,
            "host_row": host_row,
            "host_galaxy_id": [f"h{i}" for i in host_row],
            "degraded": False,
            "arc_snr": 10.0,
        }
    )
    return hosts, real, inj, stamps


def _tables(n_hosts: int = N_HOSTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample (positives, then N1 test hosts) and the cutouts index (store rows: hosts, positives)."""
    ids = [f"p{i}" for i in range(N_POS)] + [f"h{i}" for i in range(N_HOSTS)]
    label = np.r_[np.ones(N_POS, int), np.zeros(N_HOSTS, int)]
    sample = pd.DataFrame(
        {
            "galaxy_id": ids,
            "label": label,
            "split": np.r_[np.array(["train", "val", "test"])[np.arange(N_POS) % 3], ["test"] * N_HOSTS],
            "pool": np.r_[["positive"] * N_POS, ["N1"] * N_HOSTS],
            "type": "DEV",
            "mag_r": np.r_[np.linspace(19, 21, N_POS), np.linspace(19.5, 20.5, N_HOSTS)],
            "g_r": np.r_[np.linspace(1.0, 1.6, N_POS), np.linspace(1.1, 1.5, N_HOSTS)],
            "r_z": np.r_[np.linspace(0.9, 1.5, N_POS), np.linspace(1.0, 1.4, N_HOSTS)],
            "psfsize_r": PSF,
            "psfdepth_mag_r": DEPTH,
        }
    )
    sample = sample[(sample.label == 1) | (np.arange(len(sample)) < N_POS + n_hosts)]
    index = pd.DataFrame(
        {
            "row": np.r_[N_HOSTS + np.arange(N_POS), np.arange(N_HOSTS)],
            "galaxy_id": ids,
            "quality_ok": True,
        }
    )
    return sample, index


def _store(path: Path, img: np.ndarray) -> None:
    st = StampStore.create(path, len(img), shard_size=64)
    st.write(0, img, np.full_like(img, 1 / SIGMA**2), np.zeros((len(img), S, S), np.int32))


@functools.cache
def _weights() -> bytes:
    """A randomly initialised finder's checkpoint (seeded), serialised once."""
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(create_model("resnet18", "standard").state_dict(), buf)
    return buf.getvalue()


def _model(run: Run) -> None:
    best = run.path("train", "best")
    best.write_bytes(_weights())
    card = {
        "arch": "resnet18",
        "stem": "standard",
        "crop_pix": 32,
        "normalization": {"sigma": [SIGMA] * 3, "asinh": True, "outer_radius_pix": 30.0},
        "frozen_sha256": sha256_file(best),
    }
    run.path("train", "model_card").write_text(json.dumps(card))


def _run(
    root: Path,
    *overrides: str,
    brighter: float = 0.0,
    redder: float = 0.0,
    noise: float = 1.0,
    n_hosts: int = N_HOSTS,
    cells: int = len(THETA_E),
    empty: bool = False,
    model: bool = False,
    candidates: int = 0,
) -> Inputs:
    hosts, real, inj, stamps = _world(brighter, redder, noise)
    keep = inj.cell.to_numpy() < cells
    inj, stamps = inj[keep].reset_index(drop=True), stamps[keep]
    inj["row"] = np.arange(len(inj))
    run = Run(root, *GRID, *overrides)
    sample, index = _tables(n_hosts)
    run.table("sample", "sample", sample).table("cutouts", "index", index)
    # the evaluate stage's scores of the negatives: the first ``candidates`` hosts the finder calls lenses
    scores = pd.DataFrame({"galaxy_id": [f"h{i}" for i in range(N_HOSTS)], "label": 0, "score": 0.1})
    scores.loc[: candidates - 1, "score"] = 0.9
    run.table("evaluate", "scores", scores).json("evaluate", "metrics", {"operating_threshold": 0.5})
    _store(run.path("cutouts", "stamps"), np.concatenate([hosts, real]))
    run.table("inject", "injections", inj.iloc[:0] if empty else inj)
    if not empty:
        _store(run.path("inject", "stamps"), stamps)
    if model:
        _model(run)
    return run.inputs()


def matched(root: Path) -> Inputs:
    """Injections drawn from the real positives' own arc prior, with the noise model's noise."""
    return _run(root)


def arcs_too_bright(root: Path) -> Inputs:
    """Sources 2.5 mag (10×) brighter than the real arcs."""
    return _run(root, brighter=2.5)


def arcs_too_red(root: Path) -> Inputs:
    """Sources 0.5 mag redder in g − r than the real arcs."""
    return _run(root, redder=0.5)


def noise_too_large(root: Path) -> Inputs:
    """The added noise 1.5× what the noise model says."""
    return _run(root, noise=1.5)


def probe_matched(root: Path) -> Inputs:
    return _run(root, model=True)


def probe_separable(root: Path) -> Inputs:
    """Arcs 10× brighter: the frozen features tell them apart."""
    return _run(root, brighter=2.5, model=True)


CASES = {
    "arc_snr_p*_ratio": (matched, arcs_too_bright),
    "arc_colour_*_diff": (matched, arcs_too_red),
    "noise_sigma_ratio_*": (matched, noise_too_large),
    "discriminator_auc": (probe_matched, probe_separable),
    "cells_with_hosts": (matched, lambda root: _run(root, cells=1)),
    "host_pool_size": (matched, lambda root: _run(root, n_hosts=N_USED_HOSTS)),
    "hosts_available": (matched, lambda root: _run(root, empty=True)),
    "candidate_hosts": (matched, lambda root: _run(root, candidates=1)),
}
