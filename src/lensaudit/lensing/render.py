"""Lensed-arc rendering and injection, batched over systems.

Coordinates: arcsec on the stamp, x = −(column − c)·pixscale (east/RA to the left, as the DR10 WCS with
CD1_1 < 0), y = (row − c)·pixscale, c = (S−1)/2. Units: nanomaggies per pixel, zero point 22.5.

Sources: an elliptical Sersic (lenstronomy's SERSIC_ELLIPSE convention, R² = q·x′² + y′²/q, b_n = 1.9992n −
0.3271) with total flux 10^(−0.4(m−22.5)) per band; the clumpy model adds N circular Gaussian clumps that
carry ``clump_frac`` of the flux. Ray-shooting on an S×S grid supersampled ``supersample``× per axis: each
sub-pixel samples the source surface brightness at β = θ − α(θ) (surface brightness is conserved), pixels
are sub-pixel means × pixel area. Magnification = lensed flux (before PSF) / unlensed flux.

Noise (``inject``): σ_pix from the host invvar (or 1.4826·MAD of the outer annulus). The arc's own Poisson
noise has variance arc·σ_pix²/S_sky, where S_sky is a typical DECam dark-sky level per pixel (g 22.0, r 21.1,
z 19.9 mag/arcsec²): the effective gain is set so that the sky alone would give the host's σ_pix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lensaudit.lensing.psf import convolve_fft, moffat_kernel
from lensaudit.lensing.sie import shear_deflection, sie_deflection
from lensaudit.lensing.snr import arc_snr

SKY_MAG_ARCSEC2 = {"g": 22.0, "r": 21.1, "i": 20.3, "z": 19.9}


def _t(v, dtype=torch.float64) -> Tensor:
    # np.array copies: inputs may be read-only views (np.broadcast_to), which torch must not alias
    return torch.as_tensor(
        np.array(v, dtype=np.float64) if not isinstance(v, Tensor) else v, dtype=dtype
    ).reshape(-1)


@dataclass
class LensSystems:
    """Parameters of B lens systems, each a tensor of shape (B,) (dict values per band; clumps (B, N))."""

    theta_e: Tensor
    q: Tensor
    phi: Tensor
    gamma1: Tensor
    gamma2: Tensor
    x0: Tensor
    y0: Tensor
    src_mag: dict[str, Tensor]
    src_reff: Tensor
    src_n: Tensor
    src_q: Tensor
    src_phi: Tensor
    src_x: Tensor
    src_y: Tensor
    psf_fwhm: dict[str, Tensor]
    psf_beta: Tensor
    clump_x: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    clump_y: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    clump_sigma: Tensor = field(default_factory=lambda: torch.zeros(0, 0))
    clump_frac: Tensor = field(default_factory=lambda: torch.zeros(0))

    @classmethod
    def make(
        cls,
        theta_e,
        src_mag,
        psf_fwhm,
        q=1.0,
        phi=0.0,
        gamma1=0.0,
        gamma2=0.0,
        x0=0.0,
        y0=0.0,
        src_reff=0.3,
        src_n=1.0,
        src_q=1.0,
        src_phi=0.0,
        src_x=0.05,
        src_y=0.0,
        psf_beta=3.5,
        **clumps,
    ) -> LensSystems:
        te = _t(theta_e)
        b = len(te)

        def full(v):
            v = _t(v)
            return v.expand(b).clone() if len(v) == 1 else v

        out = cls(
            te,
            full(q),
            full(phi),
            full(gamma1),
            full(gamma2),
            full(x0),
            full(y0),
            {k: full(v) for k, v in src_mag.items()},
            full(src_reff),
            full(src_n),
            full(src_q),
            full(src_phi),
            full(src_x),
            full(src_y),
            {k: full(v) for k, v in psf_fwhm.items()},
            full(psf_beta),
        )
        for k, v in clumps.items():
            setattr(out, k, torch.as_tensor(np.asarray(v, float), dtype=torch.float64))
        return out

    def __len__(self) -> int:
        return len(self.theta_e)

    def to(self, device=None, dtype=None) -> LensSystems:
        kw: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = (
                {k: t.to(device=device, dtype=dtype) for k, t in v.items()}
                if isinstance(v, dict)
                else v.to(device=device, dtype=dtype)
            )
        return LensSystems(**kw)

    def subset(self, idx) -> LensSystems:
        kw: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, dict):
                kw[f.name] = {k: t[idx] for k, t in v.items()}
            else:
                kw[f.name] = v[idx] if v.numel() else v
        return LensSystems(**kw)


def sersic_bn(n: Tensor) -> Tensor:
    return (1.9992 * n - 0.3271).clamp_min(1e-5)


def sersic_total(reff: Tensor, n: Tensor) -> Tensor:
    """Total flux of a Sersic with unit surface brightness at R_eff (area-preserving ellipse)."""
    bn = sersic_bn(n)
    return 2 * torch.pi * n * reff**2 * torch.exp(bn) * torch.exp(torch.lgamma(2 * n)) / bn ** (2 * n)


def image_grid(size: int, pixscale: float, supersample: int, dtype, device) -> tuple[Tensor, Tensor]:
    """Sub-pixel centre coordinates (S·ss, S·ss) in arcsec."""
    n = size * supersample
    c = (size - 1) / 2
    g = (torch.arange(n, dtype=dtype, device=device) + 0.5) / supersample - 0.5 - c
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    return -xx * pixscale, yy * pixscale


def source_sb(bx: Tensor, by: Tensor, s: LensSystems, total_flux: Tensor) -> Tensor:
    """Surface brightness (flux/arcsec²) of the sources at source-plane points (B, …); total_flux (B,)."""
    shape = (-1,) + (1,) * (bx.dim() - 1)
    x, y = bx - s.src_x.reshape(shape), by - s.src_y.reshape(shape)
    c, sn = torch.cos(s.src_phi).reshape(shape), torch.sin(s.src_phi).reshape(shape)
    q = s.src_q.reshape(shape).clamp(0.05, 1.0)
    xp, yp = c * x + sn * y, -sn * x + c * y
    r = torch.sqrt(q * xp**2 + yp**2 / q + 1e-20)
    n, reff = s.src_n.reshape(shape), s.src_reff.reshape(shape)
    bn = sersic_bn(n)
    frac_clumps = s.clump_frac.reshape(shape) if s.clump_frac.numel() else torch.zeros_like(n)
    ie = (1 - frac_clumps) * total_flux.reshape(shape) / sersic_total(s.src_reff, s.src_n).reshape(shape)
    sb = ie * torch.exp(-bn * ((r / reff) ** (1 / n) - 1))
    if s.clump_x.numel():
        for k in range(s.clump_x.shape[1]):
            cx, cy = s.clump_x[:, k].reshape(shape), s.clump_y[:, k].reshape(shape)
            sig = s.clump_sigma[:, k].reshape(shape)
            fk = frac_clumps * total_flux.reshape(shape) / s.clump_x.shape[1]
            sb = sb + fk / (2 * torch.pi * sig**2) * torch.exp(
                -((x - cx) ** 2 + (y - cy) ** 2) / (2 * sig**2)
            )
    return sb


def ray_shoot(s: LensSystems, gx: Tensor, gy: Tensor) -> tuple[Tensor, Tensor]:
    """Source-plane positions β = θ − α(θ) for the image grid (B, N, N)."""
    b = len(s)
    x, y = gx.expand(b, *gx.shape), gy.expand(b, *gy.shape)
    ax, ay = sie_deflection(x, y, s.theta_e, s.q, s.phi, s.x0, s.y0)
    sx, sy = shear_deflection(x, y, s.gamma1, s.gamma2, s.x0, s.y0)
    return x - ax - sx, y - ay - sy


def render_arcs(
    systems: LensSystems,
    size: int = 101,
    pixscale: float = 0.262,
    bands: str = "grz",
    supersample: int = 5,
    device=None,
    dtype=torch.float32,
    psf_images: dict[str, Tensor] | None = None,
    suppress_inner: bool = False,
    psf_size: int = 41,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Noiseless lensed arcs (B, nb, S, S) in nanomaggies/pixel, PSF-convolved; info: magnification,
    flux_unlensed (B, nb), flux_lensed (B, nb)."""
    s = systems.to(device=device, dtype=dtype)
    full = size
    # rays are shot only over the region that can hold arcs (θE + source offset + 6 r_eff + 1.5″); the PSF
    # kernel then spreads light into the zero padding, so the stamp is exact up to source light beyond 3″
    reach = (
        float((s.theta_e + torch.hypot(s.x0, s.y0) + torch.hypot(s.src_x, s.src_y) + 6 * s.src_reff).max())
        + 1.5
    )
    size = min(full, 2 * int(np.ceil(reach / pixscale)) + 1)
    gx, gy = image_grid(size, pixscale, supersample, dtype, device)
    bx, by = ray_shoot(s, gx, gy)
    b = len(s)
    if suppress_inner:
        rr = torch.sqrt((gx - s.x0.reshape(-1, 1, 1)) ** 2 + (gy - s.y0.reshape(-1, 1, 1)) ** 2)
        keep = (rr >= 0.5 * s.theta_e.reshape(-1, 1, 1)).to(dtype)
    out, fl, fu = [], [], []
    pix_area = pixscale**2
    for band in bands:
        total = 10 ** (-0.4 * (s.src_mag[band] - 22.5))
        sb = source_sb(bx, by, s, total)
        if suppress_inner:
            sb = sb * keep
        img = sb.reshape(b, size, supersample, size, supersample).mean(dim=(2, 4)) * pix_area
        fl.append(img.sum(dim=(-2, -1)))
        fu.append(total)
        kern = (
            psf_images[band].to(device=device, dtype=dtype)
            if psf_images is not None
            else moffat_kernel(s.psf_fwhm[band], s.psf_beta, pixscale, psf_size, dtype=dtype, device=device)
        )
        if size < full:
            p = (full - size) // 2
            img = torch.nn.functional.pad(img, (p, p, p, p))
        out.append(convolve_fft(img, kern))
    arcs = torch.stack(out, dim=1)
    flux_l, flux_u = torch.stack(fl, dim=1), torch.stack(fu, dim=1)
    return arcs, {
        "magnification": flux_l[:, min(1, len(bands) - 1)] / flux_u[:, min(1, len(bands) - 1)],
        "flux_lensed": flux_l,
        "flux_unlensed": flux_u,
    }


