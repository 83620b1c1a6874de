"""Known-lens catalogues: lenscat (packaged CSV), lenscat-format CSVs, and the DESI DR1 strong-lens VAC.

We read lenscat's packaged ``data/catalog.csv`` through ``importlib.resources`` instead of ``import lenscat``:
importing lenscat pulls in ligo.skymap, healpy, matplotlib and requests at import time (seconds, and a
network-capable module) for a 3.8 MB CSV that pandas reads in milliseconds.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.errors import InputError

LENSCAT_COLUMNS = ["name", "ra", "dec", "zlens", "type", "grading", "ref"]
TIERS = {"confident": "A", "probable": "B"}
_NUM = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def packaged_lenscat_path() -> Path:
    """Path of the CSV shipped inside the lenscat wheel (no download, no import of lenscat)."""
    spec = importlib.util.find_spec("lenscat")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the lenscat package is not installed; pip install lenscat==1.1.3")
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "catalog.csv"
    if not p.is_file():
        raise InputError(f"lenscat is installed but its packaged catalogue is missing: {p}")
    return p


def parse_zlens(values) -> np.ndarray:
    """Lens redshift from lenscat's messy strings: the first number, NaN for '-', 'measured', 'L', ''.

    >>> parse_zlens(["0.3?", "-", "measured", "0.49 | 0.49", "0.5", None, "not measured",
    ...              "nan | 0.2"]).tolist()
    [0.3, nan, nan, 0.49, 0.5, nan, nan, 0.2]
    """
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            continue
        for part in str(v).split("|"):
            m = _NUM.search(part.strip())
            if m and part.strip().lower() != "nan":
                z = float(m.group())
                if 0.0 <= z < 20.0:
                    out[i] = z
                    break
    return out


@dataclass
class CatalogRead:
    table: pd.DataFrame
    problems: list[str] = field(default_factory=list)


def read_lenscat_csv(path: str | Path, source_catalog: str) -> CatalogRead:
    """Read a lenscat-format CSV; malformed rows are reported with their line number and excluded."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"lens catalogue not found: {p}")
    try:
        df = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"lens catalogue {p} is not a readable CSV: {exc}") from None
    df = df.rename(columns={"RA [deg]": "ra", "DEC [deg]": "dec", "RA": "ra", "DEC": "dec"})
    missing = [c for c in LENSCAT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"lens catalogue {p} lacks columns {missing} (lenscat format: {', '.join(LENSCAT_COLUMNS)})"
        )
    line = np.arange(len(df)) + 2  # 1-based, after the header line
    ra = pd.to_numeric(df["ra"], errors="coerce").to_numpy(float)
    dec = pd.to_numeric(df["dec"], errors="coerce").to_numpy(float)
    name = df["name"].astype(str).str.strip()
    bad = {
        "RA is not a number in [0, 360)": ~np.isfinite(ra) | (ra < 0) | (ra >= 360),
        "Dec is not a number in [-90, 90]": ~np.isfinite(dec) | (dec < -90) | (dec > 90),
        "empty name": (name == "").to_numpy(),
    }
    problems = []
    reject = np.zeros(len(df), bool)
    for reason, mask in bad.items():
        for i in np.flatnonzero(mask):
            problems.append(
                f"{p.name}:{line[i]}: {reason} (name={name.iloc[i]!r}, "
                f"ra={df['ra'].iloc[i]!r}, dec={df['dec'].iloc[i]!r})"
            )
        reject |= mask
    out = pd.DataFrame(
        {
            "name": name,
            "ra": ra,
            "dec": dec,
            "zlens_raw": df["zlens"].astype(str),
            "zlens": parse_zlens(df["zlens"].tolist()),
            "lens_type": df["type"].astype(str).str.strip(),
            "grading": df["grading"].astype(str).str.strip().str.lower(),
            "ref": df["ref"].astype(str),
            "source_catalog": source_catalog,
            "source_line": line,
        }
    )[~reject].reset_index(drop=True)
    return CatalogRead(out, problems)


