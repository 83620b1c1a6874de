"""Fixtures shared by the whole suite (owned by the foundation; areas keep their own conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dr10_reference() -> Iterator[Path]:
    """The real DR10 reference data packaged in lensaudit/data/dr10_reference (a real folder on disk)."""
    from importlib.resources import as_file

    from lensaudit.data import reference_dir

    with as_file(reference_dir()) as d:
        yield Path(d)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """Keep torch to the machine's cores so that concurrent tests do not oversubscribe."""
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:  # pragma: no cover
        pass
    yield


TINY_SKY = {
    "n_bricks": 2,
    "brick_pixels": 800,
    "lenses_per_brick": 8,
    "unknown_lenses_per_brick": 1,
    "confusers_per_brick": 15,
    "workers": 1,
    "defect_frac": 0.5,
}


@pytest.fixture(scope="session")
def tiny_sky_config():
    """The :class:`~lensaudit.config.SkyConfig` that :func:`tiny_sky` is built with (seed 7)."""
    from lensaudit.config import SkyConfig

    return SkyConfig(**TINY_SKY)


@pytest.fixture(scope="session")
def tiny_sky(tmp_path_factory) -> Path:
    """A real (tiny) synthetic sky on disk: 2 bricks × 800 px, exact DR10 formats. Built once per session."""
    from lensaudit.config import SkyConfig
    from lensaudit.sky.build import build_sky

    out = tmp_path_factory.mktemp("sky")
    build_sky(out, SkyConfig(**TINY_SKY), seed=7, workers=1)
    return out


#: the small demo shared by the end-to-end and verify tests (built once per session, ~4 min on 2 cores)
SMALL_DEMO = [
    "sky.n_bricks=4",
    "sky.brick_pixels=1400",
    "sky.lenses_per_brick=20",
    "train.epochs=5",
    "train.min_epochs=3",
    "inject.n_per_cell=12",
    "inject.theta_e_grid=[1.0, 3.0, 1.0]",
    "inject.psf_grid=[1.3, 1.6, 0.3]",  # the small sky's test hosts lie at PSF 1.27–1.29″, depth 25.0
    "inject.depth_grid=[24.5, 25.0, 0.5]",  # (native hosts, so the noise gate has undegraded injections)
    "inject.stress_n=48",
    "selection.n_min=6",
    # the 5-epoch finder saturates: half of the small sky's test negatives score 1.0, at its threshold, and
    # leaving them out would leave no deflector-like host (the candidate_hosts gate then fails, non-blocking)
    "inject.exclude_candidate_hosts=false",
    "catalog.nside=4096",
    "catalog.split_tolerance=0.15",
    "population.enabled=true",  # a second sky of 2 bricks with fainter, larger lens sources (~45 s)
    "population.n_bricks=2",
]


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """``lensaudit demo`` on a small sky: (run dir, CLI args, CLI output)."""
    from typer.testing import CliRunner

    from lensaudit.cli import app

    run = tmp_path_factory.mktemp("demo")
    args = ["demo", str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"), "--run-dir", str(run)]
    for s in SMALL_DEMO:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output[-3000:]
    return run, args, r.output
