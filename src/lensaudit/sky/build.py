"""Build a synthetic DR10 sky directory: per brick (resumable, parallel over processes), then sweeps and
tables.

Layout: ``sweep/``, ``coadd/``, ``survey-bricks.fits.gz``, ``conditions.parquet``, ``truth.parquet``,
``lenses.csv``; per-brick intermediates in ``_bricks/<brick>.{catalog,truth,lenses}.parquet`` (a brick whose
three files exist is done and is not redone after a kill).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.config import SkyConfig
from lensaudit.sky.catalogues import write_catalogues
from lensaudit.sky.model import (
    BrickConditions,
    Reference,
    SkyObject,
    SourceVariant,
    choose_bricks,
    draw_conditions,
    draw_objects,
)
from lensaudit.survey.bricks import Brick
from lensaudit.survey.lenses import packaged_lenscat_path, read_lenscat_csv, select_positives
from lensaudit.utils import write_parquet_atomic

DESI_REFS = [r"Huang et al\.", r"Storfer et al\."]


def real_positives() -> pd.DataFrame:
    cat = read_lenscat_csv(packaged_lenscat_path(), "lenscat").table
    return select_positives(cat, DESI_REFS, ["galaxy"], {"A": 1.0, "B": 0.5})


def plan(cfg: SkyConfig, seed: int) -> list[Brick]:
    return choose_bricks(
        cfg.n_bricks, cfg.frac_bricks_on_lenses, cfg.lens_dec_max, real_positives(), seed + cfg.seed_offset
    )


def _brick_done(out: Path, name: str) -> bool:
    return all(
        (out / "_bricks" / f"{name}.{k}.parquet").is_file()
        for k in ("catalog", "truth", "lenses", "conditions")
    )


def brick_objects(
    brick: Brick, cfg: SkyConfig, seed: int, ref: Reference, pos: pd.DataFrame
) -> tuple[BrickConditions, list[SkyObject]]:
    """One brick's observing conditions and objects, as :func:`build_brick` renders them (``seed`` already
    offset by ``cfg.seed_offset``; ``pos``: :func:`real_positives`)."""
    cond = draw_conditions(brick, ref, cfg.moffat_beta_range, cfg.defect_frac, seed)
    half = (cfg.brick_pixels - 40) * 0.262 / 3600 / 2
    cosd = np.cos(np.deg2rad(brick.dec))
    dra = ((pos.ra - brick.ra + 180) % 360 - 180) * cosd
    inside = pos[(dra.abs() < half) & ((pos.dec - brick.dec).abs() < half)]
    objs = draw_objects(
        cond,
        cfg.brick_pixels,
        ref,
        seed,
        cfg.lenses_per_brick,
        cfg.unknown_lenses_per_brick,
        cfg.confusers_per_brick,
        cfg.theta_e_range_arcsec,
        inside,
        SourceVariant(cfg.src_mag_offset, cfg.src_size_scale),
    )
    return cond, objs


def lens_sources(cfg: SkyConfig, seed: int) -> pd.DataFrame:
    """Every lens of the sky that ``cfg`` and ``seed`` build, drawn but not rendered (seconds, not minutes):
    ``brickname``, ``theta_e_arcsec``, ``src_mag_r`` and ``src_rhalf_arcsec``, as its truth table has them.
    For skies built before the truth table carried ``src_rhalf_arcsec``."""
    ref, pos, rows = Reference.load(), real_positives(), []
    for b in plan(cfg, seed):
        for o in brick_objects(b, cfg, seed + cfg.seed_offset, ref, pos)[1]:
            if o.kind == "lens":
                p = o.params
                rows.append((b.brickname, p["theta_e"], p["src_mag_r"], p["src_rhalf_arcsec"]))
    return pd.DataFrame(rows, columns=["brickname", "theta_e_arcsec", "src_mag_r", "src_rhalf_arcsec"])


def build_brick(out: str, brick: Brick, cfg: SkyConfig, seed: int) -> str:
    """Render and write one brick (coadds + per-brick tables). Pure function of (brick, cfg, seed)."""
    from lensaudit.sky.render import render_brick
    from lensaudit.survey.coadds import write_coadd_brick

    out_p = Path(out)
    seed = seed + cfg.seed_offset
    cond, objs = brick_objects(brick, cfg, seed, Reference.load(), real_positives())
    r = render_brick(cond, objs, cfg.brick_pixels, seed)
    write_coadd_brick(out_p / "coadd", brick, r.images, r.invvars, r.maskbits)
    d = out_p / "_bricks"
    d.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(r.truth, d / f"{brick.brickname}.truth.parquet")
    write_parquet_atomic(r.lenses, d / f"{brick.brickname}.lenses.parquet")
    write_parquet_atomic(pd.DataFrame(cond.to_rows()), d / f"{brick.brickname}.conditions.parquet")
    write_parquet_atomic(_catalog_frame(r.catalog), d / f"{brick.brickname}.catalog.parquet")
    return brick.brickname


def _catalog_frame(cat: pd.DataFrame) -> pd.DataFrame:
    if "DCHISQ" in cat:
        d = np.stack(cat.pop("DCHISQ").to_numpy()) if len(cat) else np.zeros((0, 5))
        for k in range(5):
            cat[f"DCHISQ_{k}"] = d[:, k] if len(cat) else []
    return cat


def build_sky(
    out: str | Path,
    cfg: SkyConfig,
    seed: int,
    workers: int = 2,
    on_brick: Callable[[str], None] | None = None,
) -> dict:
    """Build (or finish building) the sky under ``out``; returns counts."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bricks = plan(cfg, seed)
    todo = [b for b in bricks if not _brick_done(out, b.brickname)]
    for b in bricks:
        if b not in todo and on_brick:
            on_brick(b.brickname)
    if todo:
        from lensaudit.sky.render import require_sky_extra

        require_sky_extra()  # one-sentence ConfigError before any worker starts, not an ImportError per brick
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp

            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
                for name in ex.map(
                    build_brick, [str(out)] * len(todo), todo, [cfg] * len(todo), [seed] * len(todo)
                ):
                    if on_brick:
                        on_brick(name)
        else:
            for b in todo:
                build_brick(str(out), b, cfg, seed)
                if on_brick:
                    on_brick(b.brickname)
    return assemble(out, bricks, seed + cfg.seed_offset)


