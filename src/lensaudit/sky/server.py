"""The Legacy Survey cutout API served on 127.0.0.1 from a sky's coadd bricks (a real HTTP server).

Implements ``/viewer/cutout.fits`` and ``/viewer/fits-cutout`` with ``ra, dec, layer, pixscale, size, width,
height, bands, invvar, maskbits`` as the real viewer does: HTTP 400 ``Need ra,dec keywords``; an unknown layer
answers HTTP 200 with the text body ``no such layer``; no overlapping brick → HTTP 500; uncovered pixels 0;
an invalid band letter falls back to the layer's bands. Response: float32 (nbands, H, W) HDU0 with BANDS/BANDn
and the cutout WCS (CRPIX = (W+1)/2), then invvar (IMAGETYP='INVVAR') and int32 maskbits HDUs.
invvar/maskbits are produced only at the native scale (pixscale < 2×0.262), as in the real service.

Optional fault injection (``FaultConfig``) for reliability tests: a fraction of 429/503/504 answers, truncated
bodies, latency spikes and one connection reset; deterministic per seed and request order.
"""

from __future__ import annotations

import io
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from lensaudit.survey.coadds import CoaddReader, NoOverlapError, cutout_wcs_header

LAYERS = {"ls-dr10": "griz", "ls-dr10-south": "griz", "ls-dr10-grz": "grz"}
MAX_SIZE = 3000


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
    native = pixscale < 2 * 0.262
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


def _handler(reader: CoaddReader, state: _State):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # quiet
            pass

        def _send(
            self, code: int, body: bytes, ctype: str, extra: dict | None = None, truncate: bool = False
        ):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)
            if truncate:
                self.close_connection = True

        def do_GET(self):  # noqa: N802
            url = urlparse(self.path)
            if url.path.rstrip("/") not in ("/viewer/cutout.fits", "/viewer/fits-cutout"):
                return self._send(404, b"not found", "text/plain")
            u_err, u_trunc, u_lat, reset = state.draw()
            f = state.faults
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            if u_lat < f.latency_rate:
                time.sleep(f.latency_s)
            if u_err < f.error_rate:
                code = f.error_codes[
                    int(u_err / max(f.error_rate, 1e-12) * len(f.error_codes)) % len(f.error_codes)
                ]
                return self._send(code, f"injected fault {code}".encode(), "text/plain", {"Retry-After": "0"})
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            try:
                ra, dec = float(q["ra"]), float(q["dec"])
            except (KeyError, ValueError):
                return self._send(400, b"Need ra,dec keywords", "text/plain")
            layer = q.get("layer", "ls-dr9")
            if layer not in LAYERS:
                return self._send(200, b"no such layer", "text/html")
            layer_bands = LAYERS[layer]
            bands = q.get("bands", layer_bands)
            if not bands or any(b not in layer_bands for b in bands):
                bands = layer_bands
            try:
                pixscale = float(q.get("pixscale", 0.262))
                size = int(q.get("size", 256))
                w = min(int(q.get("width", size)), MAX_SIZE)
                h = min(int(q.get("height", size)), MAX_SIZE)
            except ValueError:
                return self._send(400, b"bad size/pixscale", "text/plain")
            try:
                body = make_cutout_fits(
                    reader, ra, dec, w, h, pixscale, bands, "invvar" in q, "maskbits" in q
                )
            except NoOverlapError as exc:
                return self._send(500, f"NoOverlapError: {exc}".encode(), "text/plain")
            self._send(
                200,
                body,
                "image/fits",
                {"Content-Disposition": f'attachment; filename="cutout_{ra:.4f}_{dec:.4f}.fits"'},
                truncate=u_trunc < f.truncate_rate,
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
