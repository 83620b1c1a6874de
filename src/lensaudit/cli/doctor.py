"""`lensaudit doctor [CONFIG]`: can this machine run this config? One line per check, before any stage runs.

✓ the check passed; ! a problem that does not stop a run (it will be slower, or a stage will build what
is missing); ✗ a blocker: the run would stop. Exit 0 when no check is a blocker, 8 when any is (2 for a bad
config, as every command). Doctor reads only: it writes nothing, starts no server and builds no sky.

Checks: the sweep files (present, every HDU1 a 'SWEEP' table with the 130 DR10 columns and their FITS formats,
not truncated), the coadd layout, the cutout service (one small test cutout fetched from ``data.cutout_url``
with a short timeout), the Dask scheduler (``engine.kind: address``), CUDA, memory, free disk against the
run's estimated size (:func:`estimate_run_bytes`) and the installed extras.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlparse

import typer

from lensaudit.cli.common import DEFAULT_CONFIG, ConfigArg, RunDirOpt, SetOpt, guard
from lensaudit.config import RunConfig, load_config

#: the exit code of a doctor run with at least one blocker
EXIT_BLOCKER = 8
SYMBOL = {"ok": "✓", "warn": "!", "blocker": "✗"}
#: where the test cutout is cut when no sweep row gives a position: COSMOS, inside DR10 south
FALLBACK_POSITION = (150.1, 2.2)
TEST_CUTOUT_PIX = 16
SERVICE_TIMEOUT_S = 5.0
#: fixed allowance for everything that is not stamps, sky or pool: models, tables, figures, report, logs
OTHER_BYTES = 1 << 30
GB = 1e9


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | blocker
    message: str

    def line(self) -> str:
        return f"{SYMBOL[self.status]} {self.name}: {self.message}"


def _ok(name: str, msg: str) -> Check:
    return Check(name, "ok", msg)


def _warn(name: str, msg: str) -> Check:
    return Check(name, "warn", msg)


def _block(name: str, msg: str) -> Check:
    return Check(name, "blocker", msg)


# -- data ----------------------------------------------------------------------------------------------
def _synthetic_unbuilt(cfg: RunConfig) -> bool:
    return cfg.data.source == "synthetic" and not (cfg.sky_dir / "sweep").is_dir()


def sweep_problem(fs, path: str) -> str | None:
    """Why one sweep file is not a DR10 sweep (header-only: HDU1, the 130 columns, their formats, the data
    size), or None when it is."""
    from astropy.io import fits

    from lensaudit.survey.sweeps import SWEEP_COLUMNS

    try:
        with (
            warnings.catch_warnings(),  # astropy warns of a truncated file: reported below, as one sentence
            fs.open(path, "rb") as fh,
            fits.open(fh, memmap=False, lazy_load_hdus=True) as hdul,
        ):
            warnings.simplefilter("ignore")
            if len(hdul) < 2 or hdul[1].header.get("EXTNAME") != "SWEEP":
                return "HDU1 is not a BINTABLE with EXTNAME='SWEEP'"
            hdu = hdul[1]
            forms = {c.name.upper(): str(c.format).upper() for c in hdu.columns}
            missing = [n for n, _, _ in SWEEP_COLUMNS if n not in forms]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                return f"{len(missing)} of the 130 DR10 columns are missing ({shown})"
            for n, tform, _ in SWEEP_COLUMNS:
                got = forms[n]
                if got != tform and not (n == "GAIA_DUPLICATED_SOURCE" and got in ("L", "B")):
                    return f"column {n} has FITS format {got}, DR10 has {tform}"
            info = hdu.fileinfo()
            end = info["datLoc"] + hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
            size = fs.size(path)
            if size < end:
                return f"truncated: {size} bytes, the header needs {end}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"not a readable FITS file ({type(exc).__name__}: {exc})"
    return None


def check_sweeps(cfg: RunConfig) -> tuple[Check, str | None]:
    """The sweep files; also returns the first file (for a test position) when they are usable."""
    import fsspec

    from lensaudit.catalog.build import list_sweeps
    from lensaudit.errors import InputError

    loc = cfg.sweeps_location
    if _synthetic_unbuilt(cfg):
        return _warn("sweeps", f"the synthetic sky is not built yet: the sky stage will write {loc}"), None
    try:
        files = list_sweeps(loc)
    except InputError:
        return _block("sweeps", f"data.sweeps: {loc} is not reachable or holds no sweep-*.fits files"), None
    except Exception as exc:  # an fsspec protocol error, a DNS failure, ...
        return _block("sweeps", f"data.sweeps: {loc} is not reachable ({type(exc).__name__}: {exc})"), None
    fs, _ = fsspec.core.url_to_fs(files[0])
    remote = "://" in files[0]
    checked = files[:1] if remote else files  # headers only, but one remote file is enough of a probe
    for f in checked:
        problem = sweep_problem(fs, f)
        if problem:
            return _block("sweeps", f"sweep file {f}: {problem}"), None
    which = "the first" if remote else ("the one" if len(files) == 1 else f"all {len(files)}")
    msg = (
        f"{len(files)} sweep files at {loc}; {which} checked: 130 DR10 columns, right formats, not truncated"
    )
    return _ok("sweeps", msg), files[0]


def _first_brick_dir(root: Path) -> Path | None:
    """The first ``<AAA>/<brick>`` directory below a coadd root (scandir: stops at the first)."""
    for top in sorted(os.scandir(root), key=lambda e: e.name):
        if top.is_dir() and len(top.name) == 3:
            for b in sorted(os.scandir(top.path), key=lambda e: e.name):
                if b.is_dir() and b.name.startswith(top.name):
                    return Path(b.path)
    return None


def check_coadds(cfg: RunConfig) -> Check:
    from lensaudit.survey.bricks import coadd_path

    root, used = cfg.coadd_dir, cfg.cutouts.provider == "coadds" or cfg.data.source == "synthetic"
    problem = _block if used else _warn
    if _synthetic_unbuilt(cfg):
        return _warn("coadds", f"the synthetic sky is not built yet: the sky stage will write {root}")
    if not root.is_dir():
        return problem("coadds", f"data.coadd_dir: {root} is not reachable" + ("" if used else " (not used)"))
    brick_dir = _first_brick_dir(root)
    if brick_dir is None:
        return problem("coadds", f"data.coadd_dir: {root} has no <AAA>/<brick>/ directories")
    brick = brick_dir.name
    want = [coadd_path(brick, k, b) for b in cfg.cutouts.bands for k in ("image", "invvar")]
    want.append(coadd_path(brick, "maskbits"))
    missing = [w for w in want if not (root / w).is_file()]
    if missing:
        return problem(
            "coadds", f"brick {brick} under {root} lacks {', '.join(Path(m).name for m in missing)}"
        )
    return _ok("coadds", f"{root}: DR10 layout <AAA>/<brick>/legacysurvey-<brick>-*.fits.fz (brick {brick})")


def test_position(first_sweep: str | None) -> tuple[float, float]:
    """RA, Dec of the first object of the first sweep file, or :data:`FALLBACK_POSITION`."""
    if first_sweep is None:
        return FALLBACK_POSITION
    from lensaudit.survey.sweeps import read_sweep

    try:
        t = read_sweep(first_sweep, ["RA", "DEC"])
        return (float(t.RA.iloc[0]), float(t.DEC.iloc[0])) if len(t) else FALLBACK_POSITION
    except Exception:
        return FALLBACK_POSITION


def check_service(cfg: RunConfig, first_sweep: str | None) -> Check:
    from lensaudit.survey.cutout_service import CutoutClient

    url, used = cfg.data.cutout_url, cfg.cutouts.provider == "service"
    ra, dec = test_position(first_sweep)
    client = CutoutClient(
        url,
        cfg.data.layer,
        requests_per_second=100.0,
        concurrency=1,
        timeout_s=SERVICE_TIMEOUT_S,
        max_attempts=1,
    )
    r = client.fetch(ra, dec, TEST_CUTOUT_PIX, cfg.cutouts.pixscale_arcsec, cfg.cutouts.bands)
    if r.ok:
        return _ok(
            "cutout service",
            f"{url} answered a valid {TEST_CUTOUT_PIX}-px FITS cutout at {ra:.4f}, {dec:.4f}",
        )
    why = (r.reason or "no answer").removeprefix(f"gave up after {r.attempts} attempts: ").splitlines()[0]
    if why.startswith(("ConnectionError", "ConnectTimeout", "ReadTimeout")):
        why = f"{why.split(':', 1)[0]}: no answer (timeout {SERVICE_TIMEOUT_S:g} s)"
    why = why[:160]
    if used:
        return _block("cutout service", f"data.cutout_url: {url} gave no test cutout ({why})")
    return _warn(
        "cutout service", f"data.cutout_url: {url} gave no test cutout ({why}); not used by this run"
    )


def check_engine(cfg: RunConfig) -> Check | None:
    e = cfg.engine
    if e.kind == "local":
        return _ok("dask engine", f"LocalCluster, {e.n_workers} workers × {e.threads_per_worker} threads")
    if e.kind == "slurm":
        if importlib.util.find_spec("dask_jobqueue") is None:
            return _block(
                "dask engine", "engine.kind = slurm needs dask-jobqueue: pip install 'lensaudit[cluster]'"
            )
        return _ok("dask engine", "SLURMCluster (dask-jobqueue installed); jobs start when a stage runs")
    if not e.address:
        return _block("dask engine", "engine.address must be set when engine.kind = 'address'")
    u = urlparse(e.address)
    try:
        with socket.create_connection((u.hostname or "", u.port or 8786), timeout=SERVICE_TIMEOUT_S):
            pass
    except OSError as exc:
        return _block("dask engine", f"engine.address: no scheduler answers at {e.address} ({exc})")
    return _ok("dask engine", f"a scheduler listens at {e.address}")


# -- machine -------------------------------------------------------------------------------------------
def check_cuda(cfg: RunConfig) -> Check:
    want = cfg.train.device
    if importlib.util.find_spec("torch") is None:
        return _block("cuda", "torch is not installed")
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        p = torch.cuda.get_device_properties(0)
        return _ok(
            "cuda", f"{n} CUDA device(s): {p.name}, {p.total_memory / GB:.0f} GB (train.device={want})"
        )
    if want.startswith("cuda"):
        return _block("cuda", f"train.device = {want} but torch sees no CUDA device")
    return _warn(
        "cuda", "no CUDA device: train, evaluate and inject scoring run on the CPU (slow on real DR10)"
    )


def memory_bytes() -> tuple[int, int]:
    """(total, available) RAM in bytes: psutil, else /proc/meminfo."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:
        kb = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, v = line.split(":", 1)
            kb[k] = int(v.split()[0]) * 1024
        return kb["MemTotal"], kb.get("MemAvailable", kb["MemFree"])


