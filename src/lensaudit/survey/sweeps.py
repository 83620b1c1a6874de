"""DR10 sweep catalogues: the exact 130-column schema (DR10.1.3 ``SWEEP_DTYPE``) and a column-selective
reader.

HDU0 is an empty primary (RAMIN/DECMIN/RAMAX/DECMAX + sorted Tractor keys); HDU1 is a BINTABLE with
EXTNAME='SWEEP' and UPPER-case columns, units in TUNITn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.errors import InputError

_B8 = ["G", "R", "I", "Z", "W1", "W2", "W3", "W4"]
_B4 = ["G", "R", "I", "Z"]
_NMGY, _IVAR = "nanomaggies", "nanomaggies^(-2)"


def _schema() -> list[tuple[str, str, str]]:
    cols: list[tuple[str, str, str]] = [
        ("RELEASE", "I", ""),
        ("BRICKID", "J", ""),
        ("BRICKNAME", "8A", ""),
        ("OBJID", "J", ""),
        ("TYPE", "3A", ""),
        ("RA", "D", "deg"),
        ("DEC", "D", "deg"),
        ("RA_IVAR", "E", "deg^(-2)"),
        ("DEC_IVAR", "E", "deg^(-2)"),
        ("DCHISQ", "5E", ""),
        ("EBV", "E", "mag"),
    ]
    cols += [(f"FLUX_{b}", "E", _NMGY) for b in _B8]
    cols += [(f"FLUX_IVAR_{b}", "E", _IVAR) for b in _B8]
    cols += [(f"MW_TRANSMISSION_{b}", "E", "") for b in _B8]
    cols += [(f"NOBS_{b}", "I", "") for b in _B8]
    cols += [(f"RCHISQ_{b}", "E", "") for b in _B8]
    cols += [(f"FRACFLUX_{b}", "E", "") for b in _B8]
    cols += [(f"FRACMASKED_{b}", "E", "") for b in _B4]
    cols += [(f"FRACIN_{b}", "E", "") for b in _B4]
    cols += [(f"ANYMASK_{b}", "I", "") for b in _B4]
    cols += [(f"ALLMASK_{b}", "I", "") for b in _B4]
    cols += [("WISEMASK_W1", "B", ""), ("WISEMASK_W2", "B", "")]
    cols += [(f"PSFSIZE_{b}", "E", "arcsec") for b in _B4]
    cols += [(f"PSFDEPTH_{b}", "E", _IVAR) for b in _B4]
    cols += [(f"GALDEPTH_{b}", "E", _IVAR) for b in _B4]
    cols += [("PSFDEPTH_W1", "E", _IVAR), ("PSFDEPTH_W2", "E", _IVAR), ("WISE_COADD_ID", "8A", "")]
    cols += [
        ("SHAPE_R", "E", "arcsec"),
        ("SHAPE_R_IVAR", "E", "arcsec^(-2)"),
        ("SHAPE_E1", "E", ""),
        ("SHAPE_E1_IVAR", "E", ""),
        ("SHAPE_E2", "E", ""),
        ("SHAPE_E2_IVAR", "E", ""),
    ]
    cols += [(f"FIBERFLUX_{b}", "E", _NMGY) for b in _B4]
    cols += [(f"FIBERTOTFLUX_{b}", "E", _NMGY) for b in _B4]
    cols += [("REF_CAT", "2A", ""), ("REF_ID", "K", ""), ("REF_EPOCH", "E", "")]
    cols += [
        ("GAIA_PHOT_G_MEAN_MAG", "E", "mag"),
        ("GAIA_PHOT_G_MEAN_FLUX_OVER_ERROR", "E", ""),
        ("GAIA_PHOT_BP_MEAN_MAG", "E", "mag"),
        ("GAIA_PHOT_BP_MEAN_FLUX_OVER_ERROR", "E", ""),
        ("GAIA_PHOT_RP_MEAN_MAG", "E", "mag"),
        ("GAIA_PHOT_RP_MEAN_FLUX_OVER_ERROR", "E", ""),
        ("GAIA_ASTROMETRIC_EXCESS_NOISE", "E", ""),
        ("GAIA_DUPLICATED_SOURCE", "L", ""),
        ("GAIA_PHOT_BP_RP_EXCESS_FACTOR", "E", ""),
        ("GAIA_ASTROMETRIC_SIGMA5D_MAX", "E", ""),
        ("GAIA_ASTROMETRIC_PARAMS_SOLVED", "B", ""),
    ]
    cols += [
        ("PARALLAX", "E", "mas"),
        ("PARALLAX_IVAR", "E", "mas^(-2)"),
        ("PMRA", "E", "mas/yr"),
        ("PMRA_IVAR", "E", "(mas/yr)^(-2)"),
        ("PMDEC", "E", "mas/yr"),
        ("PMDEC_IVAR", "E", "(mas/yr)^(-2)"),
    ]
    cols += [("MASKBITS", "J", ""), ("FITBITS", "I", ""), ("SERSIC", "E", ""), ("SERSIC_IVAR", "E", "")]
    return cols


SWEEP_COLUMNS: list[tuple[str, str, str]] = _schema()
"""(name, FITS TFORM, TUNIT) for the 130 sweep columns, in file order."""
assert len(SWEEP_COLUMNS) == 130, len(SWEEP_COLUMNS)

_NUMPY = {
    "I": np.int16,
    "J": np.int32,
    "K": np.int64,
    "E": np.float32,
    "D": np.float64,
    "B": np.uint8,
    "L": np.bool_,
}

# Extinction coefficients A/E(B-V) (DECam g, r, i, z).
EXTINCTION = {"G": 3.214, "R": 2.165, "I": 1.592, "Z": 1.211}
MASKBITS = {
    "NPRIMARY": 0,
    "BRIGHT": 1,
    "SATUR_G": 2,
    "SATUR_R": 3,
    "SATUR_Z": 4,
    "ALLMASK_G": 5,
    "ALLMASK_R": 6,
    "ALLMASK_Z": 7,
    "WISEM1": 8,
    "WISEM2": 9,
    "BAILOUT": 10,
    "MEDIUM": 11,
    "GALAXY": 12,
    "CLUSTER": 13,
    "SATUR_I": 14,
    "ALLMASK_I": 15,
    "SUB_BLOB": 16,
}


def numpy_dtype(tform: str) -> np.dtype:
    """numpy dtype of a sweep TFORM (``'5E'`` → (float32, 5), ``'8A'`` → S8)."""
    if tform.endswith("A"):
        return np.dtype(f"S{tform[:-1]}")
    if tform[0].isdigit():
        return np.dtype((_NUMPY[tform[-1]], int(tform[:-1])))
    return np.dtype(_NUMPY[tform])


def sweep_dtype() -> np.dtype:
    return np.dtype([(n, numpy_dtype(t)) for n, t, _ in SWEEP_COLUMNS])


def psfdepth_to_mag(psfdepth) -> np.ndarray:
    """5σ point-source depth (AB mag) from PSFDEPTH (1/nmgy²); NaN where PSFDEPTH = 0 (no data)."""
    d = np.asarray(psfdepth, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(d > 0, 22.5 - 2.5 * np.log10(5.0 / np.sqrt(d)), np.nan)


def mag_to_psfdepth(mag) -> np.ndarray:
    """Inverse of ``psfdepth_to_mag``: PSFDEPTH (1/nmgy²) for a 5σ depth in AB mag."""
    flux5 = 10 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - 22.5))
    return (5.0 / flux5) ** 2


def flux_to_mag(flux_nmgy) -> np.ndarray:
    f = np.asarray(flux_nmgy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, 22.5 - 2.5 * np.log10(f), np.nan)


def read_sweep(
    path: str | Path, columns: list[str] | None = None, rows: tuple[int, int] | None = None
) -> pd.DataFrame:
    """Read selected columns of one sweep file (local path or fsspec URL) into a DataFrame; ``rows``
    = (start, stop) reads only those rows.

    Local files are read with ``fitsio`` (cfitsio: only the requested columns and rows are decoded; the
    catalog benchmark compares it with astropy's memmap and with a bare ``fitsio`` read of the same columns,
    docs/data.md); URLs through fsspec and astropy. Strings are decoded and stripped; multi-element columns
    (DCHISQ) become one column per element. Every column read must have its DR10 type
    (:data:`SWEEP_COLUMNS`; ``GAIA_DUPLICATED_SOURCE`` is read as bool from the DR10 FITS logical or from a
    0/1 int8 or uint8 column). A truncated or corrupt file, a missing column or a wrong dtype raises
    :class:`~lensaudit.errors.InputError` naming the file and the column.
    """
    from astropy.io import fits

    path = str(path)
    local = path.removeprefix("file://")
    try:
        if "://" in path and not path.startswith("file://"):
            import fsspec

            with fsspec.open(path, "rb") as f:
                df = _read_hdu(fits.open(f, memmap=False), path, columns)
                return df if rows is None else df.iloc[rows[0] : rows[1]].reset_index(drop=True)
        _check_size(local, path)
        return _read_fitsio(local, path, columns, rows)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"sweep file not found: {path}") from None
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"sweep file {path} is not a readable FITS file: {_one_line(exc)}") from None


def sweep_nrows(path: str | Path) -> int:
    """The number of rows of a sweep file (header only; InputError like :func:`read_sweep`)."""
    path = str(path)
    local = path.removeprefix("file://")
    try:
        if "://" in path and not path.startswith("file://"):
            import fsspec
            from astropy.io import fits

            with fsspec.open(path, "rb") as f:
                return int(fits.open(f, memmap=False)[1].header["NAXIS2"])
        _check_size(local, path)
        import fitsio

        with fitsio.FITS(local) as f:
            return int(f[1].get_nrows())
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"sweep file not found: {path}") from None
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"sweep file {path} is not a readable FITS file: {_one_line(exc)}") from None


def _check_size(local: str, path: str) -> None:
    size = Path(local).stat().st_size
    if size == 0 or size % _FITS_BLOCK:
        raise InputError(
            f"sweep file {path} is truncated or corrupt: its size ({size} bytes) is not a whole number "
            f"of {_FITS_BLOCK}-byte FITS blocks"
        )


def _read_fitsio(
    local: str, path: str, columns: list[str] | None, rows: tuple[int, int] | None
) -> pd.DataFrame:
    import fitsio

    with fitsio.FITS(local) as f:
        if len(f) < 2 or f[1].get_extname() != "SWEEP":
            raise InputError(f"{path}: HDU1 must be a BINTABLE with EXTNAME='SWEEP'")
        hdu = f[1]
        names = hdu.get_colnames()
        want = columns or names
        missing = [c for c in want if c not in names]
        if missing:
            raise InputError(f"{path}: missing sweep columns {missing}")
        lo, hi = rows if rows is not None else (0, hdu.get_nrows())
        data = hdu.read(columns=want, rows=np.arange(lo, hi)) if hi > lo else hdu[want][0:0]
    return _frame(path, want, lambda c: data[c])


_FITS_BLOCK = 2880
_SCHEMA = {n: t for n, t, _ in SWEEP_COLUMNS}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _check_dtype(path: str, name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` as the schema's dtype for column ``name`` (native byte order), or an InputError."""
    tform = _SCHEMA.get(name)
    if tform is None:
        return arr
    want = numpy_dtype(tform)
    base, shape = want.subdtype if want.subdtype else (want, ())
    got_shape = arr.shape[1:]
    kind = arr.dtype.kind
    if base.kind == "b" and not got_shape and kind in "iuf" and np.isin(arr, (0, 1)).all():
        # a logical stored as a 0/1 byte: int8 (FITS 'B' with TZERO = -128, which astropy scales to float) or
        # uint8 (GAIA_DUPLICATED_SOURCE from writers without FITS logicals)
        return arr.astype(bool)
    ok = got_shape == tuple(shape) and (
        (
            base.kind == "S"
            and kind in "SU"
            and arr.dtype.itemsize // (4 if kind == "U" else 1) <= base.itemsize
        )
        or (base.kind == "f" and kind == "f")
        or (base.kind in "iu" and kind in "iu")
        or (base.kind == "b" and kind == "b")
    )
    if not ok:
        got = f"{arr.dtype.str}{list(got_shape) if got_shape else ''}"
        raise InputError(
            f"{path}: sweep column {name} has dtype {got}, but DR10 stores it as FITS {tform} "
            f"({base.str}{list(shape) if shape else ''})"
        )
    return arr if kind in "SU" else arr.astype(arr.dtype.newbyteorder("="))


