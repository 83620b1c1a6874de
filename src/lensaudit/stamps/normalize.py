"""Per-band robust normalisation (decision, documented): for each stamp and band subtract the median of the
outer annulus (r ≥ 30 px: sky level plus any residual background), then divide by a per-band noise scale σ_b
= median over the TRAINING split of 1.4826·MAD(outer annulus). Using one σ per band for all stamps (not
per stamp) keeps relative depth information honest and stops a per-stamp rescaling from amplifying noise in
shallow fields; the optional asinh stretch compresses bright cores (x → asinh(x/4)·4). Statistics are stored
with the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lensaudit.stamps.quality import radius_map


@dataclass
class Normalizer:
    sigma: list[float]
    asinh: bool = False
    outer_radius_pix: float = 30.0

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """(…, B, S, S) nanomaggies → normalised float32 (NaN pixels stay NaN; callers decide how to fill)."""
        r = radius_map(img.shape[-1])
        outer = np.where(r >= self.outer_radius_pix, img, np.nan)
        with np.errstate(all="ignore"):
            med = np.nanmedian(outer.reshape(*img.shape[:-2], -1), axis=-1)
        med = np.nan_to_num(med)
        x = (img - med[..., None, None]) / np.asarray(self.sigma, np.float32)[:, None, None]
        if self.asinh:
            x = 4.0 * np.arcsinh(x / 4.0)
        return x.astype(np.float32)

    def prepare(self, img: np.ndarray, crop: int | None = None) -> np.ndarray:
        """The one preprocessing path of training and scoring: normalise, fill masked pixels
        (:func:`fill_nan`), and centre-crop to ``crop`` (training crops after augmenting, so passes None).

        >>> Normalizer([1.0, 1.0, 1.0]).prepare(np.ones((2, 3, 64, 64), np.float32), crop=48).shape
        (2, 3, 48, 48)
        """
        x = fill_nan(self(np.asarray(img, np.float32)))
        return x if crop is None else np.ascontiguousarray(center_crop(x, crop))

    def to_dict(self) -> dict:
        return asdict(self)


def fill_nan(x: np.ndarray, central_radius: float = 8.0) -> np.ndarray:
    """Masked (NaN/inf) pixels → 0 (the normalised background), except in stamps with a non-finite pixel in
    the
    centre, which stay NaN so that training stops on them with their ids and scoring gives NaN (the quality
    gates should have excluded them)."""
    central = (~np.isfinite(x[..., radius_map(x.shape[-1]) < central_radius])).any(axis=(-2, -1))
    y = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    y[central] = x[central]
    return y


def center_crop(x: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` × ``size`` pixels of (…, S, S)."""
    s = x.shape[-1]
    a = (s - size) // 2
    return x[..., a : a + size, a : a + size]


def stamp_mad_sigma(images: np.ndarray) -> np.ndarray:
    """(N, B) robust noise σ = 1.4826·MAD of each stamp's outer annulus (r ≥ 30 px), per band."""
    r = radius_map(images.shape[-1])
    outer = images[..., r >= 30]
    with np.errstate(all="ignore"):
        med = np.nanmedian(outer, axis=-1, keepdims=True)
        mad = np.nanmedian(np.abs(outer - med), axis=-1)
    return 1.4826 * mad


def normalizer_from_sigmas(sig_per_stamp: np.ndarray, asinh: bool = False) -> Normalizer:
    """The normaliser whose σ per band is the median over stamps of :func:`stamp_mad_sigma`."""
    with np.errstate(all="ignore"):
        sig = np.nanmedian(sig_per_stamp, axis=0)
    sig = np.where(np.isfinite(sig) & (sig > 0), sig, 1.0)
    return Normalizer([float(s) for s in sig], asinh)


def fit_normalizer(images: np.ndarray, asinh: bool = False) -> Normalizer:
    """σ per band from training stamps (N, B, S, S) (:func:`normalizer_from_sigmas` of
    :func:`stamp_mad_sigma`; training computes the σ of each stamp chunk by chunk, which gives the same)."""
    return normalizer_from_sigmas(stamp_mad_sigma(images), asinh)
