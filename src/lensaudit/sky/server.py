"""The Legacy Survey cutout API served on 127.0.0.1 from a sky's coadd bricks (a real HTTP server).

Endpoints: ``/viewer/cutout.fits`` = ``/viewer/fits-cutout`` and ``/viewer/cutout.jpg`` =
``/viewer/jpeg-cutout``, with ``ra, dec, layer, pixscale, size, width, height, bands, invvar, maskbits`` as
the real viewer reads them.

As the real viewer: an unknown layer answers HTTP 200 with the text body ``no such layer``; no overlapping
brick → HTTP 500 ``NoOverlapError: …`` for FITS and a black image for JPEG; uncovered pixels 0; an invalid
band letter (or an empty ``bands``) falls back to the layer's bands; size, width and height are silently
clamped to ``MAX_SIZE`` = 3000 px, the clamp in the viewer's code (the DR10 web page says 512; the two
disagree and the live server is unverified, so the code's value is used for FITS and JPEG alike).
FITS response: float32 (nbands, H, W) HDU0 with BANDS/BANDn and the cutout WCS (CRPIX = (W+1)/2), then invvar
(IMAGETYP='INVVAR') and int32 maskbits HDUs, produced only at the native scale (pixscale < 2×0.262).
JPEG response (``image/jpeg``): the g, r, z planes rendered with the project's one colour mapping
(``lensaudit.report.rgb.grz_rgb``), north up and east left; ``bands``, ``invvar`` and ``maskbits`` are
ignored.

Where this server departs from the real one, on purpose:
- a request without ``layer`` (or with ``layer=``) gets ``ls-dr10``, the DR10 layer this server holds (the
  real viewer's default, ``ls-dr9``, is not served here);
- a malformed parameter answers HTTP 400 with one sentence naming the parameter and its value, where the
  real viewer may answer 500: ``Need ra,dec keywords: …`` for a missing or non-numeric ra/dec (the real
  body, with the reason added), ra outside [0, 360), dec outside [-90, 90], non-finite values, size, width
  or height that are not positive whole numbers, pixscale ≤ 0 or not finite, and a field of view
  (pixscale × the larger side) over ``MAX_FIELD_DEG`` = 10° (this server's guard: the brick search grows with
  the field's area);
- an unknown path answers 404 with a sentence listing the endpoints, a method other than GET 405;
- an unexpected error inside the handler answers 500 with one sentence (no traceback) and is logged once.
A malformed request never reaches the fault injection, the cutout code or a 5xx, and the connection stays
open (HTTP/1.1 keep-alive) after every answer to a GET (a 405 closes it: the request body is left unread).

Optional fault injection (``FaultConfig``) for reliability tests: a fraction of 429/503/504 answers, truncated
bodies, latency spikes and one connection reset; deterministic per seed and order of well-formed requests.
"""

from __future__ import annotations

import io
import logging
import math
import random
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from lensaudit.report.rgb import grz_rgb
from lensaudit.survey.coadds import CoaddReader, NoOverlapError, cutout_wcs_header

log = logging.getLogger(__name__)

LAYERS = {"ls-dr10": "griz", "ls-dr10-south": "griz", "ls-dr10-grz": "grz"}
DEFAULT_LAYER = "ls-dr10"
MAX_SIZE = 3000
MAX_FIELD_DEG = 10.0
NATIVE_PIXSCALE = 0.262
DEFAULT_SIZE = 256
FITS_PATHS = ("/viewer/cutout.fits", "/viewer/fits-cutout")
JPEG_PATHS = ("/viewer/cutout.jpg", "/viewer/jpeg-cutout")
INTERNAL_ERROR = "The cutout server failed on this request because of an internal error (see the server log)."


@dataclass
class FaultConfig:
    """Faults injected by the server (fractions are per request)."""

    error_rate: float = 0.0
    error_codes: tuple[int, ...] = (429, 503, 504)
    truncate_rate: float = 0.0
    latency_s: float = 0.0
    latency_rate: float = 0.0
    reset_once: bool = False
    seed: int = 0


class BadRequest(ValueError):
    """A malformed request; its message (one sentence naming the parameter and value) is the HTTP 400 body."""


class UnknownLayer(ValueError):
    """An explicitly requested layer that the server does not hold (answered 200 ``no such layer``)."""


@dataclass(frozen=True)
class CutoutRequest:
    """The validated parameters of one cutout request."""

    ra: float
    dec: float
    layer: str
    bands: str
    width: int
    height: int
    pixscale: float
    invvar: bool
    maskbits: bool


def _show(raw: str) -> str:
    """A client's value as a message shows it (long values shortened)."""
    return raw if len(raw) <= 40 else raw[:37] + "..."