def check_memory(cfg: RunConfig) -> Check:
    from dask.utils import format_bytes, parse_bytes

    total, avail = memory_bytes()
    have = f"{format_bytes(avail)} available of {format_bytes(total)}"
    e = cfg.engine
    if e.kind != "local":
        return _ok("memory", f"{have} here; the workers' memory is the cluster's")
    try:
        need = e.n_workers * parse_bytes(e.memory_limit)
    except ValueError:
        return _block("memory", f"engine.memory_limit = {e.memory_limit!r} is not a dask memory size")
    if need > avail:
        return _warn(
            "memory",
            f"{have}, but engine.n_workers × engine.memory_limit = {format_bytes(need)}: "
            "workers will spill to disk or pause",
        )
    return _ok("memory", f"{have}; the LocalCluster may use {format_bytes(need)}")


def _n_positives(cfg: RunConfig) -> int:
    """The positives the run will select (the configured catalogues, filtered as the positives stage does);
    for an unbuilt synthetic sky: sky.n_bricks × sky.lenses_per_brick."""
    from lensaudit.survey import positives
    from lensaudit.survey.lenses import TIERS, select_positives

    try:
        df, _ = positives.read(cfg)
    except Exception:
        return cfg.sky.n_bricks * cfg.sky.lenses_per_brick if cfg.data.source == "synthetic" else 5000
    pc = cfg.positives
    sel = select_positives(df, pc.ref_patterns, list(pc.lens_types), dict.fromkeys(set(TIERS.values()), 1.0))
    return len(sel)


