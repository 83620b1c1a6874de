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
        outer = img[..., radius_map(img.shape[-1]) >= self.outer_radius_pix]
        med = np.nan_to_num(nanmedian_rows(outer))
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


def nanmedian_rows(a: np.ndarray) -> np.ndarray:
    """``np.nanmedian(a, axis=-1)`` of a float array, without numpy's Python loop over rows (2–3× faster on
    stamp annuli): rows without NaN are partitioned once at the upper middle position (the lower middle value
    of an even count is the maximum below it), rows with NaN are sorted (NaN last) and indexed at the middle
    of their non-NaN count; an even count gives (lo + hi) / 2 in ``a``'s dtype, as numpy's mean of the two
    does, an all-NaN row NaN (without a warning). The values are numpy's bit for bit (tested), except that a
    median between a −0.0 and a +0.0 may carry the other sign of zero.

    >>> nanmedian_rows(np.array([[3.0, np.nan, 1.0, 2.0], [4.0, 1.0, 2.0, 3.0], [np.nan] * 4]))
    array([2. , 2.5, nan])
    """
    a = np.asarray(a)
    k = a.shape[-1]
    flat = a.reshape(-1, k)
    med = np.full(len(flat), np.nan, a.dtype)
    cnt = k - np.isnan(flat).sum(axis=1)
    full = cnt == k
    if k and full.any():
        part = np.partition(flat if full.all() else flat[full], k // 2, axis=1)
        hi = part[:, k // 2]
        med[full] = hi if k % 2 else _mean2(part[:, : k // 2].max(axis=1), hi)
    some = (cnt > 0) & ~full
    if some.any():
        srt = np.sort(flat[some], axis=1)  # NaN sort last
        c = cnt[some]
        ar = np.arange(len(srt))
        lo, hi = srt[ar, (c - 1) // 2], srt[ar, c // 2]
        med[some] = np.where(c % 2 == 1, hi, _mean2(lo, hi))
    return med.reshape(a.shape[:-1])


def _mean2(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """numpy's ``mean`` of two values: their sum in the array's dtype, halved."""
    with np.errstate(all="ignore"):
        return (lo + hi) / lo.dtype.type(2)


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
    med = nanmedian_rows(outer)[..., None]
    with np.errstate(all="ignore"):
        mad = nanmedian_rows(np.abs(outer - med))
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