def _coordinate(q: Mapping[str, str], name: str) -> float:
    raw = q[name]
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"Need ra,dec keywords: {name}={_show(raw)!r} is not a number.") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name}={_show(raw)} is not a finite number of degrees.")
    if name == "ra" and not 0.0 <= value < 360.0:
        raise BadRequest(f"ra={_show(raw)} is outside [0, 360) degrees.")
    if name == "dec" and not -90.0 <= value <= 90.0:
        raise BadRequest(f"dec={_show(raw)} is outside [-90, 90] degrees.")
    return value


def _pixels(q: Mapping[str, str], name: str, default: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={_show(raw)!r} is not a whole number of pixels.") from None
    if value <= 0:
        raise BadRequest(f"{name}={_show(raw)} must be a positive number of pixels.")
    return min(value, MAX_SIZE)


def _pixscale(q: Mapping[str, str]) -> float:
    raw = q.get("pixscale")
    if raw is None:
        return NATIVE_PIXSCALE
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"pixscale={_show(raw)!r} is not a number of arcsec per pixel.") from None
    if not (math.isfinite(value) and value > 0):
        raise BadRequest(f"pixscale={_show(raw)} must be a positive finite number of arcsec per pixel.")
    return value


def parse_request(q: Mapping[str, str]) -> CutoutRequest:
    """Validate a cutout query (one value per key). Raises BadRequest (→ 400) or UnknownLayer (→ 200)."""
    missing = [k for k in ("ra", "dec") if k not in q]
    if missing:
        what = " and ".join(missing) + (" are" if len(missing) == 2 else " is")
        raise BadRequest(f"Need ra,dec keywords: {what} missing.")
    ra, dec = _coordinate(q, "ra"), _coordinate(q, "dec")
    layer = q.get("layer") or DEFAULT_LAYER
    if layer not in LAYERS:
        raise UnknownLayer(layer)
    layer_bands = LAYERS[layer]
    bands = q.get("bands") or layer_bands
    if any(b not in layer_bands for b in bands):
        bands = layer_bands
    size = _pixels(q, "size", DEFAULT_SIZE)
    width, height = _pixels(q, "width", size), _pixels(q, "height", size)
    pixscale = _pixscale(q)
    field = max(width, height) * pixscale / 3600.0
    if field > MAX_FIELD_DEG:
        raise BadRequest(
            f"pixscale={_show(q['pixscale'])} over {max(width, height)} pixels spans {field:.3g} deg, "
            f"more than this server's {MAX_FIELD_DEG:g} deg field limit."
        )
    return CutoutRequest(ra, dec, layer, bands, width, height, pixscale, "invvar" in q, "maskbits" in q)


class _State:
    def __init__(self, faults: FaultConfig):
        self.faults = faults
        self.rng = random.Random(faults.seed)
        self.lock = threading.Lock()
        self.reset_done = False
        self.requests = 0

    def draw(self) -> tuple[float, float, float, bool]:
        with self.lock:
            self.requests += 1
            reset = self.faults.reset_once and not self.reset_done and self.requests >= 2
            if reset:
                self.reset_done = True
            return self.rng.random(), self.rng.random(), self.rng.random(), reset


def make_cutout_fits(
    reader: CoaddReader,
    ra: float,
    dec: float,
    width: int,
    height: int,
    pixscale: float,
    bands: str,
    invvar: bool,
    maskbits: bool,
) -> bytes:
    from astropy.io import fits

    img, iv, mb = reader.cutout(ra, dec, width, height, pixscale, bands)
    hdr = fits.Header()
    for k, v in cutout_wcs_header(ra, dec, width, height, pixscale).items():
        hdr[k] = v
    hdr["BANDS"] = bands
    for i, b in enumerate(bands):
        hdr[f"BAND{i}"] = b
    hdr.update(
        {"IMAGEW": width, "IMAGEH": height, "SURVEY": "LegacySurvey", "VERSION": "DR10", "IMAGETYP": "IMAGE"}
    )
    data = img[0] if len(bands) == 1 else img
    hdus = [fits.PrimaryHDU(data.astype(np.float32), header=hdr)]
    native = pixscale < 2 * NATIVE_PIXSCALE
    if invvar and native:
        h = hdr.copy()
        h["IMAGETYP"] = "INVVAR"
        hdus.append(fits.ImageHDU((iv[0] if len(bands) == 1 else iv).astype(np.float32), header=h))
    if maskbits and native:
        h = fits.Header()
        for k, v in cutout_wcs_header(ra, dec, width, height, pixscale).items():
            h[k] = v
        h["IMAGETYP"] = "MASKBITS"
        hdus.append(fits.ImageHDU(mb.astype(np.int32), header=h))
    buf = io.BytesIO()
    fits.HDUList(hdus).writeto(buf)
    return buf.getvalue()


