"""DR10 brick geometry, exactly as desiutil.brick: (ra, dec) ↔ brickname/brickid, centres, bounds, paths.

721 rows of 0.25° (centres at Dec −90, −89.75, …, +90); ``ncol = ceil(360/0.25 · cos(|dec_c| − 0.125°)/2)·2``,
1 at each pole; 662,174 bricks in total.

>>> brickname_from_radec(112.6, 22.2)
'1126p222'
>>> int(brickid_from_radec(112.6, 22.2)) == brick_center("1126p222").brickid
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

BRICK_SIZE_DEG = 0.25
N_BRICKS = 662174


@lru_cache(maxsize=1)
def _rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row centres (deg), ncol per row, and cumulative brick count before each row."""
    dec_c = np.arange(-90.0, 90.0 + 0.125, BRICK_SIZE_DEG)
    ncol = (
        np.ceil(360.0 / BRICK_SIZE_DEG * np.cos(np.deg2rad(np.abs(dec_c) - 0.125)) / 2).astype(np.int64) * 2
    )
    ncol[0] = ncol[-1] = 1
    start = np.concatenate([[0], np.cumsum(ncol)[:-1]])
    return dec_c, ncol, start


def _row_col(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    dec_c, ncol, _ = _rows()
    ra = np.mod(np.asarray(ra, dtype=np.float64), 360.0)
    dec = np.asarray(dec, dtype=np.float64)
    row = ((dec + 90.0 + 0.125) / BRICK_SIZE_DEG).astype(np.int64)
    row = np.clip(row, 0, len(dec_c) - 1)
    col = (ra / 360.0 * ncol[row]).astype(np.int64)
    return row, col


def _center(row: np.ndarray, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dec_c, ncol, _ = _rows()
    ra_c = (col + 0.5) * 360.0 / ncol[row]
    return ra_c, dec_c[row]


def _name(ra_c: float, dec_c: float) -> str:
    # DR10's printf format "%04d%s%03d" (RA·10, p/m, |Dec|·10)
    return f"{int(ra_c * 10 + 1e-9):04d}{'p' if dec_c >= 0 else 'm'}{int(abs(dec_c) * 10 + 1e-9):03d}"


def brickid_from_radec(ra, dec) -> np.ndarray:
    """BRICKID (1-based) of the brick containing each (ra, dec) in degrees."""
    _, _, start = _rows()
    row, col = _row_col(ra, dec)
    return start[row] + col + 1


def brickname_from_radec(ra, dec):
    """Brick name(s) for (ra, dec) in degrees; a str for scalars, an array of str otherwise."""
    row, col = _row_col(ra, dec)
    ra_c, dec_c = _center(np.atleast_1d(row), np.atleast_1d(col))
    names = np.array([_name(r, d) for r, d in zip(ra_c, dec_c)])
    return str(names[0]) if np.ndim(ra) == 0 and np.ndim(dec) == 0 else names


@dataclass(frozen=True)
class Brick:
    brickname: str
    brickid: int
    brickrow: int
    brickcol: int
    ra: float
    dec: float
    ra1: float
    ra2: float
    dec1: float
    dec2: float

    @property
    def subdir(self) -> str:
        return self.brickname[:3]


def brick_from_id(brickid: int) -> Brick:
    dec_c, ncol, start = _rows()
    row = int(np.searchsorted(start, brickid - 1, side="right") - 1)
    col = int(brickid - 1 - start[row])
    return _brick(row, col)


def _brick(row: int, col: int) -> Brick:
    dec_c, ncol, start = _rows()
    ra_c, d_c = _center(np.array([row]), np.array([col]))
    width = 360.0 / ncol[row]
    return Brick(
        brickname=_name(float(ra_c[0]), float(d_c[0])),
        brickid=int(start[row] + col + 1),
        brickrow=row,
        brickcol=col,
        ra=float(ra_c[0]),
        dec=float(d_c[0]),
        ra1=float(col * width),
        ra2=float((col + 1) * width),
        dec1=max(-90.0, float(d_c[0]) - 0.125),
        dec2=min(90.0, float(d_c[0]) + 0.125),
    )


def brick_at(ra: float, dec: float) -> Brick:
    """The brick containing (ra, dec)."""
    row, col = _row_col(ra, dec)
    return _brick(int(row), int(col))


def brick_center(brickname: str) -> Brick:
    """Centre and bounds of a brick from its name (parses the approximate centre, then finds the brick)."""
    if len(brickname) != 8 or brickname[4] not in "pm" or not (brickname[:4] + brickname[5:]).isdigit():
        raise ValueError(f"not a DR10 brick name: {brickname!r} (expected e.g. '1126p222')")
    ra = int(brickname[:4]) / 10.0
    dec = int(brickname[5:]) / 10.0 * (1 if brickname[4] == "p" else -1)
    # names truncate the centre to 0.1 deg; the brick whose centre truncates to that name is nearby
    for dra in (0.05, 0.0, 0.1, 0.15, -0.05):
        for ddec in (0.0, 0.05, -0.05, 0.1, -0.1):
            b = brick_at((ra + dra) % 360.0, float(np.clip(dec + ddec, -90, 90)))
            if b.brickname == brickname:
                return b
    raise ValueError(f"no DR10 brick is named {brickname!r}")


def coadd_path(brickname: str, kind: str, band: str | None = None) -> str:
    """Relative coadd path: ``<AAA>/<brick>/legacysurvey-<brick>-<kind>[-<band>].fits.fz``."""
    suffix = f"-{kind}-{band}" if band else f"-{kind}"
    return f"{brickname[:3]}/{brickname}/legacysurvey-{brickname}{suffix}.fits.fz"


def sweep_filename(ra: float, dec: float) -> str:
    """The 5°×5° DR10 sweep file holding (ra, dec): ``sweep-<ramin><decmin>-<ramax><decmax>.fits``."""
    ramin = np.floor(np.mod(ra, 360.0) / 5.0) * 5.0
    decmin = np.floor(dec / 5.0) * 5.0

    def fmtra(x: float) -> str:
        return f"{x:03g}"  # DR10's printf format "%03g"

    def fmtdec(x: float) -> str:
        return f"{x:+04g}".replace("-", "m").replace("+", "p")  # DR10's printf format "%+04g"

    return f"sweep-{fmtra(ramin)}{fmtdec(decmin)}-{fmtra(ramin + 5)}{fmtdec(decmin + 5)}.fits"
