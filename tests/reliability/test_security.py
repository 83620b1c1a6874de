"""Security checks (issue 22): ids never become paths outside the run directory, the cutout server binds only
127.0.0.1, checkpoints load only through ``torch.load(..., weights_only=True)``; and the sweep reader takes
GAIA_DUPLICATED_SOURCE as the DR10 FITS logical or as int8."""

from __future__ import annotations

import ast
import json
import pickle
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_bad_inputs import SWEEP, cli, sets, survey, sweep_rows, write_lenscat

SRC = Path(__file__).resolve().parents[2] / "src" / "lensaudit"


def _tree(d: Path) -> set[Path]:
    return {p for p in d.rglob("*")}


@pytest.mark.slow
def test_dotdot_ids_stay_data(tmp_path):
    """A sweep whose BRICKNAME is '../../ev' and a lens named '../../../evil': the catalog runs, the ids keep
    their '../' as data, and no file appears outside the run directory."""
    root = survey(tmp_path / "survey", sweep_rows(brickname="../../ev"))
    write_lenscat(
        root / "lenses.csv",
        [
            f"../../../evil{i},{5.0 + 0.01 * i:.4f},2.5,0.4,galaxy,confident,lensaudit synthetic sky"
            for i in range(4)
        ],
    )
    run = tmp_path / "deep" / "run"
    run.mkdir(parents=True)
    outside = {p for p in _tree(tmp_path) if run not in p.parents and p != run}
    r = cli("run", "--run-dir", str(run), "--stages", "positives,catalog", *sets(root))
    assert r.exit_code in (0, 4), r.output[-3000:]  # a tiny survey may fail a catalog gate; it must run
    pool = pd.concat(pd.read_parquet(p) for p in (run / "catalog").rglob("part-*.parquet"))
    assert len(pool) and pool.galaxy_id.str.startswith("../../ev_").all()
    pos = pd.read_parquet(run / "positives" / "positives.parquet")
    assert pos.name.str.startswith("../../../evil").all() and not pos.positive_id.str.contains("/").any()
    after = {p for p in _tree(tmp_path) if run not in p.parents and p != run}
    assert after == outside, sorted(map(str, after - outside))
    assert not list(tmp_path.rglob("evil*")) and not list(tmp_path.rglob("ev_*"))


def test_npz_provider_never_follows_a_dotdot_id(tmp_path):
    """The .npz provider looks ids up in its index of npz_dir: '../outside' does not read ../outside.npz."""
    from lensaudit.config import load_config
    from lensaudit.stamps.providers import get_provider

    (tmp_path / "npz").mkdir()
    img = np.ones((101, 101, 3), np.float32)
    np.savez(tmp_path / "outside.npz", cutout=img)
    np.savez(tmp_path / "npz" / "inside.npz", cutout=img)
    cfg = load_config(
        None, ["cutouts.provider=npz-import", f"cutouts.npz_dir={tmp_path / 'npz'}"], tmp_path / "r"
    )
    rows = pd.DataFrame({"galaxy_id": ["../outside", "inside"], "ra": [1.0, 1.0], "dec": [2.0, 2.0]})
    res = get_provider("npz-import", cfg).fetch(rows)
    assert res.index.status.tolist() == ["failed", "ok"], res.index
    assert res.index.source.iloc[0] == "" and "no .npz file" in res.index.reason.iloc[0]


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent (UDP connect only picks the interface)
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def test_cutout_server_binds_loopback_only(tmp_path):
    import inspect

    from lensaudit.cli import sky as sky_cli
    from lensaudit.sky.server import CutoutServer, serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(CutoutServer).parameters["host"].default == "127.0.0.1"
    assert "host" not in inspect.signature(sky_cli.serve).parameters  # the CLI cannot widen it
    (tmp_path / "coadd").mkdir()
    srv = serve(tmp_path)
    try:
        assert srv.httpd.server_address[0] == "127.0.0.1"
        socket.create_connection(("127.0.0.1", srv.port), timeout=5).close()
        ip = _non_loopback_ip()
        if ip is not None:
            with pytest.raises(OSError):
                socket.create_connection((ip, srv.port), timeout=5).close()
    finally:
        srv.shutdown()