def _read_hdu(hdul, path: str, columns: list[str] | None) -> pd.DataFrame:
    if len(hdul) < 2 or hdul[1].header.get("EXTNAME") != "SWEEP":
        raise InputError(f"{path}: HDU1 must be a BINTABLE with EXTNAME='SWEEP'")
    data = hdul[1].data
    names = data.columns.names
    want = columns or names
    missing = [c for c in want if c not in names]
    if missing:
        raise InputError(f"{path}: missing sweep columns {missing}")
    return _frame(path, want, lambda c: np.asarray(data[c]))


def _frame(path: str, want: list[str], get) -> pd.DataFrame:
    """The DataFrame of columns ``want`` (``get(name)`` → array), checked against the DR10 types."""
    out = {}
    for c in want:
        arr = _check_dtype(path, c, get(c))
        if arr.dtype.kind in "SU":
            out[c] = np.strings.strip(np.strings.decode(arr, "ascii") if arr.dtype.kind == "S" else arr)
        elif arr.ndim > 1:
            for i in range(arr.shape[1]):
                out[f"{c}_{i}"] = arr[:, i]
        else:
            out[c] = arr
    return pd.DataFrame(out)


def empty_sweep_table(n: int) -> np.ndarray:
    """A zero-filled structured array with the exact sweep dtype (string columns blank)."""
    return np.zeros(n, dtype=sweep_dtype())