def estimate_run_bytes(cfg: RunConfig) -> dict[str, int]:
    """The run's estimated disk use, by part (upper bounds: stores uncompressed):

    - stamps: positives × (1 + sample.neg_per_pos) × bytes per stamp, where a stamp is
      size² × (bands × (4 B image + 4 B invvar) + 4 B maskbits) (≈ 0.29 MB at 101 px, grz);
    - injections: inject grid cells × inject.n_per_cell × bytes per stamp (× 2 with a second population);
    - sky (synthetic, not yet built): n_bricks × brick_pixels² × (4 bands × 8 B + 4 B maskbits);
    - pool: 10% of the local sweep files' bytes (the parent cuts keep a few % of the rows, ~40% of the
      columns);
    - other: 1 GB (models, tables, figures, report, logs).
    """
    from lensaudit.catalog.build import local_sweeps
    from lensaudit.selection.grid import grid_of

    c = cfg.cutouts
    per_stamp = c.size_pix**2 * (len(c.bands) * 8 + 4)
    n_pos = _n_positives(cfg)
    cells, _ = grid_of(cfg.inject)
    pops = 2 if cfg.population.enabled else 1
    out = {
        "stamps": int(n_pos * (1 + cfg.sample.neg_per_pos) * per_stamp),
        "injections": int(len(cells) * cfg.inject.n_per_cell * per_stamp * pops),
        "sky": cfg.sky.n_bricks * cfg.sky.brick_pixels**2 * (4 * 8 + 4) * pops
        if _synthetic_unbuilt(cfg)
        else 0,
        "pool": sum(p.stat().st_size for p in local_sweeps(cfg.sweeps_location)) // 10,
        "other": OTHER_BYTES,
    }
    return out


