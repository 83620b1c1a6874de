"""The cutout server driven as a new user's client would (issue 22): every malformed request gets a 4xx with a
one-sentence message naming the parameter and its value, on a connection that stays open, and well-formed
FITS and JPEG requests still work after them."""

from __future__ import annotations

import http.client
import io
import logging
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
import requests
from astropy.io import fits
from PIL import Image

from lensaudit.report.rgb import grz_rgb
from lensaudit.sky import server as server_module
from lensaudit.sky.server import MAX_SIZE, BadRequest, UnknownLayer, parse_request, serve
from lensaudit.survey.coadds import cutout_from_coadds

FITS = "/viewer/cutout.fits"
JPEG = "/viewer/jpeg-cutout"
OK = {"ra": "10.0", "dec": "0.0"}  # merged under each case's parameters (a case's None removes a key)
ENDPOINTS = "/viewer/cutout.fits, /viewer/fits-cutout, /viewer/cutout.jpg, /viewer/jpeg-cutout"

# (path, parameters, status, the whole body)
MALFORMED = [
    (FITS, {"ra": None}, 400, "Need ra,dec keywords: ra is missing."),
    (FITS, {"dec": None}, 400, "Need ra,dec keywords: dec is missing."),
    (FITS, {"ra": None, "dec": None}, 400, "Need ra,dec keywords: ra and dec are missing."),
    (FITS, {"ra": "abc"}, 400, "Need ra,dec keywords: ra='abc' is not a number."),
    (FITS, {"dec": "north"}, 400, "Need ra,dec keywords: dec='north' is not a number."),
    (FITS, {"ra": ""}, 400, "Need ra,dec keywords: ra='' is not a number."),
    (FITS, {"ra": "360"}, 400, "ra=360 is outside [0, 360) degrees."),
    (FITS, {"ra": "-1"}, 400, "ra=-1 is outside [0, 360) degrees."),
    (FITS, {"ra": "400.5"}, 400, "ra=400.5 is outside [0, 360) degrees."),
    (FITS, {"dec": "90.5"}, 400, "dec=90.5 is outside [-90, 90] degrees."),
    (FITS, {"dec": "-91"}, 400, "dec=-91 is outside [-90, 90] degrees."),
    (FITS, {"ra": "nan"}, 400, "ra=nan is not a finite number of degrees."),
    (FITS, {"dec": "inf"}, 400, "dec=inf is not a finite number of degrees."),
    (FITS, {"size": "big"}, 400, "size='big' is not a whole number of pixels."),
    (FITS, {"size": "1.5"}, 400, "size='1.5' is not a whole number of pixels."),
    (FITS, {"size": ""}, 400, "size='' is not a whole number of pixels."),
    (FITS, {"size": "0"}, 400, "size=0 must be a positive number of pixels."),
    (FITS, {"size": "-5"}, 400, "size=-5 must be a positive number of pixels."),
    (FITS, {"width": "wide"}, 400, "width='wide' is not a whole number of pixels."),
    (FITS, {"height": "tall"}, 400, "height='tall' is not a whole number of pixels."),
    (FITS, {"width": "-3"}, 400, "width=-3 must be a positive number of pixels."),
    (FITS, {"height": "0"}, 400, "height=0 must be a positive number of pixels."),
    (FITS, {"pixscale": "fine"}, 400, "pixscale='fine' is not a number of arcsec per pixel."),
    (FITS, {"pixscale": "0"}, 400, "pixscale=0 must be a positive finite number of arcsec per pixel."),
    (
        FITS,
        {"pixscale": "-0.262"},
        400,
        "pixscale=-0.262 must be a positive finite number of arcsec per pixel.",
    ),
    (FITS, {"pixscale": "nan"}, 400, "pixscale=nan must be a positive finite number of arcsec per pixel."),
    (FITS, {"pixscale": "inf"}, 400, "pixscale=inf must be a positive finite number of arcsec per pixel."),
    (
        FITS,
        {"pixscale": "100", "size": "3000"},
        400,
        "pixscale=100 over 3000 pixels spans 83.3 deg, more than this server's 10 deg field limit.",
    ),
    (JPEG, {"size": "0"}, 400, "size=0 must be a positive number of pixels."),
    (JPEG, {"dec": "-95"}, 400, "dec=-95 is outside [-90, 90] degrees."),
    (
        "/viewer/cutout.jpg",
        {"pixscale": "nan"},
        400,
        "pixscale=nan must be a positive finite number of arcsec per pixel.",
    ),
    (
        "/viewer/cutout.png",
        {},
        404,
        f"No such endpoint '/viewer/cutout.png'; the cutout endpoints are {ENDPOINTS}.",
    ),
    ("/", {}, 404, f"No such endpoint '/'; the cutout endpoints are {ENDPOINTS}."),
]


def _query(params: dict) -> str:
    merged = {**OK, **params}
    return urlencode({k: v for k, v in merged.items() if v is not None})


@pytest.fixture(scope="module")
def server(tiny_sky):
    with serve(tiny_sky) as srv:
        yield srv


@pytest.fixture(scope="module")
def target(tiny_sky):
    t = pd.read_parquet(tiny_sky / "truth.parquet")
    return t[t.kind == "lens"].iloc[0]


@pytest.mark.parametrize(("path", "params", "status", "message"), MALFORMED)
def test_malformed_request_gets_a_4xx_naming_the_parameter(server, path, params, status, message):
    r = requests.get(f"http://127.0.0.1:{server.port}{path}?{_query(params)}", timeout=30)
    assert r.status_code == status
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.text == message


