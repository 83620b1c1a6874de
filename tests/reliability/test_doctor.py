"""`lensaudit doctor [CONFIG]` (issue 22): one line per check, exit 8 on a blocker. No network: the service is
the project's own CutoutServer on 127.0.0.1, or a closed port."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lensaudit.cli import app
from lensaudit.cli.doctor import EXIT_BLOCKER
from lensaudit.sky.server import CutoutServer

REPO = Path(__file__).resolve().parents[2]
CHECKS = ("sweeps", "coadds", "cutout service", "dask engine", "cuda", "memory", "disk", "extras")


def _closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _doctor(config: Path, run_dir: Path, *sets: str) -> tuple[int, dict[str, str], str]:
    """Run the command: (exit code, {check name: its line}, whole output)."""
    args = ["doctor", str(config), "--run-dir", str(run_dir)]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert "Traceback" not in r.output, r.output
    lines = {}
    for line in r.output.splitlines():
        if line[:2] in ("✓ ", "! ", "✗ "):
            lines[line[2:].split(":", 1)[0]] = line
    return r.exit_code, lines, r.output


def _tiny(sky: Path, url: str, *extra: str) -> list[str]:
    return [
        f"data.sky_dir={sky}",
        f"data.cutout_url={url}",
        f"positives.lenscat={sky}/lenses.csv",
        "sky.n_bricks=2",
        "sky.brick_pixels=800",
        *extra,
    ]


def test_doctor_on_dr10_config_names_the_unreachable_data_paths(tmp_path):
    """configs/dr10.yaml on this machine (no NERSC file system): a blocker line per unreachable data path."""
    url = f"http://127.0.0.1:{_closed_port()}/viewer/cutout.fits"  # instead of the public service: no network
    code, lines, out = _doctor(REPO / "configs" / "dr10.yaml", tmp_path / "run", f"data.cutout_url={url}")
    assert code == EXIT_BLOCKER, out
    assert set(lines) == set(CHECKS), out  # every check reports, one line each
    sweeps = "/global/cfs/cdirs/cosmo/data/legacysurvey/dr10/south/sweep/10.1"
    assert lines["sweeps"].startswith("✗") and f"data.sweeps: {sweeps} is not reachable" in lines["sweeps"]
    coadds = "/global/cfs/cdirs/cosmo/data/legacysurvey/dr10/south/coadd"
    assert lines["coadds"].startswith("✗") and f"data.coadd_dir: {coadds} is not reachable" in lines["coadds"]
    # dr10.yaml cuts stamps from the coadds: the service is checked, but a failure there is not a blocker
    assert lines["cutout service"].startswith("!") and url in lines["cutout service"]
    assert out.rstrip().splitlines()[-1].startswith("doctor: ")
    assert not (tmp_path / "run").exists()  # doctor writes nothing


@pytest.mark.slow
def test_doctor_passes_every_blocker_on_a_tiny_synthetic_sky(tmp_path, tiny_sky):
    with CutoutServer(tiny_sky) as server:
        sets = _tiny(tiny_sky, server.url, "cutouts.provider=service")  # the service is then a blocker check
        code, lines, out = _doctor(REPO / "configs" / "demo.yaml", tmp_path / "run", *sets)
        fetched = server.requests
    assert code == 0, out
    assert set(lines) == set(CHECKS), out
    assert not [v for v in lines.values() if v.startswith("✗")], out
    for name in ("sweeps", "coadds", "cutout service", "dask engine", "disk"):
        assert lines[name].startswith("✓"), lines[name]
    assert "130 DR10 columns" in lines["sweeps"]
    assert fetched == 1  # one real test cutout, through HTTP
    assert out.rstrip().splitlines()[-1].startswith("doctor: ready")


@pytest.mark.slow
def test_doctor_blocks_on_unreachable_service_bad_sweep_and_missing_scheduler(tmp_path, tiny_sky):
    dead = f"http://127.0.0.1:{_closed_port()}/viewer/cutout.fits"
    # the service is used (provider service) and unreachable: a blocker naming the URL
    code, lines, out = _doctor(
        REPO / "configs" / "demo.yaml", tmp_path / "a", *_tiny(tiny_sky, dead, "cutouts.provider=service")
    )
    assert code == EXIT_BLOCKER, out
    assert lines["cutout service"].startswith("✗") and dead in lines["cutout service"], out
    # the same unreachable service while the stamps come from the coadds: a warning only
    code, lines, out = _doctor(REPO / "configs" / "demo.yaml", tmp_path / "b", *_tiny(tiny_sky, dead))
    assert code == 0 and lines["cutout service"].startswith("!"), out
    # a truncated sweep file, and a scheduler address nobody listens on
    sweeps = tmp_path / "sweep"
    shutil.copytree(tiny_sky / "sweep", sweeps)
    bad = sorted(sweeps.glob("sweep-*.fits"))[-1]
    bad.write_bytes(bad.read_bytes()[:-5000])
    sched = f"tcp://127.0.0.1:{_closed_port()}"
    extra = (f"data.sweeps={sweeps}", "engine.kind=address", f"engine.address={sched}")
    code, lines, out = _doctor(REPO / "configs" / "demo.yaml", tmp_path / "c", *_tiny(tiny_sky, dead, *extra))
    assert code == EXIT_BLOCKER, out
    assert lines["sweeps"].startswith("✗") and f"sweep file {bad}: truncated" in lines["sweeps"], out
    assert lines["dask engine"].startswith("✗") and sched in lines["dask engine"], out
