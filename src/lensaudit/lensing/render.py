"""Lensed-arc rendering and injection, batched over systems.

Coordinates: arcsec on the stamp, x = −(column − c)·pixscale (east/RA to the left, as the DR10 WCS with
CD1_1 < 0), y = (row − c)·pixscale, c = (S−1)/2. Units: nanomaggies per pixel, zero point 22.5.

Sources: an elliptical Sersic (lenstronomy's SERSIC_ELLIPSE convention, R² = q·x′² + y′²/q, b_n = 1.9992n −
0.3271) with total flux 10^(−0.4(m−22.5)) per band; the clumpy model adds N circular Gaussian clumps that
carry ``clump_frac`` of the flux. Rays sample the source surface brightness at β = θ − α(θ) (surface
brightness is conserved); by default adaptively to a declared accuracy, or on a fixed ``supersample``² grid
per pixel (``integrate.py``); the PSF is applied on 3×3 sub-cells per pixel (``psf.convolve_subcells``).
Magnification = lensed flux (before PSF) / unlensed flux.

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

from lensaudit.lensing.psf import convolve_fft, convolve_subcells
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


def sersic_log_norm(reff: Tensor, n: Tensor) -> Tensor:
    """log of the central surface brightness of a unit-flux Sersic, log I0 = log I_e + b_n, computed in
    float64 (per system, cheap): log(1 / (2π n R_e² Γ(2n))) + 2n·log b_n. With it the profile is
    I0·exp(−b_n (R/R_e)^(1/n)), one exponential that neither overflows nor loses precision in float32 at
    large n (I_e·e^(b_n) alone is ~1e7 at n = 8)."""
    n64, r64 = n.to(torch.float64), reff.to(torch.float64)
    bn = sersic_bn(n64)
    return (-torch.log(2 * torch.pi * n64 * r64**2) - torch.lgamma(2 * n64) + 2 * n64 * torch.log(bn)).to(
        n.dtype
    )


def image_grid(size: int, pixscale: float, supersample: int, dtype, device) -> tuple[Tensor, Tensor]:
    """Sub-pixel centre coordinates (S·ss, S·ss) in arcsec."""
    n = size * supersample
    c = (size - 1) / 2
    g = (torch.arange(n, dtype=dtype, device=device) + 0.5) / supersample - 0.5 - c
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    return -xx * pixscale, yy * pixscale


def source_components(bx: Tensor, by: Tensor, s: LensSystems) -> Tensor:
    """Unit-flux surface brightness (flux/arcsec²) of each source component at source-plane points (M, …)
    for systems ``s`` of length M: (C, M, …), C = 1 (the Sersic) or 2 (Sersic, the clumps together).
    The source is Σ_c w_c·component_c with w = (1 − clump_frac, clump_frac) times the band's flux, so one
    evaluation serves every band (:func:`component_weights`)."""
    shape = (-1,) + (1,) * (bx.dim() - 1)
    x, y = bx - s.src_x.reshape(shape), by - s.src_y.reshape(shape)
    c, sn = torch.cos(s.src_phi).reshape(shape), torch.sin(s.src_phi).reshape(shape)
    q = s.src_q.reshape(shape).clamp(0.05, 1.0)
    xp, yp = c * x + sn * y, -sn * x + c * y
    r2 = (q * xp**2 + yp**2 / q).clamp_min(1e-30)
    n, reff = s.src_n.reshape(shape), s.src_reff.reshape(shape)
    # I0·exp(−b_n (R/R_e)^(1/n)); (R/R_e)^(1/n) = exp(log(R²/R_e²)/(2n)): no overflow at any n
    u = torch.exp(torch.log(r2 / reff**2) / (2 * n))
    comps = [torch.exp(sersic_log_norm(s.src_reff, s.src_n).reshape(shape) - sersic_bn(n) * u)]
    if s.clump_x.numel():
        k = s.clump_x.shape[1]
        cl = torch.zeros_like(comps[0])
        for j in range(k):
            cx, cy = s.clump_x[:, j].reshape(shape), s.clump_y[:, j].reshape(shape)
            sig2 = s.clump_sigma[:, j].reshape(shape) ** 2
            cl = cl + torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sig2)) / (2 * torch.pi * sig2 * k)
        comps.append(cl)
    return torch.stack(comps)


def component_weights(s: LensSystems, bands: str) -> Tensor:
    """(B, nb, C) flux of each component in each band (nanomaggies): the band's total flux
    10^(−0.4(m−22.5)) split (1 − clump_frac, clump_frac)."""
    total = torch.stack([10 ** (-0.4 * (s.src_mag[b].to(torch.float64) - 22.5)) for b in bands], dim=1)
    if not s.clump_x.numel():
        return total[:, :, None]
    f = (s.clump_frac.to(torch.float64) if s.clump_frac.numel() else torch.zeros(len(s)))[:, None]
    return torch.stack([total * (1 - f), total * f], dim=2)


def source_sb(bx: Tensor, by: Tensor, s: LensSystems, total_flux: Tensor) -> Tensor:
    """Surface brightness (flux/arcsec²) of the sources at source-plane points (B, …); total_flux (B,)."""
    comps = source_components(bx, by, s)
    shape = (-1,) + (1,) * (bx.dim() - 1)
    f = s.clump_frac.reshape(shape) if s.clump_frac.numel() else torch.zeros_like(s.src_n).reshape(shape)
    sb = comps[0] * (1 - f) if len(comps) == 2 else comps[0]
    if len(comps) == 2:
        sb = sb + comps[1] * f
    return sb * total_flux.reshape(shape)


def ray_shoot(s: LensSystems, gx: Tensor, gy: Tensor, per_system: bool = False) -> tuple[Tensor, Tensor]:
    """Source-plane positions β = θ − α(θ): for one image-plane grid (…) shared by all B systems, or for
    points (B, …) of each system (``per_system``)."""
    b = len(s)
    x, y = (gx, gy) if per_system else (gx.expand(b, *gx.shape), gy.expand(b, *gy.shape))
    ax, ay = sie_deflection(x, y, s.theta_e, s.q, s.phi, s.x0, s.y0)
    sx, sy = shear_deflection(x, y, s.gamma1, s.gamma2, s.x0, s.y0)
    return x - ax - sx, y - ay - sy


def _place(img: Tensor, full: int) -> Tensor:
    """Centre images (…, L, L) on a full×full stamp: zero-pad or crop (L and full odd)."""
    size = img.shape[-1]
    if size >= full:
        a = (size - full) // 2
        return img[..., a : a + full, a : a + full]
    p = (full - size) // 2
    return torch.nn.functional.pad(img, (p, p, p, p))


def render_arcs(
    systems: LensSystems,
    size: int = 101,
    pixscale: float = 0.262,
    bands: str = "grz",
    supersample: int | None = None,
    device=None,
    dtype=torch.float32,
    psf_images: dict[str, Tensor] | None = None,
    suppress_inner: bool = False,
    psf_size: int = 41,
    accuracy: float = 1e-3,
    convolve: bool = True,
    max_level: int = 6,
    sb_dtype=None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Noiseless lensed arcs (B, nb, S, S) in nanomaggies/pixel, PSF-convolved (``convolve=False``: the
    pixel-integrated arcs before the PSF).

    Default: adaptive supersampling to ``accuracy`` (module ``integrate``: per-pixel error ≤ accuracy × the
    system's peak pixel). ``supersample=k``: fixed k×k rays per pixel. The PSF is the Moffat of
    ``psf_fwhm``/``psf_beta`` applied on the 3×3 sub-cell grid (pixel response once); ``psf_images`` instead
    convolves the pixel-integrated image with the given pixel kernels (B, K, K) (pass PSFs sampled at pixel
    centres, not pixel-integrated ones, or the pixel response enters twice).

    info: magnification, flux_unlensed (B, nb), flux_lensed (B, nb) (before the PSF, inside the stamp's ray
    region), rays_per_pixel, supersample_max, refined_pixels (pixels refined beyond 3×3), unconverged_pixels,
    region (side of the ray-shot region, pixels). ``sb_dtype`` (e.g. torch.bfloat16 on a GPU) evaluates the
    source profile in that dtype (geometry, sums and FFTs stay in ``dtype``)."""
    from lensaudit.lensing.integrate import region_sizes

    s = systems.to(device=device, dtype=dtype)
    ms = region_sizes(s, size, pixscale, light_eps=accuracy / 4 if supersample is None else 2.5e-4)
    arcs = torch.zeros(len(s), len(bands), size, size, dtype=dtype, device=s.theta_e.device)
    parts: list[tuple[Tensor, dict[str, Tensor]]] = []
    for m in np.unique(ms):  # systems that share a region size are rendered together
        idx = torch.as_tensor(np.flatnonzero(ms == m), device=arcs.device)
        a, inf = _render_region(
            s.subset(idx), int(m), size, pixscale, bands, supersample, psf_images, suppress_inner,
            psf_size, accuracy, convolve, max_level, sb_dtype,
        )  # fmt: skip
        arcs[idx] = a.to(dtype)
        parts.append((idx, inf))
    info: dict[str, Tensor] = {}
    for idx, inf in parts:
        for k, v in inf.items():
            if k not in info:
                info[k] = torch.zeros((len(s),) + v.shape[1:], dtype=v.dtype, device=v.device)
            info[k][idx.to(v.device)] = v
    ri = min(1, len(bands) - 1)
    info["magnification"] = info["flux_lensed"][:, ri] / info["flux_unlensed"][:, ri]
    return arcs, {k: v.to(dtype) if v.is_floating_point() else v for k, v in info.items()}


