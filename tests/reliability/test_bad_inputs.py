"""The bad-input suite (issue 22): each bad input drives the real CLI (typer's CliRunner, in process) on a
hand-made file or a tiny hand-made survey, and must give ONE sentence naming the file, row or key, the
documented exit code (:mod:`lensaudit.errors`, :func:`lensaudit.cli.common.guard`: 2 config, 3 input, 4 gate
failed), no traceback, and no stage manifest marked complete."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lensaudit.cli import app
from lensaudit.survey.sweeps import empty_sweep_table, mag_to_psfdepth, write_sweep

SWEEP = "sweep-000p000-010p005.fits"
LENSCAT_HEADER = "name,ra,dec,zlens,type,grading,ref\n"
N_ROWS = 40


# -- hand-made inputs ----------------------------------------------------------------------------------
def sweep_rows(n: int = N_ROWS, brickname: str = "0050p025") -> np.ndarray:
    """``n`` plausible galaxies in the exact 130-column DR10 sweep dtype."""
    rng = np.random.default_rng(3)
    r = empty_sweep_table(n)
    r["RELEASE"], r["BRICKID"], r["BRICKNAME"] = 10000, 1, brickname
    r["OBJID"] = np.arange(n)
    r["TYPE"] = np.where(np.arange(n) % 2, "SER", "DEV")
    r["RA"], r["DEC"] = rng.uniform(4.9, 5.1, n), rng.uniform(2.4, 2.6, n)
    for b in ("G", "R", "Z"):
        r[f"FLUX_{b}"] = rng.uniform(3, 30, n)
        r[f"FLUX_IVAR_{b}"] = 100.0
        r[f"NOBS_{b}"] = 3
        r[f"RCHISQ_{b}"] = 1.0
        r[f"PSFSIZE_{b}"] = 1.3
        r[f"PSFDEPTH_{b}"] = mag_to_psfdepth(24.5)
        r[f"GALDEPTH_{b}"] = mag_to_psfdepth(24.2)
        r[f"MW_TRANSMISSION_{b}"] = 0.95
    r["FLUX_W1"] = 5.0
    r["SHAPE_R"], r["SERSIC"] = rng.uniform(0.5, 2.0, n), 2.0
    return r


def write_lenscat(path: Path, rows: list[str]) -> Path:
    path.write_text(LENSCAT_HEADER + "".join(f"{r}\n" for r in rows))
    return path


def good_lens_rows(n: int = 8) -> list[str]:
    return [
        f"L{i},{5.0 + 0.01 * i:.4f},{2.5 + 0.005 * i:.4f},0.4,galaxy,confident,lensaudit synthetic sky"
        for i in range(n)
    ]


def survey(root: Path, rows: np.ndarray | None = None) -> Path:
    """A hand-made survey: one sweep file and a lenscat-format CSV of lenses."""
    write_sweep(root / "sweep" / SWEEP, sweep_rows() if rows is None else rows, 0, 0, 10, 5)
    write_lenscat(root / "lenses.csv", good_lens_rows())
    return root


def sets(root: Path, *extra: str) -> list[str]:
    out = [
        "data.source=dr10",
        f"data.sweeps={root}/sweep",
        f"positives.lenscat={root}/lenses.csv",
        "positives.ref_patterns=['lensaudit synthetic sky']",
        f"catalog.exclusion_catalogs=['{root}/lenses.csv']",
        "engine.n_workers=1",
        *extra,
    ]
    return [a for s in out for a in ("--set", s)]


# -- the checks every case makes -----------------------------------------------------------------------
def cli(*args: str):
    return CliRunner().invoke(app, list(args))


class Proc:
    """The result of the CLI run as its own process (``exit_code``, ``output`` = stdout + stderr)."""

    exception = None

    def __init__(self, args: tuple[str, ...]):
        import os
        import subprocess
        import sys

        env = {**os.environ, "COLUMNS": "80"}  # a narrow terminal: the sentence must still be one line
        p = subprocess.run(
            [sys.executable, "-m", "lensaudit.cli", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        self.exit_code, self.output = p.returncode, p.stdout + p.stderr


def complete(run: Path, stage: str) -> bool:
    m = run / stage / "_stage.json"
    return m.is_file() and json.loads(m.read_text()).get("status") == "complete"


def clear_error(r, code: int, *names: str, run: Path | None = None, stages: tuple[str, ...] = ()) -> bool:
    """The case's contract: exit code, one ``error:`` line naming ``names``, no traceback, no stage in
    ``stages`` marked complete. Asserts each (so a failure says which) and returns True."""
    out = r.output
    assert r.exit_code == code, f"exit {r.exit_code} != {code}:\n{out[-3000:]}"
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in out, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out[-3000:]
    for n in names:
        assert n in errors[0], (n, errors[0])
    for s in stages:
        assert run is not None and not complete(run, s), f"{s} marked complete"
    return True


# -- sweeps ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_survey(tmp_path_factory) -> Path:
    return survey(tmp_path_factory.mktemp("survey"))


def _catalog(root: Path, run: Path, subprocess: bool = False):
    args = ("run", "--run-dir", str(run), "--stages", "positives,catalog", *sets(root))
    return Proc(args) if subprocess else cli(*args)


def _copy_survey(good: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(good, dst)
    return dst


@pytest.mark.slow
def test_truncated_sweep(tmp_path, good_survey, reliability):
    root = _copy_survey(good_survey, tmp_path / "s")
    f = root / "sweep" / SWEEP
    f.write_bytes(f.read_bytes()[:-1000])
    r = _catalog(root, tmp_path / "run", subprocess=True)  # in its own process: Dask's worker logs included
    ok = clear_error(r, 3, SWEEP, "truncated", run=tmp_path / "run", stages=("catalog",))
    reliability.record("bad-input", "truncated sweep FITS", ok)


@pytest.mark.slow
def test_corrupt_sweep(tmp_path, good_survey, reliability):
    root = _copy_survey(good_survey, tmp_path / "s")
    f = root / "sweep" / SWEEP
    body = bytearray(f.read_bytes())
    body[:2880] = b"\x00corrupt" * 360  # the primary header overwritten, the size kept
    f.write_bytes(bytes(body))
    r = _catalog(root, tmp_path / "run")
    ok = clear_error(r, 3, SWEEP, "not a readable FITS file", run=tmp_path / "run", stages=("catalog",))
    reliability.record("bad-input", "corrupt sweep FITS", ok)


def _rewrite_sweep(path: Path, drop: str | None = None, retype: tuple[str, str] | None = None) -> None:
    """Rewrite a sweep with one column dropped or stored with another FITS format."""
    from astropy.io import fits

    with fits.open(path) as h:
        h0, t = h[0].copy(), h[1].data.copy()
        cols = []
        for c in h[1].columns:
            if c.name == drop:
                continue
            if retype and c.name == retype[0]:
                arr = t[c.name].astype("S16") if retype[1].endswith("A") else t[c.name]
                cols.append(fits.Column(name=c.name, format=retype[1], array=arr))
            else:
                cols.append(fits.Column(name=c.name, format=c.format, unit=c.unit, array=t[c.name]))
    fits.HDUList([h0, fits.BinTableHDU.from_columns(cols, name="SWEEP")]).writeto(path, overwrite=True)


@pytest.mark.slow
def test_sweep_missing_column(tmp_path, good_survey, reliability):
    root = _copy_survey(good_survey, tmp_path / "s")
    _rewrite_sweep(root / "sweep" / SWEEP, drop="FLUX_R")
    r = _catalog(root, tmp_path / "run")
    ok = clear_error(r, 3, SWEEP, "FLUX_R", run=tmp_path / "run", stages=("catalog",))
    reliability.record("bad-input", "sweep missing a column", ok)


@pytest.mark.slow
def test_sweep_wrong_dtype(tmp_path, good_survey, reliability):
    root = _copy_survey(good_survey, tmp_path / "s")
    _rewrite_sweep(root / "sweep" / SWEEP, retype=("RA", "16A"))  # RA as text
    r = _catalog(root, tmp_path / "run")
    ok = clear_error(r, 3, SWEEP, "column RA", run=tmp_path / "run", stages=("catalog",))
    reliability.record("bad-input", "sweep column with a wrong dtype", ok)


# -- lens catalogue -----------------------------------------------------------------------------------
def test_lenscat_malformed_rows(tmp_path, good_survey, reliability):
    """Malformed rows beyond the 5 % the positives gate tolerates: the stage fails naming the file that
    lists each malformed row by file and line."""
    root = _copy_survey(good_survey, tmp_path / "s")
    rows = good_lens_rows()
    rows[2] = "L2,not-a-number,2.5,0.4,galaxy,confident,lensaudit synthetic sky"
    rows[5] = "L5,5.05,95.0,0.4,galaxy,confident,lensaudit synthetic sky"
    write_lenscat(root / "lenses.csv", rows)
    run = tmp_path / "run"
    r = cli("positives", "--run-dir", str(run), *sets(root))
    ok = clear_error(r, 4, "malformed_rows=0.25", "malformed_rows.txt", run=run, stages=("positives",))
    listed = (run / "positives" / "malformed_rows.txt").read_text()
    assert "lenses.csv:4: RA is not a number" in listed and "lenses.csv:7: Dec" in listed, listed
    reliability.record("bad-input", "lenscat CSV with malformed rows", ok)


def test_lenscat_ragged_csv(tmp_path, good_survey, reliability):
    root = _copy_survey(good_survey, tmp_path / "s")
    rows = good_lens_rows()
    rows[3] += ",extra,fields"
    write_lenscat(root / "lenses.csv", rows)
    run = tmp_path / "run"
    r = cli("positives", "--run-dir", str(run), *sets(root))
    ok = clear_error(r, 3, "lenses.csv", "line 5", run=run, stages=("positives",))
    reliability.record("bad-input", "lenscat CSV with a ragged row", ok)


# -- stamps ----------------------------------------------------------------------------------------------
def fake_sample(run: Path, n: int) -> None:
    """A hand-made sample.parquet with a completed sample manifest: the cutouts stage's only input."""
    import pandas as pd

    d = run / "sample"
    d.mkdir(parents=True)
    pd.DataFrame(
        {
            "galaxy_id": [f"0050p025_{i}" for i in range(n)],
            "ra": 5.0 + 0.001 * np.arange(n),
            "dec": np.full(n, 2.5),
            "label": (np.arange(n) % 2).astype(int),
            "pool": "N1",
            "split": "train",
            "psfsize_r": 1.3,
            "psfdepth_mag_r": 24.5,
        }
    ).to_parquet(d / "sample.parquet")
    (d / "_stage.json").write_text(
        json.dumps({"stage": "sample", "fingerprint": "hand-made", "status": "complete"})
    )


