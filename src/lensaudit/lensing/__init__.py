"""lensaudit.lensing: a batched PyTorch injection engine (SIE + external shear, Sersic or clumpy sources,
supersampled ray-shooting, Moffat PSF by FFT, matched noise, arc SNR). Imports nothing from the pipeline.

>>> import torch
>>> from lensaudit.lensing import LensSystems, render_arcs
>>> s = LensSystems.make(theta_e=[1.5], src_mag={"g": [23.4], "r": [23.0], "z": [22.7]},
...                      psf_fwhm={"g": [1.5], "r": [1.3], "z": [1.2]})
>>> arcs, info = render_arcs(s, size=101)
>>> tuple(arcs.shape), bool(info["magnification"][0] > 1)
((1, 3, 101, 101), True)
"""

from lensaudit.lensing.psf import convolve_fft, moffat_kernel
from lensaudit.lensing.render import LensSystems, inject, render_arcs, sample_systems
from lensaudit.lensing.sie import shear_deflection, sie_deflection
from lensaudit.lensing.snr import arc_snr

__all__ = [
    "LensSystems",
    "render_arcs",
    "inject",
    "sample_systems",
    "moffat_kernel",
    "convolve_fft",
    "sie_deflection",
    "shear_deflection",
    "arc_snr",
]
