"""DR10 coadd brick files: the exact on-disk layout, and cutouts assembled from them via their WCS.

``<coadd_dir>/<AAA>/<brick>/legacysurvey-<brick>-{image,invvar}-<band>.fits.fz`` and ``…-maskbits.fits.fz``:
HDU0 an empty primary, HDU1 a tile-compressed image (100×100 tiles). image: float32, RICE, ``qz -1e-4``
(dithered); invvar: float32, RICE ``q0 16``; maskbits: int32, HCOMPRESS, EXTNAME='MASKBITS'.

``cutout_from_coadds`` is the single implementation behind both the cutout server of the synthetic sky and
the cutouts stage's ``coadds`` provider, so the two give identical pixels. Output pixels are sampled from the
brick pixel nearest to each output pixel centre (no resampling kernel: noise statistics are preserved);
a stamp that straddles brick edges is assembled from every overlapping brick; pixels without coverage are
0 with invvar 0.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lensaudit.errors import InputError
from lensaudit.survey.bricks import BRICK_SIZE_DEG, Brick, brick_at, coadd_path

PIXSCALE_ARCSEC = 0.262


class NoOverlapError(InputError):
    """No coadd brick overlaps the requested position (the real service answers HTTP 500)."""


def brick_wcs_header(brick: Brick, npix: int, pixscale_arcsec: float = PIXSCALE_ARCSEC) -> dict:
    """TAN WCS of a brick image: CRVAL = brick centre, CRPIX = (npix+1)/2 (1800.5 for the real 3600)."""
    return {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": brick.ra,
        "CRVAL2": brick.dec,
        "CRPIX1": (npix + 1) / 2.0,
        "CRPIX2": (npix + 1) / 2.0,
        "CD1_1": -pixscale_arcsec / 3600.0,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": pixscale_arcsec / 3600.0,
        "IMAGEW": npix,
        "IMAGEH": npix,
        "EQUINOX": 2000.0,
    }


def cutout_wcs_header(ra: float, dec: float, width: int, height: int, pixscale_arcsec: float) -> dict:
    """The cutout-service WCS: TAN at (ra, dec), CRPIX = (W+1)/2, (H+1)/2."""
    return {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRVAL1": float(ra),
        "CRVAL2": float(dec),
        "CRPIX1": (width + 1) / 2.0,
        "CRPIX2": (height + 1) / 2.0,
        "CD1_1": -pixscale_arcsec / 3600.0,
        "CD1_2": 0.0,
        "CD2_1": 0.0,
        "CD2_2": pixscale_arcsec / 3600.0,
    }


def _wcs(header: dict):
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = [header["CTYPE1"], header["CTYPE2"]]
    w.wcs.crval = [header["CRVAL1"], header["CRVAL2"]]
    w.wcs.crpix = [header["CRPIX1"], header["CRPIX2"]]
    w.wcs.cd = [[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]]
    return w


# -- writing ---------------------------------------------------------------------------------------
def write_coadd_brick(
    coadd_dir: str | Path,
    brick: Brick,
    images: dict[str, np.ndarray],
    invvars: dict[str, np.ndarray],
    maskbits: np.ndarray,
    extra_header: dict | None = None,
) -> list[Path]:
    """Write one brick's image/invvar per band and its maskbits in the exact DR10 layout; returns paths."""
    from astropy.io import fits

    npix = maskbits.shape[0]
    bands = "".join(images)
    base = {
        **brick_wcs_header(brick, npix),
        "BRICK": brick.brickname,
        "BRICKID": brick.brickid,
        "RAMIN": brick.ra1,
        "RAMAX": brick.ra2,
        "DECMIN": brick.dec1,
        "DECMAX": brick.dec2,
        "BANDS": bands,
        "LEGPIPEV": "lensaudit-sky",
        "SURVEY": "DECaLS+DES+DELVE",
        "DRVERSIO": "10.1",
        **{f"BAND{i}": b for i, b in enumerate(bands)},
        **(extra_header or {}),
    }
    written = []
    for band in images:
        for kind, data, bunit, kw in (
            (
                "image",
                images[band],
                "nanomaggy",
                dict(compression_type="RICE_1", quantize_level=-1e-4, quantize_method=1, dither_seed=1),
            ),
            (
                "invvar",
                invvars[band],
                "1/nanomaggy^2",
                dict(compression_type="RICE_1", quantize_level=16.0, quantize_method=1, dither_seed=1),
            ),
        ):
            hdr = fits.Header()
            for k, v in base.items():
                hdr[k] = v
            hdr.update(
                {"BUNIT": bunit, "MAGZERO": 22.5, "IMTYPE": kind, "BAND": band, f"COSKY_{band.upper()}": 0.0}
            )
            hdu = fits.CompImageHDU(np.asarray(data, np.float32), header=hdr, tile_shape=(100, 100), **kw)
            written.append(_write(Path(coadd_dir) / coadd_path(brick.brickname, kind, band), hdu))
    hdr = fits.Header()
    for k, v in base.items():
        hdr[k] = v
    from lensaudit.survey.sweeps import MASKBITS

    for name, bit in MASKBITS.items():
        hdr[f"MBIT_{bit}"] = name
    hdu = fits.CompImageHDU(
        np.asarray(maskbits, np.int32),
        header=hdr,
        name="MASKBITS",
        compression_type="HCOMPRESS_1",
        tile_shape=(100, 100),
    )
    written.append(_write(Path(coadd_dir) / coadd_path(brick.brickname, "maskbits"), hdu))
    return written