def _outer_mad_sigma(img: np.ndarray) -> np.ndarray:
    s = img.shape[-1]
    c = (s - 1) / 2
    yy, xx = np.mgrid[0:s, 0:s]
    m = np.hypot(xx - c, yy - c) >= 30
    x = img[..., m]
    med = np.nanmedian(x, axis=-1, keepdims=True)
    return 1.4826 * np.nanmedian(np.abs(x - med), axis=-1)


def noise_sigma(host_images: np.ndarray, host_invvar: np.ndarray | None, model: str) -> np.ndarray:
    """Per-pixel σ (B, nb, S, S) of the hosts: from invvar (pixels with invvar=0 use the MAD), or the MAD."""
    mad = _outer_mad_sigma(host_images)[..., None, None] * np.ones_like(host_images)
    if model == "mad" or host_invvar is None:
        return mad
    with np.errstate(divide="ignore"):
        sig = np.where(host_invvar > 0, 1.0 / np.sqrt(np.where(host_invvar > 0, host_invvar, 1.0)), mad)
    return sig


def arc_noise_variance(
    arc: np.ndarray, sigma_pix: np.ndarray, pixscale: float = 0.262, bands: str = "grz"
) -> np.ndarray:
    """Variance (B, nb, S, S) of the noise :func:`inject` adds to an arc (B, nb, S, S) in hosts of per-pixel σ
    ``sigma_pix``: the arc's own Poisson noise, arc·σ_pix²/S_sky per pixel (S_sky: the typical dark-sky level
    per pixel of :data:`SKY_MAG_ARCSEC2`; negative arc values add none)."""
    sky = np.array([10 ** (-0.4 * (SKY_MAG_ARCSEC2[b] - 22.5)) * pixscale**2 for b in bands])[
        None, :, None, None
    ]
    return np.clip(arc, 0, None) * sigma_pix**2 / sky