def npz_stamps(d: Path, n: int, fill: float | None) -> Path:
    """Predecessor-format .npz stamps: noise around a galaxy, or entirely ``fill`` (NaN, inf)."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:101, :101] - 50
    for i in range(n):
        img = rng.normal(0, 0.01, (101, 101, 3)) + 0.5 * np.exp(-(xx**2 + yy**2) / 20.0)[..., None]
        if fill is not None:
            img[:] = fill
        np.savez(d / f"0050p025_{i}.npz", cutout=img.astype(np.float32))
    return d


def _cutouts(run: Path, npz: Path, *extra: str):
    args = [
        "--set",
        "cutouts.provider=npz-import",
        "--set",
        f"cutouts.npz_dir={npz}",
        "--set",
        "cutouts.shard_size=4",
    ]
    return cli("cutouts", "--run-dir", str(run), "--set", "engine.n_workers=1", *args, *extra)


@pytest.mark.slow
@pytest.mark.parametrize("fill", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_stamps(tmp_path, fill, reliability):
    run = tmp_path / "run"
    fake_sample(run, 8)
    r = _cutouts(run, npz_stamps(tmp_path / "npz", 8, fill))
    ok = clear_error(r, 4, "fraction_ok", "NaN within the central radius", run=run, stages=("cutouts",))
    reliability.record("bad-input", f"{'NaN' if np.isnan(fill) else 'inf'}-filled stamps", ok)


@pytest.mark.slow
def test_corrupt_zarr_shard(tmp_path, reliability):
    """A stamp store shard corrupted under a killed run: the resumed stage names the store and the shard."""
    run = tmp_path / "run"
    fake_sample(run, 8)
    npz = npz_stamps(tmp_path / "npz", 8, None)
    r = _cutouts(run, npz)
    assert r.exit_code in (0, 4), r.output[-3000:]
    man = json.loads((run / "cutouts" / "_stage.json").read_text())
    # what a SIGKILL after the last shard leaves: no manifest, the in-progress marker, every shard recorded
    (run / "cutouts" / "_stage.json").unlink()
    (run / "cutouts" / "_inprogress.json").write_text(json.dumps({"fingerprint": man["fingerprint"]}))
    shard = run / "cutouts" / "stamps.zarr" / "image" / "c" / "1" / "0" / "0" / "0"
    body = shard.read_bytes()
    shard.write_bytes(body[: len(body) // 2])
    r = _cutouts(run, npz)
    ok = clear_error(r, 3, "stamps.zarr", "shard 1", "corrupt", run=run, stages=("cutouts",))
    assert "resuming" in r.output
    reliability.record("bad-input", "corrupt Zarr shard", ok)


class _HtmlHandler(BaseHTTPRequestHandler):
    """A cutout endpoint that answers 200 with an HTML page (a proxy's login page, a maintenance notice)."""

    def do_GET(self):  # noqa: N802
        body = b"<html><body>Service temporarily unavailable</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_service_non_fits_body(tmp_path, reliability):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    run = tmp_path / "run"
    fake_sample(run, 4)
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/viewer/cutout.fits"
        r = cli(
            "cutouts",
            "--run-dir",
            str(run),
            "--set",
            "cutouts.provider=service",
            "--set",
            f"data.cutout_url={url}",
            "--set",
            "cutouts.max_attempts=1",
            "--set",
            "cutouts.shard_size=4",
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    ok = clear_error(
        r, 4, "fraction_ok", "not FITS", "Service temporarily unavailable", run=run, stages=("cutouts",)
    )
    reliability.record("bad-input", "non-FITS body from the service", ok)


# -- configuration and run directory -------------------------------------------------------------------
@pytest.mark.parametrize(
    "case,text,code,names",
    [
        ("malformed YAML", "train:\n  lr: [0.1\n  epochs: 3\n", 2, ("bad.yaml", "not valid YAML")),
        (
            "unknown key",
            "train:\n  learning_rate: 0.1\n",
            2,
            ("bad.yaml", "train.learning_rate", "unknown key"),
        ),
        ("out-of-range value", "sky:\n  n_bricks: 0\n", 2, ("bad.yaml", "sky.n_bricks", "≥ 1")),
    ],
)
def test_bad_config(tmp_path, case, text, code, names, reliability):
    (tmp_path / "bad.yaml").write_text(text)
    run = tmp_path / "run"
    r = cli("positives", str(tmp_path / "bad.yaml"), "--run-dir", str(run))
    ok = clear_error(r, code, *names, run=run, stages=("positives",))
    assert not run.exists(), "a bad config must not create the run directory"
    reliability.record("bad-input", f"config: {case}", ok)


def test_unwritable_run_dir(tmp_path, good_survey, reliability):
    """The run directory cannot be created (a file stands where its parent should be: unwritable even for
    root, unlike a chmod)."""
    (tmp_path / "blocker").write_text("a file, not a directory\n")
    run = tmp_path / "blocker" / "run"
    r = cli("positives", "--run-dir", str(run), *sets(good_survey))
    ok = clear_error(r, 3, "run directory", str(run), run=run, stages=("positives",))
    reliability.record("bad-input", "unwritable run directory", ok)


def test_unwritable_run_log(tmp_path, good_survey, reliability):
    """The run directory exists but its log cannot be written (a directory stands where run.log goes)."""
    run = tmp_path / "run"
    (run / "run.log").mkdir(parents=True)
    r = cli("positives", "--run-dir", str(run), *sets(good_survey))
    ok = clear_error(r, 3, "run.log", run=run, stages=("positives",))
    reliability.record("bad-input", "run directory whose log is unwritable", ok)


@pytest.mark.slow
def test_run_dir_made_with_another_config(tmp_path, good_survey, reliability):
    """positives ran with one lens catalogue; catalog is then run alone with another: the run directory's
    positives were made with another config, so the catalog must refuse (UpstreamError, exit 5) naming it."""
    other = tmp_path / "other.csv"
    write_lenscat(other, good_lens_rows(3))
    run = tmp_path / "run"
    assert cli("positives", "--run-dir", str(run), *sets(good_survey)).exit_code == 0
    r = cli("catalog", "--run-dir", str(run), *sets(good_survey, f"positives.lenscat={other}"))
    ok = clear_error(r, 5, "positives", str(run), run=run, stages=("catalog",))
    reliability.record("bad-input", "run directory made with another config", ok)