def write_sweep(
    path: str | Path,
    rows: np.ndarray,
    ramin: float,
    decmin: float,
    ramax: float,
    decmax: float,
    primary_header: dict | None = None,
) -> None:
    """Write a sweep file in the exact DR10 layout: empty HDU0 with sorted keys + RAMIN/…; HDU1 'SWEEP'.

    ``rows`` must have ``sweep_dtype()``. The output bytes depend only on the inputs (no dates written).
    """
    from astropy.io import fits

    if rows.dtype != sweep_dtype():
        raise InputError("write_sweep: rows must have sweep_dtype() (the exact 130-column schema)")
    hdr = dict(primary_header or {})
    hdr.update(
        {
            "RAMIN": float(ramin),
            "DECMIN": float(decmin),
            "RAMAX": float(ramax),
            "DECMAX": float(decmax),
            "DEPNAM00": "gen_sweep",
            "DEPVER00": "lensaudit",
        }
    )
    h0 = fits.PrimaryHDU()
    for k in sorted(hdr):
        h0.header[k] = hdr[k]
    cols = []
    for name, tform, unit in SWEEP_COLUMNS:
        cols.append(fits.Column(name=name, format=tform, unit=unit or None, array=rows[name]))
    h1 = fits.BinTableHDU.from_columns(cols, name="SWEEP")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    fits.HDUList([h0, h1]).writeto(tmp, overwrite=True, checksum=False)
    import os

    os.replace(tmp, p)