def inject(
    host_images,
    host_invvar,
    systems: LensSystems,
    rng: int | np.random.Generator = 0,
    noise_model: str = "invvar",
    supersample: int = 5,
    suppress_inner: bool = False,
    pixscale: float = 0.262,
    bands: str = "grz",
    device=None,
) -> tuple[np.ndarray, dict]:
    """Hosts (B, nb, S, S) nanomaggies (+ invvar) → injected stamps and per-system diagnostics:
    arc_snr (r band, see snr.py), magnification, noiseless_arc, sigma_pix_r."""
    host = np.asarray(host_images, np.float32)
    size = host.shape[-1]
    arcs, info = render_arcs(
        systems, size, pixscale, bands, supersample, device=device, suppress_inner=suppress_inner
    )
    arc = arcs.cpu().numpy().astype(np.float64)
    sig = noise_sigma(host, None if host_invvar is None else np.asarray(host_invvar), noise_model)
    var_add = arc_noise_variance(arc, sig, pixscale, bands)
    g = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    noise = g.standard_normal(arc.shape) * np.sqrt(var_add)
    stamps = (host + arc + noise).astype(np.float32)
    ri = min(1, len(bands) - 1)
    sig_r = np.nanmedian(sig[:, ri].reshape(len(arc), -1), axis=1)
    snr = arc_snr(
        arc[:, ri],
        sig_r,
        systems.theta_e.numpy(),
        systems.psf_fwhm[bands[ri]].numpy(),
        pixscale,
        x0_arcsec=-systems.x0.numpy(),
        y0_arcsec=systems.y0.numpy(),
    )
    return stamps, {
        "arc_snr": snr,
        "magnification": info["magnification"].cpu().numpy(),
        "noiseless_arc": arc.astype(np.float32),
        "added_noise_sigma": np.sqrt(var_add).astype(np.float32),
        "sigma_pix_r": sig_r,
    }