def test_malformed_requests_keep_the_connection_then_good_ones_work(server, target):
    """One keep-alive connection carries every malformed request (a response is read for each, the socket is
    never dropped), then a FITS and a JPEG request on the same connection still succeed."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.connect()
        sock = conn.sock
        for path, params, status, message in MALFORMED:
            conn.request("GET", f"{path}?{_query(params)}")
            resp = conn.getresponse()
            body = resp.read().decode()
            assert (resp.status, body) == (status, message)
            assert not resp.will_close and conn.sock is sock, f"connection dropped after {path} {params}"
        good = {"ra": target.ra, "dec": target.dec, "size": 48, "bands": "grz"}
        conn.request("GET", f"{FITS}?{urlencode(good)}")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and body[:6] == b"SIMPLE" and conn.sock is sock
        assert fits.open(io.BytesIO(body))[0].data.shape == (3, 48, 48)
        conn.request(
            "GET", f"{JPEG}?{urlencode({'ra': target.ra, 'dec': target.dec, 'width': 80, 'height': 60})}"
        )
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200 and resp.getheader("Content-Type") == "image/jpeg" and conn.sock is sock
        im = Image.open(io.BytesIO(body))
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (80, 60)
    finally:
        conn.close()


def test_other_methods_get_405(server):
    r = requests.post(f"http://127.0.0.1:{server.port}{FITS}?{_query({})}", data=b"x", timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    assert r.text == "Method POST is not supported; the cutout endpoints answer GET."


def test_no_layer_means_ls_dr10_and_an_unknown_layer_is_no_such_layer(server, target):
    params = {"ra": target.ra, "dec": target.dec, "size": 32}
    plain = requests.get(server.url, params=params, timeout=30)
    blank = requests.get(server.url, params={**params, "layer": ""}, timeout=30)
    dr10 = requests.get(server.url, params={**params, "layer": "ls-dr10"}, timeout=30)
    assert plain.status_code == blank.status_code == dr10.status_code == 200
    h = fits.open(io.BytesIO(plain.content))
    assert h[0].header["BANDS"] == "griz" and h[0].data.shape == (4, 32, 32)
    np.testing.assert_array_equal(h[0].data, fits.open(io.BytesIO(dr10.content))[0].data)
    np.testing.assert_array_equal(h[0].data, fits.open(io.BytesIO(blank.content))[0].data)
    r = requests.get(server.url, params={**params, "layer": "ls-dr99"}, timeout=30)
    assert r.status_code == 200 and r.text == "no such layer"


@pytest.mark.parametrize("path", ["/viewer/jpeg-cutout", "/viewer/cutout.jpg"])
def test_jpeg_cutout_is_the_project_colour_mapping_north_up(server, target, path):
    params = {"ra": target.ra, "dec": target.dec + 0.002, "width": 90, "height": 70}
    r = requests.get(f"http://127.0.0.1:{server.port}{path}", params=params, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), float)
    assert got.shape == (70, 90, 3)
    img = cutout_from_coadds(
        server.sky_dir / "coadd", params["ra"], params["dec"], bands="grz", width=90, height=70
    )[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        rgb = grz_rgb(img).astype(float)
    # compared on 5×5 block means, which average out the JPEG's pixel-level quantisation
    blocks = lambda a: a.reshape(14, 5, 18, 5, 3).mean(axis=(1, 3))
    north_up = np.abs(blocks(got) - blocks(rgb[::-1])).mean()
    south_up = np.abs(blocks(got) - blocks(rgb)).mean()
    assert north_up < 2.0 and north_up < south_up / 3, (north_up, south_up)


def test_jpeg_off_footprint_is_black_as_the_real_service(server):
    r = requests.get(
        f"http://127.0.0.1:{server.port}{JPEG}", params={"ra": 300.0, "dec": -70.0, "size": 20}, timeout=30
    )
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    im = np.asarray(Image.open(io.BytesIO(r.content)))
    assert im.shape == (20, 20, 3) and im.max() <= 2


def test_sizes_are_clamped_as_the_viewer_code_does():
    req = parse_request({"ra": "1", "dec": "2", "size": "5000"})
    assert (req.width, req.height) == (MAX_SIZE, MAX_SIZE) == (3000, 3000)
    req = parse_request({"ra": "1", "dec": "2", "width": "4000", "height": "64"})
    assert (req.width, req.height) == (3000, 64)
    req = parse_request({"ra": "0", "dec": "-90", "bands": "gx", "invvar": ""})
    assert req.layer == "ls-dr10" and req.bands == "griz" and req.invvar and not req.maskbits
    assert (req.width, req.height, req.pixscale) == (256, 256, 0.262)
    with pytest.raises(UnknownLayer):
        parse_request({"ra": "1", "dec": "2", "layer": "ls-dr9"})
    with pytest.raises(BadRequest, match=r"^size='9{37}\.\.\.' is not a whole number of pixels\.$"):
        parse_request({"ra": "1", "dec": "2", "size": "9" * 5000 + "x"})


def test_an_unexpected_error_answers_500_in_one_sentence_and_is_logged_once(
    server, target, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server_module, "make_cutout_fits", broken)
    with caplog.at_level(logging.ERROR, logger="lensaudit.sky.server"):
        with requests.Session() as s:
            r = s.get(server.url, params={"ra": target.ra, "dec": target.dec, "size": 16}, timeout=30)
            assert r.status_code == 500 and r.text == server_module.INTERNAL_ERROR
            assert "Traceback" not in r.text and "disk on fire" not in r.text
            monkeypatch.undo()
            again = s.get(server.url, params={"ra": target.ra, "dec": target.dec, "size": 16}, timeout=30)
            assert again.status_code == 200 and again.content[:6] == b"SIMPLE"
    records = [rec for rec in caplog.records if rec.name == "lensaudit.sky.server"]
    assert len(records) == 1 and records[0].exc_info is not None
    assert "disk on fire" in str(records[0].exc_info[1])