def check_disk(cfg: RunConfig) -> Check:
    from dask.utils import format_bytes

    parts = estimate_run_bytes(cfg)
    need = sum(parts.values())
    where = cfg.run_dir.resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)
    msg = f"{format_bytes(free)} free at {where}, the run needs ≈ {format_bytes(need)} ({detail})"
    return _ok("disk", msg) if free >= need else _block("disk", msg)


def _pkg(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return version(name)
    except PackageNotFoundError:
        return "installed"


def check_extras(cfg: RunConfig) -> Check:
    sky = {n: _pkg(n) for n in ("galsim", "lenstronomy")}
    missing = [n for n, v in sky.items() if v is None]
    if missing:
        msg = f"[sky] extra: {', '.join(missing)} missing (pip install 'lensaudit[sky]')"
        if _synthetic_unbuilt(cfg):
            return _block("extras", msg + ": the sky stage cannot build the synthetic sky")
        return _warn("extras", msg + ": needed only to build a synthetic sky")
    cluster = _pkg("dask_jobqueue")
    tail = (
        f"; [cluster]: dask-jobqueue {cluster}"
        if cluster
        else "; [cluster] not installed (engine.kind=slurm only)"
    )
    return _ok("extras", "[sky]: " + ", ".join(f"{n} {v}" for n, v in sky.items()) + tail)


def run_checks(cfg: RunConfig) -> list[Check]:
    """Every check, in order; a check that raises becomes a blocker line (never a traceback)."""
    first: list[str | None] = [None]

    def sweeps(c: RunConfig) -> Check:
        chk, first[0] = check_sweeps(c)
        return chk

    steps: list[tuple[str, Callable[[RunConfig], Check | None]]] = [
        ("sweeps", sweeps),
        ("coadds", check_coadds),
        ("cutout service", lambda c: check_service(c, first[0])),
        ("dask engine", check_engine),
        ("cuda", check_cuda),
        ("memory", check_memory),
        ("disk", check_disk),
        ("extras", check_extras),
    ]
    out = []
    for name, fn in steps:
        try:
            res = fn(cfg)
        except Exception as exc:
            res = _block(name, f"the check itself failed ({type(exc).__name__}: {exc})")
        if res is not None:
            out.append(res)
    return out


def doctor(config: ConfigArg = Path(DEFAULT_CONFIG), run_dir: RunDirOpt = None, set_: SetOpt = None) -> None:
    """Check that this machine can run CONFIG: data paths and formats, the cutout service, the Dask engine,
    CUDA, memory, free disk against the run's estimated size, the installed extras. One line per check
    (✓ ok, ! warning, ✗ blocker); exit 8 when any check is a blocker."""

    def go() -> list[Check]:
        return run_checks(load_config(config, set_ or [], run_dir))

    checks = guard(go)
    for c in checks:
        typer.echo(c.line())
    blockers = [c for c in checks if c.status == "blocker"]
    warns = sum(c.status == "warn" for c in checks)
    if blockers:
        typer.echo(f"doctor: {len(blockers)} blocker(s), {warns} warning(s): fix the ✗ lines before running")
        raise typer.Exit(code=EXIT_BLOCKER)
    typer.echo(f"doctor: ready ({warns} warning(s))")
