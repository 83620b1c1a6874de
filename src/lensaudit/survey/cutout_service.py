"""HTTP client for the Legacy Survey cutout API (the real service, or `lensaudit sky serve`).

Polite and fault-tolerant: bounded concurrency, a client-side rate limit (token bucket), timeouts,
exponential backoff with full jitter on 429/5xx/connection errors/corrupt bodies, no retry on HTTP 400,
on a 200 text body (``no such layer``) or on a NoOverlap 500 (off footprint). Every body is validated (FITS
magic, shape, BANDS header). Permanent failures come back as a result with a reason, never as an exception.
"""

from __future__ import annotations

import io
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

import numpy as np


@dataclass
class FetchResult:
    image: np.ndarray | None
    invvar: np.ndarray | None
    maskbits: np.ndarray | None
    ok: bool
    reason: str
    url: str
    attempts: int


class RateLimiter:
    """Token bucket: at most ``rate`` acquisitions per second on average, bursts of 1."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = time.monotonic()
            wait = self.next - now
            self.next = max(now, self.next) + self.interval
        if wait > 0:
            time.sleep(wait)


class Permanent(Exception):
    pass


class Transient(Exception):
    pass


def cutout_url(
    base: str,
    ra: float,
    dec: float,
    layer: str = "ls-dr10",
    size: int = 101,
    pixscale: float = 0.262,
    bands: str = "grz",
) -> str:
    """The request URL (ra/dec with 7 decimals ≈ 0.4 mas; flags invvar and maskbits)."""
    q = urlencode(
        {
            "ra": f"{ra:.7f}",
            "dec": f"{dec:.7f}",
            "layer": layer,
            "pixscale": pixscale,
            "size": size,
            "bands": bands,
        }
    )
    return f"{base}?{q}&invvar&maskbits"


def parse_cutout(body: bytes, size: int, bands: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a cutout FITS body and return (image, invvar, maskbits); raises Transient/Permanent."""
    from astropy.io import fits

    if not body.startswith(b"SIMPLE"):
        text = body[:80].decode("ascii", "replace").strip()
        raise Permanent(f"not FITS: {text!r}")
    try:
        with fits.open(io.BytesIO(body)) as h:
            img = np.asarray(h[0].data, np.float32)
            if h[0].header.get("BANDS") != bands:
                raise Permanent(f"BANDS header {h[0].header.get('BANDS')!r} != requested {bands!r}")
            if len(h) < 3:
                raise Permanent("invvar/maskbits HDUs missing")
            iv = np.asarray(h[1].data, np.float32)
            mb = np.asarray(h[2].data, np.int32)
    except (OSError, TypeError, ValueError, IndexError) as exc:
        raise Transient(f"corrupt FITS body ({len(body)} bytes): {exc}") from None
    if img.ndim == 2:
        img, iv = img[None], iv[None]
    if img.shape != (len(bands), size, size) or iv.shape != img.shape or mb.shape != (size, size):
        raise Transient(f"unexpected shapes {img.shape}, {iv.shape}, {mb.shape}")
    return img, iv, mb


class CutoutClient:
    def __init__(
        self,
        base_url: str,
        layer: str = "ls-dr10",
        requests_per_second: float = 5.0,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        max_attempts: int = 6,
        backoff_base_s: float = 0.5,
        seed: int = 0,
    ):
        self.base, self.layer = base_url, layer
        self.limiter = RateLimiter(requests_per_second)
        self.concurrency, self.timeout, self.max_attempts, self.backoff = (
            concurrency,
            timeout_s,
            max_attempts,
            backoff_base_s,
        )
        self._local = threading.local()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    def _session(self):
        import requests

        if not hasattr(self._local, "s"):
            self._local.s = requests.Session()
        return self._local.s

    def fetch(
        self, ra: float, dec: float, size: int = 101, pixscale: float = 0.262, bands: str = "grz"
    ) -> FetchResult:
        import requests

        url = cutout_url(self.base, ra, dec, self.layer, size, pixscale, bands)
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            self.limiter.acquire()
            try:
                r = self._session().get(url, timeout=self.timeout)
                if r.status_code == 200:
                    img, iv, mb = parse_cutout(r.content, size, bands)
                    return FetchResult(img, iv, mb, True, "", url, attempt)
                body = r.text[:200]
                if r.status_code == 400:
                    raise Permanent(f"HTTP 400: {body}")
                if r.status_code == 500 and "NoOverlap" in body:
                    raise Permanent(f"HTTP 500 off footprint: {body}")
                raise Transient(f"HTTP {r.status_code}: {body}")
            except Permanent as exc:
                return FetchResult(None, None, None, False, str(exc), url, attempt)
            except (Transient, requests.exceptions.RequestException) as exc:
                reason = f"{type(exc).__name__}: {exc}"[:300]
            if attempt < self.max_attempts:
                with self._rng_lock:
                    jitter = self._rng.random()
                time.sleep(jitter * self.backoff * 2 ** (attempt - 1))  # full jitter
        return FetchResult(
            None,
            None,
            None,
            False,
            f"gave up after {self.max_attempts} attempts: {reason}",
            url,
            self.max_attempts,
        )

    def fetch_many(
        self,
        positions: list[tuple[float, float]],
        size: int = 101,
        pixscale: float = 0.262,
        bands: str = "grz",
        on_done=None,
    ) -> list[FetchResult]:
        def one(p):
            res = self.fetch(p[0], p[1], size, pixscale, bands)
            if on_done:
                on_done(res)
            return res

        with ThreadPoolExecutor(self.concurrency) as ex:
            return list(ex.map(one, positions))
