"""Moffat PSF kernels and batched FFT convolution."""

from __future__ import annotations

import torch
from torch import Tensor


def moffat_kernel(
    fwhm_arcsec,
    beta,
    pixscale: float = 0.262,
    size: int = 41,
    oversample: int = 5,
    dtype=torch.float32,
    device=None,
) -> Tensor:
    """(B, K, K) pixel-integrated (oversampled) Moffat kernels normalised to unit sum; fwhm, beta (B,)."""
    fwhm = torch.as_tensor(fwhm_arcsec, dtype=dtype, device=device).reshape(-1, 1, 1)
    beta = torch.as_tensor(beta, dtype=dtype, device=device).reshape(-1, 1, 1)
    if beta.shape[0] == 1 and fwhm.shape[0] > 1:
        beta = beta.expand_as(fwhm)
    n = size * oversample
    c = (n - 1) / 2
    g = (torch.arange(n, dtype=dtype, device=device) - c) * pixscale / oversample
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    alpha = fwhm / (2 * torch.sqrt(2 ** (1 / beta) - 1))
    k = (1 + (xx**2 + yy**2) / alpha**2) ** (-beta)
    k = k.reshape(-1, size, oversample, size, oversample).sum(dim=(2, 4))
    return k / k.sum(dim=(-2, -1), keepdim=True)


def convolve_fft(img: Tensor, kernel: Tensor) -> Tensor:
    """'Same' convolution of images (B, H, W) with kernels (B, K, K) (odd K), batched through rfft2."""
    b, h, w = img.shape
    k = kernel.shape[-1]
    ph, pw = h + k - 1, w + k - 1
    fi = torch.fft.rfft2(img, s=(ph, pw))
    fk = torch.fft.rfft2(kernel, s=(ph, pw))
    out = torch.fft.irfft2(fi * fk, s=(ph, pw))
    a = (k - 1) // 2
    return out[:, a : a + h, a : a + w]


_KERNELS: dict[tuple, Tensor] = {}
_KERNEL_FFTS: dict[tuple, Tensor] = {}
_CACHE_MAX = 512


def _cached(cache: dict, key: tuple, make):
    v = cache.get(key)
    if v is None:
        if len(cache) >= _CACHE_MAX:
            cache.pop(next(iter(cache)))
        v = cache[key] = make()
    return v


def moffat_subcell_kernel(fwhm: float, beta: float, pixscale: float, psf_size: int, sub: int, dtype, device):
    """Moffat PSF sampled (not pixel-integrated) at sub-cell spacing pixscale/sub over ±(psf_size−1)/2
    pixels, unit sum: ((psf_size−1)·sub + 1)². Cached per (FWHM, β, pixscale, size, sub, dtype, device)."""

    def make():
        h = (psf_size - 1) // 2 * sub
        g = torch.arange(-h, h + 1, dtype=torch.float64) * pixscale / sub
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        alpha = fwhm / (2 * (2 ** (1 / beta) - 1) ** 0.5)
        k = (1 + (xx**2 + yy**2) / alpha**2) ** (-beta)
        return (k / k.sum()).to(dtype=dtype, device=device)

    key = (round(float(fwhm), 6), round(float(beta), 6), pixscale, psf_size, sub, dtype, str(device))
    return _cached(_KERNELS, key, make)


def good_fft_size(n: int, multiple: int = 1) -> int:
    """Smallest m ≥ n, a multiple of ``multiple``, with no prime factor above 5 (fast FFT sizes)."""
    m = n + (-n) % multiple
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += multiple


def subcell_kernel_fft(fwhm: Tensor, beta: Tensor, pixscale, psf_size, sub, p: int, dtype, device) -> Tensor:
    """(B, p, p//2+1) rfft2 of the sub-cell Moffat kernels of B systems, zero-padded to p×p; one FFT per
    distinct (FWHM, β), cached."""
    pairs = torch.stack([fwhm.detach().double().cpu(), beta.detach().double().cpu()], dim=1)
    uniq, inv = torch.unique(torch.round(pairs * 1e6) / 1e6, dim=0, return_inverse=True)
    ffts = []
    for f, bt in uniq.tolist():
        key = (round(f, 6), round(bt, 6), pixscale, psf_size, sub, p, dtype, str(device))
        ffts.append(
            _cached(
                _KERNEL_FFTS,
                key,
                lambda f=f, bt=bt: torch.fft.rfft2(
                    moffat_subcell_kernel(f, bt, pixscale, psf_size, sub, dtype, device), s=(p, p)
                ),
            )
        )
    return torch.stack(ffts)[inv.to(device)]


def convolve_subcells(
    sub: Tensor,
    weights: Tensor,
    fwhm: dict[str, Tensor],
    beta: Tensor,
    bands: str,
    pixscale: float,
    psf_size: int,
) -> Tensor:
    """PSF-convolved pixel images (B, nb, L, L), L = m + psf_size − 1 (the full linear convolution, centred on
    the region), from sub-cell fluxes (C, B, m, m, s, s) and component fluxes per band ``weights`` (B, nb, C).

    The sub-cell image is convolved with the Moffat PSF sampled at sub-cell spacing and the sub-cells are then
    summed into pixels: the pixel response enters once (through the sum), not a second time through a
    pixel-integrated kernel. One forward FFT per component serves all bands."""
    c, b, m, _, s, _ = sub.shape
    img = sub.permute(0, 1, 2, 4, 3, 5).reshape(c, b, m * s, m * s)
    kf = (psf_size - 1) * s + 1
    n_full = m * s + kf - 1  # = s·(m + psf_size − 1)
    p = good_fft_size(n_full, s)
    fi = torch.fft.rfft2(img, s=(p, p))  # (C, B, p, p//2+1)
    w = weights.to(fi.real.dtype)
    out = []
    for j, band in enumerate(bands):
        kern = subcell_kernel_fft(fwhm[band], beta, pixscale, psf_size, s, p, img.dtype, img.device)
        spec = (fi * w[:, j].T.reshape(c, b, 1, 1)).sum(dim=0) * kern
        o = torch.fft.irfft2(spec, s=(p, p))[:, :n_full, :n_full]
        out.append(o.reshape(b, n_full // s, s, n_full // s, s).sum(dim=(2, 4)))
    return torch.stack(out, dim=1)