def _torch_load_calls() -> list[tuple[str, int, bool]]:
    """Every call of ``torch.load`` (or a bare ``load`` imported from torch) in src: (file, line,
    weights_only=True given literally)."""
    out = []
    for f in sorted(SRC.rglob("*.py")):
        tree = ast.parse(f.read_text(), str(f))
        from_torch = {
            a.asname or a.name
            for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module == "torch"
            for a in n.names
            if a.name == "load"
        }
        for n in ast.walk(tree):
            if not isinstance(n, ast.Call):
                continue
            fn = n.func
            is_load = (
                isinstance(fn, ast.Attribute)
                and fn.attr == "load"
                and isinstance(fn.value, ast.Name)
                and fn.value.id == "torch"
            ) or (isinstance(fn, ast.Name) and fn.id in from_torch)
            if is_load:
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in n.keywords
                )
                out.append((str(f.relative_to(SRC)), n.lineno, safe))
    return out


def test_every_torch_load_is_weights_only():
    calls = _torch_load_calls()
    assert calls, "no torch.load found: the scan is broken"
    unsafe = [(f, ln) for f, ln, safe in calls if not safe]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    text = "\n".join(f.read_text() for f in SRC.rglob("*.py"))
    assert "pickle.load" not in text and "torch.jit.load" not in text


class _Payload:
    """Unpickling it runs code: writes a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_pickled_checkpoint_is_refused(tmp_path):
    """A checkpoint holding a non-tensor object is refused by the frozen-model loader, and its code never
    runs."""
    import torch

    from lensaudit.train.infer import FrozenModel

    marker = tmp_path / "marker"
    best = tmp_path / "best.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload(str(marker))}, best)
    card = tmp_path / "model_card.json"
    card.write_text(json.dumps({"arch": "resnet18", "stem": "small"}))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        FrozenModel(best, card, device="cpu")
    assert not marker.exists()
    torch.load(best, weights_only=False)  # the same file, loaded unsafely, would run the payload
    assert marker.read_text() == "pwned"


# -- GAIA_DUPLICATED_SOURCE: the DR10 logical and an int8 form -------------------------------------
def _gaia_sweep(path: Path, form: str) -> np.ndarray:
    from astropy.io import fits

    from lensaudit.survey.sweeps import write_sweep

    rows = sweep_rows(6)
    dup = np.array([True, False, True, False, False, True])
    rows["GAIA_DUPLICATED_SOURCE"] = dup
    write_sweep(path, rows, 0, 0, 10, 5)
    if form != "bool":  # the same file, the flag stored as a signed (TZERO = -128) or unsigned byte
        with fits.open(path) as h:
            h0, t = h[0].copy(), h[1].data.copy()
            cols = [
                fits.Column(name=c.name, format=c.format, unit=c.unit, array=t[c.name])
                if c.name != "GAIA_DUPLICATED_SOURCE"
                else fits.Column(
                    name=c.name,
                    format="B",
                    bzero=-128 if form == "int8" else None,
                    array=dup.astype(np.int8 if form == "int8" else np.uint8),
                )
                for c in h[1].columns
            ]
        fits.HDUList([h0, fits.BinTableHDU.from_columns(cols, name="SWEEP")]).writeto(path, overwrite=True)
        with fits.open(path) as h:
            k = h[1].columns.names.index("GAIA_DUPLICATED_SOURCE") + 1
            assert h[1].header[f"TFORM{k}"] == "B"
            assert h[1].header.get(f"TZERO{k}") == (-128 if form == "int8" else None)
    return dup


@pytest.mark.parametrize("form", ["bool", "int8", "uint8"])
def test_gaia_duplicated_source_forms(tmp_path, form):
    from astropy.io import fits

    from lensaudit.survey.sweeps import read_sweep

    path = tmp_path / SWEEP
    dup = _gaia_sweep(path, form)
    if form == "bool":
        with fits.open(path) as h:
            assert h[1].columns["GAIA_DUPLICATED_SOURCE"].format == "L"
    df = read_sweep(path, ["RA", "GAIA_DUPLICATED_SOURCE"])
    assert df.GAIA_DUPLICATED_SOURCE.dtype == bool
    assert df.GAIA_DUPLICATED_SOURCE.tolist() == dup.tolist()


def test_gaia_duplicated_source_not_a_flag(tmp_path):
    """An int8 column with values other than 0/1 is not the flag: one sentence naming file and column."""
    from astropy.io import fits

    from lensaudit.errors import InputError
    from lensaudit.survey.sweeps import read_sweep

    path = tmp_path / SWEEP
    _gaia_sweep(path, "int8")
    with fits.open(path, mode="update") as h:
        h[1].data["GAIA_DUPLICATED_SOURCE"][0] = 7
    with pytest.raises(InputError, match=rf"{SWEEP}: sweep column GAIA_DUPLICATED_SOURCE has dtype"):
        read_sweep(path, ["GAIA_DUPLICATED_SOURCE"])
