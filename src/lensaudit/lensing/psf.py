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