def read_desi_sl_vac(path: str | Path) -> pd.DataFrame:
    """The DESI DR1 strong-lens VAC (HDU ``DESI_SL_CATALOG``): TARGETID, ra, dec, z, spectype, brickname."""
    from astropy.io import fits

    p = Path(path)
    if not p.is_file():
        raise InputError(f"DESI SL VAC not found: {p}")
    try:
        with fits.open(p) as hdul:
            if "DESI_SL_CATALOG" not in hdul:
                raise InputError(f"{p}: no HDU named DESI_SL_CATALOG")
            d = hdul["DESI_SL_CATALOG"].data
            cols = d.columns.names
            df = pd.DataFrame(
                {
                    "targetid": np.asarray(d["TARGETID"]).astype(np.int64),
                    "ra": np.asarray(d["TARGET_RA"], float),
                    "dec": np.asarray(d["TARGET_DEC"], float),
                }
            )
            for c in ("Z", "SPECTYPE", "BRICKNAME"):
                if c in cols:
                    v = np.asarray(d[c])
                    df[c.lower()] = np.char.strip(v.astype(str)) if v.dtype.kind in "SU" else v.astype(float)
    except OSError as exc:
        raise InputError(f"{p} is not a readable FITS file: {exc}") from None
    ok = np.isfinite(df.ra) & np.isfinite(df.dec) & (df.ra >= 0) & (df.ra < 360) & (np.abs(df.dec) <= 90)
    return df[ok].reset_index(drop=True)


def select_positives(
    df: pd.DataFrame, ref_patterns: list[str], lens_types: list[str], tier_weights: dict[str, float]
) -> pd.DataFrame:
    """Keep DESI Legacy Surveys candidates (ref filter), galaxy-scale; assign tier and weight."""
    mask = df["lens_type"].isin(lens_types)
    if ref_patterns:
        mask &= df["ref"].str.contains("|".join(f"(?:{p})" for p in ref_patterns), regex=True)
    out = df[mask & df["grading"].isin(list(TIERS))].copy()
    out["tier"] = out["grading"].map(TIERS)
    out["weight"] = out["tier"].map(tier_weights).astype(float)
    return out.reset_index(drop=True)


def unit_vectors(ra_deg, dec_deg) -> np.ndarray:
    """(N, 3) unit vectors; chord distance 2 sin(θ/2) ≈ θ for KD-tree matching on the sphere."""
    ra, dec = np.deg2rad(np.asarray(ra_deg, float)), np.deg2rad(np.asarray(dec_deg, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def chord(radius_arcsec: float) -> float:
    return 2.0 * np.sin(np.deg2rad(radius_arcsec / 3600.0) / 2.0)


def merge_duplicates(df: pd.DataFrame, radius_arcsec: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge entries within ``radius_arcsec`` (friends-of-friends); keep the best tier, then the first source.

    Returns (merged table, report of merged groups).
    """
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if df.empty:
        return df.assign(n_merged=[]), pd.DataFrame(columns=["kept", "merged", "n"])
    tree = cKDTree(unit_vectors(df.ra, df.dec))
    pairs = tree.query_pairs(chord(radius_arcsec), output_type="ndarray")
    from scipy.sparse import coo_matrix

    n = len(df)
    g = (
        coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
        if len(pairs)
        else coo_matrix((n, n))
    )
    _, label = connected_components(g, directed=False)
    d = df.assign(_group=label, _order=np.arange(n)).sort_values(["_group", "tier", "_order"])
    keep = d.drop_duplicates("_group", keep="first")
    sizes = d.groupby("_group").size()
    names = d.groupby("_group")["name"].agg(lambda s: "|".join(s))
    keep = keep.assign(n_merged=keep["_group"].map(sizes).to_numpy() - 1)
    report = pd.DataFrame(
        {
            "kept": keep["name"].to_numpy(),
            "merged": keep["_group"].map(names).to_numpy(),
            "n": keep["_group"].map(sizes).to_numpy(),
        }
    )
    report = report[report.n > 1].reset_index(drop=True)
    return keep.sort_values("_order").drop(columns=["_group", "_order"]).reset_index(drop=True), report


def positive_id(ra, dec) -> np.ndarray:
    """Stable id from coordinates rounded to 0.36″: ``L<ra:09.5f><dec:+09.5f>``."""
    return np.array([f"L{r:09.5f}{d:+09.5f}" for r, d in zip(np.asarray(ra, float), np.asarray(dec, float))])


#: the value of ``positives.desi_sl_vac`` / ``evaluate.galaxy_zoo`` that names the synthetic sky's own file
SKY = "sky"


def independent_path(cfg, value: str | None, sky_file: str) -> Path | None:
    """The path of an independent catalogue (DESI SL VAC, Galaxy Zoo) configured as ``value``: None when
    unset; for ``"sky"`` the synthetic sky's ``sky_file`` when the data are synthetic and the sky wrote one
    (a hand-made test survey has none: the check is then absent, not an error), else None; otherwise the
    configured path (``{run_dir}`` substituted; a missing file is the reader's InputError)."""
    if value is None:
        return None
    if value == SKY:
        if cfg.data.source != "synthetic":
            return None
        p = cfg.resolve_path(cfg.data.sky_dir) / sky_file
        return p if p.is_file() else None
    return Path(cfg.resolve_path(value))