def _render_region(
    s, m, size, pixscale, bands, supersample, psf_images, suppress_inner, psf_size, accuracy, convolve,
    max_level, sb_dtype,
):  # fmt: skip
    from lensaudit.lensing.integrate import adaptive_subcells, fixed_subcells

    if supersample is None:
        sub, stats = adaptive_subcells(s, m, pixscale, accuracy, max_level, suppress_inner, sb_dtype)
    else:
        sub, stats = fixed_subcells(s, m, pixscale, int(supersample), suppress_inner, sb_dtype)
    w = component_weights(s, bands).to(device=sub.device)  # (B, nb, C) float64
    comp_flux = sub.sum(dim=(2, 3, 4, 5)).to(torch.float64)  # (C, B)
    flux_l = (w * comp_flux.T[:, None, :]).sum(dim=2)
    if not convolve or psf_images is not None:
        pix = sub.sum(dim=(4, 5))  # (C, B, m, m)
        wt = w.permute(2, 0, 1).to(pix.dtype)  # (C, B, nb)
        img = (pix[:, :, None] * wt[..., None, None]).sum(dim=0)  # (B, nb, m, m)
        if convolve and psf_images is not None:
            out = []
            for j, band in enumerate(bands):
                kern = psf_images[band].to(device=img.device, dtype=img.dtype)
                k = kern.shape[-1]
                out.append(convolve_fft(torch.nn.functional.pad(img[:, j], (k // 2,) * 4), kern))
            img = torch.stack(out, dim=1)
        arcs = _place(img, size)
    else:
        fwhm = {b: s.psf_fwhm[b] for b in bands}
        arcs = _place(convolve_subcells(sub, w, fwhm, s.psf_beta, bands, pixscale, psf_size), size)
    stats = {k: v.to(torch.float64) for k, v in stats.items()}
    return arcs, {
        "flux_lensed": flux_l.cpu(),
        "flux_unlensed": w.sum(dim=2).cpu(),
        **stats,
        "region": torch.full((len(s),), float(m), dtype=torch.float64),
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
    supersample: int | None = None,
    suppress_inner: bool = False,
    pixscale: float = 0.262,
    bands: str = "grz",
    device=None,
    accuracy: float = 1e-3,
) -> tuple[np.ndarray, dict]:
    """Hosts (B, nb, S, S) nanomaggies (+ invvar) → injected stamps and per-system diagnostics:
    arc_snr (r band, see snr.py), magnification, noiseless_arc, sigma_pix_r, and the supersampling used
    (rays_per_pixel, supersample_max, refined_pixels). Default: adaptive supersampling to ``accuracy``;
    ``supersample=k``: fixed."""
    host = np.asarray(host_images, np.float32)
    size = host.shape[-1]
    arcs, info = render_arcs(
        systems, size, pixscale, bands, supersample, device, suppress_inner=suppress_inner, accuracy=accuracy
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
        **{k: info[k].cpu().numpy() for k in ("rays_per_pixel", "supersample_max", "refined_pixels")},
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