def _write(path: Path, hdu) -> Path:
    from astropy.io import fits

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    tmp.replace(path)
    return path


# -- reading ---------------------------------------------------------------------------------------
@dataclass
class BrickData:
    brick: Brick
    header: dict
    image: dict[str, np.ndarray]
    invvar: dict[str, np.ndarray]
    maskbits: np.ndarray

    @property
    def npix(self) -> int:
        return self.maskbits.shape[0]


class CoaddReader:
    """Reads coadd bricks (decompressed arrays cached, LRU) and cuts stamps from them. Thread-safe."""

    def __init__(self, coadd_dir: str | Path, bands: str = "grz", cache_bricks: int = 8):
        self.coadd_dir = Path(coadd_dir)
        self.bands = bands
        self._cache: OrderedDict[str, BrickData] = OrderedDict()
        self._missing: set[str] = (
            set()
        )  # bricks without files (not in the LRU, so they never evict real ones)
        self._size = cache_bricks
        self._lock = threading.Lock()

    def brick(self, brick: Brick) -> BrickData | None:
        with self._lock:
            if brick.brickname in self._missing:
                return None
            if brick.brickname in self._cache:
                self._cache.move_to_end(brick.brickname)
                return self._cache[brick.brickname]
        data = self._load(brick)
        with self._lock:
            if data is None:
                self._missing.add(brick.brickname)
                return None
            self._cache[brick.brickname] = data
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return data

    def _load(self, brick: Brick) -> BrickData | None:
        from astropy.io import fits

        mpath = self.coadd_dir / coadd_path(brick.brickname, "maskbits")
        if not mpath.is_file():
            return None
        try:
            with fits.open(mpath) as h:
                mb = np.asarray(h[1].data, np.int32)
                header = {
                    k: h[1].header[k]
                    for k in (
                        "CRVAL1",
                        "CRVAL2",
                        "CRPIX1",
                        "CRPIX2",
                        "CD1_1",
                        "CD1_2",
                        "CD2_1",
                        "CD2_2",
                        "CTYPE1",
                        "CTYPE2",
                    )
                }
            img: dict[str, np.ndarray] = {}
            iv: dict[str, np.ndarray] = {}
            for b in self.bands:
                for kind, dest in (("image", img), ("invvar", iv)):
                    p = self.coadd_dir / coadd_path(brick.brickname, kind, b)
                    if p.is_file():
                        with fits.open(p) as h:
                            dest[b] = np.asarray(h[1].data, np.float32)
        except OSError as exc:
            raise InputError(f"coadd files of brick {brick.brickname} are unreadable: {exc}") from None
        return BrickData(brick, header, img, iv, mb)

    def candidate_bricks(self, ra: float, dec: float, radius_deg: float) -> list[Brick]:
        """Bricks whose area may overlap a circle of ``radius_deg`` around (ra, dec)."""
        out: dict[str, Brick] = {}
        step = BRICK_SIZE_DEG / 2
        n = int(np.ceil(radius_deg / step)) + 1
        cosd = max(np.cos(np.deg2rad(dec)), 1e-3)
        for i in range(-n, n + 1):
            for j in range(-n, n + 1):
                d = float(np.clip(dec + j * step, -90, 90))
                r = (ra + i * step / cosd) % 360.0
                b = brick_at(r, d)
                out[b.brickname] = b
        return list(out.values())

    def cutout(
        self,
        ra: float,
        dec: float,
        width: int = 101,
        height: int | None = None,
        pixscale_arcsec: float = PIXSCALE_ARCSEC,
        bands: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image (nb,H,W) float32, invvar (nb,H,W) float32, maskbits (H,W) int32) at (ra, dec).

        Raises NoOverlapError when no brick with data overlaps the stamp."""
        bands = bands or self.bands
        height = height or width
        out_w = _wcs(cutout_wcs_header(ra, dec, width, height, pixscale_arcsec))
        yy, xx = np.mgrid[0:height, 0:width]
        wra, wdec = out_w.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
        img = np.zeros((len(bands), height, width), np.float32)
        iv = np.zeros_like(img)
        mb = np.zeros((height, width), np.int32)
        filled = np.zeros(height * width, bool)
        radius = np.hypot(width, height) * pixscale_arcsec / 3600.0 / 2 + 0.01
        any_overlap = False
        for b in self.candidate_bricks(ra, dec, radius):
            data = self.brick(b)
            if data is None:
                continue
            bx, by = _wcs(data.header).wcs_world2pix(wra, wdec, 0)
            ix, iy = np.rint(bx).astype(np.int64), np.rint(by).astype(np.int64)
            inside = (ix >= 0) & (iy >= 0) & (ix < data.npix) & (iy < data.npix) & ~filled
            # a pixel belongs to the brick whose unique area holds it (as DR10's BRICK_PRIMARY)
            inside &= _in_brick(wra, wdec, b)
            if not inside.any():
                continue
            any_overlap = True
            sel = np.flatnonzero(inside)
            for k, band in enumerate(bands):
                if band in data.image:
                    img[k].ravel()[sel] = data.image[band][iy[sel], ix[sel]]
                    iv[k].ravel()[sel] = data.invvar[band][iy[sel], ix[sel]]
            mb.ravel()[sel] = data.maskbits[iy[sel], ix[sel]]
            filled[sel] = True
        if not any_overlap:
            raise NoOverlapError(f"no DR10 brick with data overlaps ra={ra:.5f}, dec={dec:.5f}")
        return img, iv, mb


def _in_brick(ra: np.ndarray, dec: np.ndarray, b: Brick) -> np.ndarray:
    r = np.mod(ra, 360.0)
    return (r >= b.ra1) & (r < b.ra2) & (dec >= b.dec1) & (dec < b.dec2)


_READERS: dict[tuple[str, str], CoaddReader] = {}


def cutout_from_coadds(
    coadd_dir: str | Path,
    ra: float,
    dec: float,
    size: int = 101,
    pixscale: float = PIXSCALE_ARCSEC,
    bands: str = "grz",
    width: int | None = None,
    height: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stamp from local coadd bricks (a process-wide reader per coadd_dir caches decompressed bricks)."""
    key = (str(coadd_dir), bands)
    if key not in _READERS:
        _READERS[key] = CoaddReader(coadd_dir, bands)
    w = width or size
    return _READERS[key].cutout(ra, dec, w, height or w, pixscale, bands)