def sample_systems(
    n: int,
    theta_e,
    prior: dict,
    rng: np.random.Generator,
    psf_fwhm: dict,
    psf_beta=3.5,
    source_model="sersic",
) -> LensSystems:
    """Draw lens and source parameters from a prior. ``prior`` keys (ranges): src_mag_r, magnification,
    src_reff, src_n, src_q, lens_q, shear_max; colours g−r ~ N(0.4, 0.15), r−z ~ N(0.3, 0.15) (blue
    star-forming sources). ``source_model`` is "sersic" or "clumpy", or an array with one per system (clumpy
    systems get 4 Gaussian clumps carrying 20–50% of the flux; Sersic systems in a mixed batch get none).
    The source offset β = 2θE/μ_target (the SIS relation for a point source) places it
    inside the caustic region with a target total magnification drawn uniformly from the prior range."""
    te = np.broadcast_to(np.asarray(theta_e, float), (n,)).copy()
    u = lambda key: rng.uniform(prior[key][0], prior[key][1], size=n)  # noqa: E731
    mu = u("magnification")
    beta = 2 * te / mu
    ang = rng.uniform(0, 2 * np.pi, n)
    mag_r = u("src_mag_r")
    g_r = np.clip(rng.normal(0.4, 0.15, n), -0.1, 1.2)
    r_z = np.clip(rng.normal(0.3, 0.15, n), -0.2, 1.0)
    gam = rng.uniform(0, prior.get("shear_max", 0.05), n)
    gang = rng.uniform(0, np.pi, n)
    kw = {}
    clumpy = np.broadcast_to(np.asarray(source_model), (n,)) == "clumpy"  # one model, or one per system
    if clumpy.any():
        k = 4
        reff = u("src_reff")
        kw = dict(
            clump_x=beta[:, None] * np.cos(ang)[:, None] + rng.normal(0, 1, (n, k)) * reff[:, None] * 0.7,
            clump_y=beta[:, None] * np.sin(ang)[:, None] + rng.normal(0, 1, (n, k)) * reff[:, None] * 0.7,
            clump_sigma=rng.uniform(0.02, 0.06, (n, k)),
            clump_frac=np.where(clumpy, rng.uniform(0.2, 0.5, n), 0.0),
        )
        src_reff = reff
    else:
        src_reff = u("src_reff")
    return LensSystems.make(
        theta_e=te,
        q=u("lens_q"),
        phi=rng.uniform(0, np.pi, n),
        gamma1=gam * np.cos(2 * gang),
        gamma2=gam * np.sin(2 * gang),
        src_mag={"g": mag_r + g_r, "r": mag_r, "z": mag_r - r_z},
        src_reff=src_reff,
        src_n=u("src_n"),
        src_q=u("src_q"),
        src_phi=rng.uniform(0, np.pi, n),
        src_x=beta * np.cos(ang),
        src_y=beta * np.sin(ang),
        psf_fwhm={b: np.broadcast_to(np.asarray(v, float), (n,)) for b, v in psf_fwhm.items()},
        psf_beta=np.broadcast_to(np.asarray(psf_beta, float), (n,)),
        **kw,
    )
