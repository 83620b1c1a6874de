"""Cutout providers, chosen by name in the config (registry). Each turns rows (galaxy_id, ra, dec) into
stamps plus a per-row record (status, reason, source, attempts); failures never raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from lensaudit.config import RunConfig

PROVIDERS: dict[str, type[_Base]] = {}
P = TypeVar("P", bound="_Base")


def register_provider(name: str) -> Callable[[type[P]], type[P]]:
    def deco(cls: type[P]) -> type[P]:
        PROVIDERS[name] = cls
        cls.name = name
        return cls

    return deco


def get_provider(name: str, cfg: RunConfig):
    if name not in PROVIDERS:
        from lensaudit.errors import ConfigError

        raise ConfigError(f"unknown cutout provider {name!r}; known: {', '.join(PROVIDERS)}")
    return PROVIDERS[name](cfg)


@dataclass
class ShardResult:
    image: np.ndarray
    invvar: np.ndarray
    maskbits: np.ndarray
    index: pd.DataFrame


def _empty(n: int, nb: int, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.zeros((n, nb, s, s), np.float32),
        np.zeros((n, nb, s, s), np.float32),
        np.zeros((n, s, s), np.int32),
    )


class _Base:
    parallel = "dask"  # or "threads" (the service: one rate limit for the whole run)
    name = ""  # set by @register_provider

    def one(self, r: Any) -> tuple[bool, str, str, int, Any]:
        """One stamp: (ok, reason, source, attempts, (image, invvar, maskbits)). Per-stamp providers
        implement it; the service provider overrides ``fetch`` instead."""
        raise NotImplementedError(f"provider {self.name!r} fetches whole shards, not single stamps")

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        c = cfg.cutouts
        self.size, self.pixscale, self.bands = c.size_pix, c.pixscale_arcsec, c.bands.lower()

    def fetch(self, rows: pd.DataFrame) -> ShardResult:
        img, iv, mb = _empty(len(rows), len(self.bands), self.size)
        recs = []
        for i, r in enumerate(rows.itertuples()):
            ok, reason, source, attempts, stamp = self.one(r)
            if ok:
                img[i], iv[i], mb[i] = stamp
            recs.append(
                {
                    "galaxy_id": r.galaxy_id,
                    "provider": self.name,
                    "source": source,
                    "status": "ok" if ok else "failed",
                    "reason": reason,
                    "attempts": attempts,
                }
            )
        return ShardResult(img, iv, mb, pd.DataFrame(recs))


@register_provider("coadds")
class CoaddsProvider(_Base):
    """Cutouts from local coadd bricks (NERSC-style …/dr10/south/coadd), same pixels as the service."""

    def one(self, r):
        from lensaudit.survey.coadds import NoOverlapError, cutout_from_coadds

        src = str(self.cfg.coadd_dir)
        try:
            return (
                True,
                "",
                src,
                1,
                cutout_from_coadds(self.cfg.coadd_dir, r.ra, r.dec, self.size, self.pixscale, self.bands),
            )
        except NoOverlapError as exc:
            return False, f"off footprint: {exc}", src, 1, None


@register_provider("npz-import")
class NpzProvider(_Base):
    """The predecessor's .npz archive (HWC → CHW; invvar estimated from the outer MAD)."""

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        from lensaudit.stamps.npz import index_npz_dir

        if not cfg.cutouts.npz_dir:
            from lensaudit.errors import ConfigError

            raise ConfigError("cutouts.npz_dir must be set for provider 'npz-import'")
        self.files = index_npz_dir(str(cfg.resolve_path(cfg.cutouts.npz_dir)))

    def one(self, r):
        from lensaudit.errors import InputError
        from lensaudit.stamps.npz import mad_invvar, read_npz

        path = self.files.get(r.galaxy_id)
        if path is None:
            return False, "no .npz file for this galaxy_id", "", 0, None
        try:
            img, _ = read_npz(path)
        except InputError as exc:
            return False, str(exc), path, 1, None
        if img.shape[-1] != self.size:
            return False, f"stamp size {img.shape[-1]} != {self.size}", path, 1, None
        return True, "", path, 1, (img, mad_invvar(img), np.zeros(img.shape[1:], np.int32))


@register_provider("service")
class ServiceProvider(_Base):
    """The Legacy Survey cutout API over HTTP (polite: rate-limited, bounded concurrency, retries)."""

    parallel = "threads"

    def __init__(self, cfg: RunConfig):
        super().__init__(cfg)
        from lensaudit.survey.cutout_service import CutoutClient

        c = cfg.cutouts
        self.client = CutoutClient(
            cfg.data.cutout_url,
            cfg.data.layer,
            c.requests_per_second,
            c.concurrency,
            c.timeout_s,
            c.max_attempts,
            c.backoff_base_s,
            seed=cfg.run.seed,
        )

    def fetch(self, rows: pd.DataFrame, on_done=None) -> ShardResult:
        res = self.client.fetch_many(
            list(zip(rows.ra, rows.dec)), self.size, self.pixscale, self.bands, on_done
        )
        img, iv, mb = _empty(len(rows), len(self.bands), self.size)
        recs = []
        for i, (gid, r) in enumerate(zip(rows.galaxy_id, res)):
            if r.ok:
                img[i], iv[i], mb[i] = r.image, r.invvar, r.maskbits
            recs.append(
                {
                    "galaxy_id": gid,
                    "provider": self.name,
                    "source": r.url,
                    "status": "ok" if r.ok else "failed",
                    "reason": r.reason,
                    "attempts": r.attempts,
                }
            )
        return ShardResult(img, iv, mb, pd.DataFrame(recs))