def make_cutout_jpeg(
    reader: CoaddReader, ra: float, dec: float, width: int, height: int, pixscale: float
) -> bytes:
    """A (height, width) RGB JPEG of the g, r, z planes, north up; black where no brick overlaps."""
    from PIL import Image

    try:
        img = reader.cutout(ra, dec, width, height, pixscale, "grz")[0]
    except NoOverlapError:
        img = np.zeros((3, height, width), np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):  # the asinh stretch divides 0 by 0 on blank pixels
        rgb = grz_rgb(img)
    # cutout rows run south → north (CD2_2 > 0); an image's first row is its top, so flip to put north up
    rgb = np.ascontiguousarray(rgb[::-1])
    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _handler(reader: CoaddReader, state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        answered = False

        def log_message(self, fmt, *args):  # quiet: do_GET logs the errors
            pass

        def _send(
            self, code: int, body: bytes, ctype: str, extra: dict | None = None, truncate: bool = False
        ) -> None:
            self.answered = True
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)
            if truncate:
                self.close_connection = True

        def _text(self, code: int, message: str, extra: dict | None = None) -> None:
            self._send(code, message.encode(), "text/plain; charset=utf-8", extra)

        def do_GET(self):  # noqa: N802
            self.answered = False
            try:
                self._get()
            except ConnectionError:  # the client went away: nothing to answer
                self.close_connection = True
            except Exception:
                log.exception("cutout server: unexpected error on GET %s", self.path)
                if self.answered:  # part of an answer is out: the connection cannot carry another one
                    self.close_connection = True
                    return
                try:
                    self._text(500, INTERNAL_ERROR)
                except ConnectionError:
                    self.close_connection = True

        def _refuse_method(self) -> None:
            self.close_connection = True  # an unread request body must not be parsed as the next request
            self._text(
                405,
                f"Method {self.command} is not supported; the cutout endpoints answer GET.",
                {"Allow": "GET"},
            )

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse_method

        def _get(self) -> None:
            url = urlparse(self.path)
            path = url.path.rstrip("/")
            if path not in FITS_PATHS + JPEG_PATHS:
                return self._text(
                    404,
                    f"No such endpoint {_show(url.path)!r}; the cutout endpoints are "
                    + ", ".join(FITS_PATHS + JPEG_PATHS)
                    + ".",
                )
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            try:
                req = parse_request(q)
            except BadRequest as exc:
                return self._text(400, str(exc))
            except UnknownLayer:
                return self._send(200, b"no such layer", "text/html")
            u_err, u_trunc, u_lat, reset = state.draw()
            f = state.faults
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return None
            if u_lat < f.latency_rate:
                time.sleep(f.latency_s)
            if u_err < f.error_rate:
                code = f.error_codes[
                    int(u_err / max(f.error_rate, 1e-12) * len(f.error_codes)) % len(f.error_codes)
                ]
                return self._send(code, f"injected fault {code}".encode(), "text/plain", {"Retry-After": "0"})
            truncate = u_trunc < f.truncate_rate
            if path in JPEG_PATHS:
                body = make_cutout_jpeg(reader, req.ra, req.dec, req.width, req.height, req.pixscale)
                return self._send(200, body, "image/jpeg", truncate=truncate)
            try:
                body = make_cutout_fits(
                    reader,
                    req.ra,
                    req.dec,
                    req.width,
                    req.height,
                    req.pixscale,
                    req.bands,
                    req.invvar,
                    req.maskbits,
                )
            except NoOverlapError as exc:
                return self._text(500, f"NoOverlapError: {exc}")
            name = f"cutout_{req.ra:.4f}_{req.dec:.4f}.fits"
            return self._send(
                200,
                body,
                "image/fits",
                {"Content-Disposition": f'attachment; filename="{name}"'},
                truncate=truncate,
            )

    return Handler


class CutoutServer:
    """A running server (thread). Use as a context manager or call ``shutdown()``."""

    def __init__(
        self, sky_dir: str | Path, host: str = "127.0.0.1", port: int = 0, faults: FaultConfig | None = None
    ):
        self.sky_dir = Path(sky_dir)
        self.state = _State(faults or FaultConfig())
        reader = CoaddReader(Path(sky_dir) / "coadd", "griz", cache_bricks=16)
        self.httpd = ThreadingHTTPServer((host, port), _handler(reader, self.state))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/viewer/cutout.fits"

    @property
    def requests(self) -> int:
        return self.state.requests

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> CutoutServer:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def serve(
    sky_dir: str | Path, host: str = "127.0.0.1", port: int = 0, faults: FaultConfig | None = None
) -> CutoutServer:
    """Start the cutout server in a background thread and return it."""
    return CutoutServer(sky_dir, host, port, faults)
