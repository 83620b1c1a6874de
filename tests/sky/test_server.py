"""The cutout server over real HTTP: every documented behaviour, concurrency, and fault injection."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
import requests
from astropy.io import fits

from lensaudit.errors import InputError
from lensaudit.sky.server import FaultConfig, serve
from lensaudit.survey.coadds import NoOverlapError, cutout_from_coadds


@pytest.fixture(scope="module")
def server(tiny_sky):
    with serve(tiny_sky) as srv:
        yield srv


@pytest.fixture(scope="module")
def target(tiny_sky):
    t = pd.read_parquet(tiny_sky / "truth.parquet")
    return t[t.kind == "lens"].iloc[0]


def test_fits_cutout_layout(server, target):
    r = requests.get(
        server.url,
        params={
            "ra": target.ra,
            "dec": target.dec,
            "layer": "ls-dr10",
            "pixscale": 0.262,
            "size": 101,
            "bands": "grz",
            "invvar": "",
            "maskbits": "",
        },
        timeout=30,
    )
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/fits" and r.content[:6] == b"SIMPLE"
    h = fits.open(io.BytesIO(r.content))
    assert (
        h[0].data.shape == (3, 101, 101)
        and h[0].data.dtype.name.startswith("float32")
        or h[0].data.dtype == ">f4"
    )
    hd = h[0].header
    assert hd["BANDS"] == "grz" and [hd["BAND0"], hd["BAND1"], hd["BAND2"]] == ["g", "r", "z"]
    assert hd["CRPIX1"] == 51.0 and hd["CRPIX2"] == 51.0 and hd["CD1_1"] == pytest.approx(-0.262 / 3600)
    assert h[1].header["IMAGETYP"] == "INVVAR" and h[1].data.shape == (3, 101, 101)
    assert (
        h[2].header["IMAGETYP"] == "MASKBITS"
        and h[2].data.shape == (101, 101)
        and h[2].data.dtype.kind == "i"
    )
    img, iv, mb = cutout_from_coadds(server.sky_dir / "coadd", target.ra, target.dec, 101, bands="grz")
    np.testing.assert_array_equal(h[0].data, img)
    np.testing.assert_array_equal(h[1].data, iv)
    np.testing.assert_array_equal(h[2].data, mb)


def test_fits_cutout_alias_width_height_and_band_order(server, target):
    base = server.url.replace("cutout.fits", "fits-cutout")
    r = requests.get(
        base,
        params={
            "ra": target.ra,
            "dec": target.dec,
            "layer": "ls-dr10",
            "width": 40,
            "height": 30,
            "bands": "zg",
        },
        timeout=30,
    )
    h = fits.open(io.BytesIO(r.content))
    assert h[0].data.shape == (2, 30, 40) and h[0].header["BANDS"] == "zg"
    assert h[0].header["CRPIX1"] == 20.5 and h[0].header["CRPIX2"] == 15.5
    assert len(h) == 1  # no invvar/maskbits flags
    r = requests.get(
        base,
        params={"ra": target.ra, "dec": target.dec, "layer": "ls-dr10", "size": 20, "bands": "gx"},
        timeout=30,
    )
    assert fits.open(io.BytesIO(r.content))[0].header["BANDS"] == "griz"  # invalid letter → the layer's bands
    r = requests.get(
        base,
        params={"ra": target.ra, "dec": target.dec, "layer": "ls-dr10", "size": 20, "bands": "r"},
        timeout=30,
    )
    assert fits.open(io.BytesIO(r.content))[0].data.shape == (20, 20)


def test_errors_as_the_real_service(server):
    # the real body, with the reason added (clients match the prefix; tests/sky/test_server_requests.py has
    # every malformed case)
    r = requests.get(server.url, params={"dec": 1.0, "layer": "ls-dr10"}, timeout=30)
    assert r.status_code == 400 and r.text == "Need ra,dec keywords: ra is missing."
    r = requests.get(server.url, params={"ra": "abc", "dec": 1.0}, timeout=30)
    assert r.status_code == 400 and r.text.startswith("Need ra,dec keywords")
    r = requests.get(server.url, params={"ra": 10, "dec": 1, "layer": "ls-dr99"}, timeout=30)
    assert r.status_code == 200 and r.text == "no such layer"
    r = requests.get(server.url, params={"ra": 300.0, "dec": -70.0, "layer": "ls-dr10"}, timeout=30)
    assert r.status_code == 500 and r.text.startswith("NoOverlapError: ")
    # size=0 is a bad parameter (400), no longer the off-footprint 500 of the issue
    r = requests.get(server.url, params={"ra": 10, "dec": 1, "size": 0}, timeout=30)
    assert r.status_code == 400 and r.text == "size=0 must be a positive number of pixels."


def test_zeros_where_no_coverage(tiny_sky, server):
    truth = pd.read_parquet(tiny_sky / "truth.parquet")
    from lensaudit.survey.bricks import brick_center

    b = brick_center(truth.brickname.iloc[0])
    # the rendered area is NAXIS2 pixels tall (the coadd header says so); a stamp centred at its edge is
    # half empty
    img_file = next((tiny_sky / "coadd").glob(f"*/{b.brickname}/legacysurvey-{b.brickname}-image-r.fits.fz"))
    edge_dec = b.dec + fits.getheader(img_file, 1)["NAXIS2"] / 2 * 0.262 / 3600
    img, iv, mb = cutout_from_coadds(tiny_sky / "coadd", b.ra, edge_dec, 101)
    assert (img[:, -20:, :] == 0).all() and (iv[:, -20:, :] == 0).all()
    assert (iv[:, :30, :] > 0).any()
    with pytest.raises(NoOverlapError):
        cutout_from_coadds(tiny_sky / "coadd", 300.0, -70.0, 101)
    assert issubclass(NoOverlapError, InputError)


def test_concurrent_requests(server, target):
    def get(i):
        r = requests.get(
            server.url,
            params={
                "ra": target.ra + i * 1e-4,
                "dec": target.dec,
                "layer": "ls-dr10",
                "size": 64,
                "bands": "grz",
            },
            timeout=60,
        )
        return r.status_code, r.content[:6]

    with ThreadPoolExecutor(8) as ex:
        out = list(ex.map(get, range(24)))
    assert all(code == 200 and magic == b"SIMPLE" for code, magic in out)


def test_fault_injection(tiny_sky, target):
    faults = FaultConfig(
        error_rate=0.3, truncate_rate=0.2, latency_s=0.05, latency_rate=0.2, reset_once=True, seed=1
    )
    codes, truncated, resets = [], 0, 0
    with serve(tiny_sky, faults=faults) as srv:
        for _ in range(40):
            try:
                r = requests.get(
                    srv.url,
                    params={"ra": target.ra, "dec": target.dec, "layer": "ls-dr10", "size": 32},
                    timeout=30,
                )
                codes.append(r.status_code)
            except requests.exceptions.ChunkedEncodingError:
                truncated += 1
            except requests.exceptions.ConnectionError:
                resets += 1
    assert resets == 1
    assert {429, 503, 504} & set(codes) and 200 in codes
    assert truncated > 0