def assemble(out: Path, bricks: list[Brick], seed: int = 0) -> dict:
    """Sweeps (5°×5° files, exact schema), survey-bricks, conditions, truth and lenses.csv from per-brick
    tables; then the Galaxy Zoo catalogue and the DESI SL VAC drawn from the truth
    (:mod:`lensaudit.sky.catalogues`, their own generators: the images and sweeps are unchanged)."""
    from lensaudit.survey.bricks import sweep_filename
    from lensaudit.survey.sweeps import empty_sweep_table, write_sweep

    d = out / "_bricks"
    cats = [pd.read_parquet(d / f"{b.brickname}.catalog.parquet") for b in bricks]
    cat = pd.concat([c for c in cats if len(c)], ignore_index=True)
    truth = pd.concat(
        [pd.read_parquet(d / f"{b.brickname}.truth.parquet") for b in bricks], ignore_index=True
    )
    lenses = pd.concat(
        [pd.read_parquet(d / f"{b.brickname}.lenses.parquet") for b in bricks], ignore_index=True
    )
    cond = pd.concat(
        [pd.read_parquet(d / f"{b.brickname}.conditions.parquet") for b in bricks], ignore_index=True
    )
    cat["_file"] = [sweep_filename(r, dd) for r, dd in zip(cat.RA, cat.DEC)]
    (out / "sweep").mkdir(exist_ok=True)
    for fname, grp in cat.groupby("_file", sort=True):
        grp = grp.sort_values(["BRICKID", "OBJID"])
        rows = empty_sweep_table(len(grp))
        for col in grp.columns:
            if col.startswith("DCHISQ_"):
                rows["DCHISQ"][:, int(col[-1])] = grp[col].fillna(0).to_numpy()
            elif col in (rows.dtype.names or ()):
                v = grp[col].to_numpy()
                if rows.dtype[col].kind == "S":
                    rows[col] = np.array(
                        [str(x) if isinstance(x, str) else "" for x in v], dtype=rows.dtype[col]
                    )
                else:
                    rows[col] = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=0.0).astype(
                        rows.dtype[col]
                    )
        parts = fname[6:-5].split("-")
        ramin, ramax = float(parts[0][:3]), float(parts[1][:3])
        decmin = float(parts[0][4:]) * (1 if parts[0][3] == "p" else -1)
        decmax = float(parts[1][4:]) * (1 if parts[1][3] == "p" else -1)
        write_sweep(
            out / "sweep" / fname,
            rows,
            ramin,
            decmin,
            ramax,
            decmax,
            {"RELEASE": 10000, "SURVEY": "lensaudit-synthetic"},
        )
    _write_survey_bricks(out / "survey-bricks.fits.gz", bricks)
    write_parquet_atomic(cond, out / "conditions.parquet")
    write_parquet_atomic(truth, out / "truth.parquet")
    lenses.to_csv(out / "lenses.csv", index=False)
    extra = write_catalogues(out, truth, cat, seed)
    return {
        **extra,
        "bricks": len(bricks),
        "catalogued": int(len(cat)),
        "objects": int(len(truth)),
        "lenses_csv": int(len(lenses)),
        "lenses_rendered": int(truth.is_lens.sum()),
        "sweep_files": int(cat._file.nunique()),
    }


def _write_survey_bricks(path: Path, bricks: list[Brick]) -> None:
    from astropy.io import fits

    cols = [
        fits.Column(name="BRICKNAME", format="8A", array=np.array([b.brickname for b in bricks])),
        fits.Column(name="BRICKID", format="J", array=np.array([b.brickid for b in bricks])),
        fits.Column(name="BRICKQ", format="I", array=np.zeros(len(bricks), np.int16)),
        fits.Column(name="BRICKROW", format="J", array=np.array([b.brickrow for b in bricks])),
        fits.Column(name="BRICKCOL", format="J", array=np.array([b.brickcol for b in bricks])),
    ]
    for k in ("ra", "dec", "ra1", "ra2", "dec1", "dec2"):
        cols.append(fits.Column(name=k.upper(), format="D", array=np.array([getattr(b, k) for b in bricks])))
    tmp = path.with_name(".tmp-" + path.name)
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="BRICKS")]).writeto(
        tmp, overwrite=True
    )
    tmp.replace(path)
