"""Pixel integration of the lensed source: fixed or adaptive supersampling onto 3×3 sub-cells per pixel.

Both modes return the flux of every sub-cell (1/3 pixel on a side) of an m×m region centred on the stamp,
per source component and for unit source flux: (C, B, m, m, 3, 3). The sub-cells carry the light's position
inside the pixel to the PSF convolution (``psf.convolve_subcells``), which convolves on the sub-cell grid and
then sums the sub-cells, so the pixel response is applied exactly once.

Fixed mode (``supersample=k``): a regular k×k grid of rays per pixel; each ray's flux goes to the sub-cell
that contains it.

Adaptive mode (``accuracy=a``): level 1 shoots 3×3 rays per pixel (one per sub-cell) over the whole region
and estimates each pixel's error from the second differences of the surface brightness in its 3×3 block,
E ≈ A_pix·(⟨|Δ²_x|⟩ + ⟨|Δ²_y|⟩)/24 (the midpoint rule's leading term; absolute values, so opposite curvatures
cannot cancel). Error control is greedy and per system: the pixels with the smallest errors stop while their
summed error stays within the budget a/2 × the system's lensed flux (each level may spend half of what is
left, the last level all of it) and each is within a × the system's peak pixel; the others are re-shot with
6, 12, 24, 48, 96 rays per axis. Each level doubles the rays per axis, so the sub-cell fluxes are
Romberg-extrapolated (raw + (raw − raw_prev)/3), and the change between successive extrapolations (at level 2
the raw change / 3) is the next error estimate — valid also at cusps, where second differences do not shrink.
Pixels still over their share at the last level are counted in ``unconverged_pixels``.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
from scipy.special import gammaincinv
from torch import Tensor

SUB = 3  # sub-cells per pixel axis handed to the PSF convolution
CHUNK = 1 << 21  # rays per refinement chunk (memory bound)
SAFETY = 1.0  # multiplies the midpoint-rule error estimate


def region_sizes(s, full: int, pixscale: float, light_eps: float = 2.5e-4, quantum: int = 4) -> np.ndarray:
    """Odd side (pixels, ≤ ``full``) of the centred region that holds each system's arcs (B,): θE + lens
    offset + source offset + the radius enclosing 1 − ``light_eps`` of the source's light (major axis) +
    1.5″, the half-side rounded up to a multiple of ``quantum`` pixels so that systems share regions."""
    f = lambda v: v.detach().cpu().double().numpy()  # noqa: E731
    n, reff, q = f(s.src_n), f(s.src_reff), f(s.src_q).clip(0.05, 1.0)
    bn = np.clip(1.9992 * n - 0.3271, 1e-5, None)
    r_src = reff * (gammaincinv(2 * n, 1 - light_eps) / bn) ** n / np.sqrt(q)
    if s.clump_x.numel():
        cl = np.hypot(f(s.clump_x), f(s.clump_y)).max(axis=1)
        r_src = np.maximum(r_src, cl + 5 * f(s.clump_sigma).max(axis=1))
    reach = f(s.theta_e) + np.hypot(f(s.x0), f(s.y0)) + np.hypot(f(s.src_x), f(s.src_y)) + r_src + 1.5
    half = np.ceil(np.ceil(reach / pixscale) / quantum) * quantum
    return np.minimum(full, 2 * half.astype(int) + 1)


def _offsets(k: int, dtype, device) -> Tensor:
    """Ray offsets inside a pixel (pixel units, centre 0) for k rays per axis."""
    return (torch.arange(k, dtype=dtype, device=device) + 0.5) / k - 0.5


def _shoot_eager(s, x: Tensor, y: Tensor, per_system: bool, inner: bool, sb_dtype=None) -> Tensor:
    """Unit-flux component surface brightness (C, M, …) at image-plane points (arcsec); ``sb_dtype`` (e.g.
    torch.bfloat16 on a GPU): the source profile is evaluated in that dtype from the source-plane positions
    computed in the working dtype, and returned in the working dtype."""
    from lensaudit.lensing.render import ray_shoot, source_components

    bx, by = ray_shoot(s, x, y, per_system=per_system)
    if sb_dtype is not None and sb_dtype != bx.dtype:
        # positions relative to the source centre in the working dtype first: bf16 keeps ~3 significant
        # digits, enough for offsets of a fraction of an arcsec, not for absolute positions of several
        shape = (-1,) + (1,) * (bx.dim() - 1)
        rel = dataclasses.replace(
            s,
            src_x=torch.zeros_like(s.src_x),
            src_y=torch.zeros_like(s.src_y),
            clump_x=s.clump_x - s.src_x[:, None] if s.clump_x.numel() else s.clump_x,
            clump_y=s.clump_y - s.src_y[:, None] if s.clump_y.numel() else s.clump_y,
        )
        dx, dy = bx - s.src_x.reshape(shape), by - s.src_y.reshape(shape)
        r16 = rel.to(dtype=sb_dtype)
        comps = source_components(dx.to(sb_dtype), dy.to(sb_dtype), r16).to(bx.dtype)
        # the Sersic normalisation (a per-system constant) rounded to bf16 would bias every system's flux by
        # up to ~1%: replace it by the working-dtype value
        from lensaudit.lensing.render import sersic_log_norm

        fix = sersic_log_norm(s.src_reff, s.src_n) - sersic_log_norm(r16.src_reff, r16.src_n).to(bx.dtype)
        comps[0] = comps[0] * torch.exp(fix).reshape(shape)
    else:
        comps = source_components(bx, by, s)
    if inner:  # the central image masked (|θ − θ0| < θE/2), as in render_arcs(suppress_inner=True)
        shape = (-1,) + (1,) * (bx.dim() - 1)
        xx, yy = (x, y) if per_system else (x.expand(bx.shape), y.expand(by.shape))
        rr = torch.hypot(xx - s.x0.reshape(shape), yy - s.y0.reshape(shape))
        comps = comps * (rr >= 0.5 * s.theta_e.reshape(shape)).to(comps.dtype)
    return comps


# The ray-shooting hot path (SIE + shear deflection, Sersic and clumps) is ~40 elementwise torch ops.
# torch.compile can fuse them into one loop: COMPILE = "auto" compiles calls of ≥ COMPILE_MIN_RAYS rays
# (compilation costs ~20–40 s once per process and variant), "always" every call, "never" none. Measured on
# this project's 2-core machine (benchmarks/lensing.py) it speeds the fixed-supersampling mode ~1.5× but not
# the default adaptive mode (whose time is in the FFTs, the selection and small refinement batches), so the
# default is "never". Any failure to compile or run the compiled function falls back to the eager function,
# once and for all, with a warning (tests/lensing).
COMPILE = "never"
COMPILE_MIN_RAYS = 1 << 16
_compiled: dict[str, object] = {}


def _shoot(s, x: Tensor, y: Tensor, per_system: bool, inner: bool, sb_dtype=None) -> Tensor:
    n = x.numel() * (1 if per_system else len(s))
    small = n < COMPILE_MIN_RAYS or len(s) < 2  # a batch of 1 would compile a specialised variant
    if COMPILE == "never" or (COMPILE == "auto" and small) or _compiled.get("failed") or not len(s):
        return _shoot_eager(s, x, y, per_system, inner, sb_dtype)
    try:
        fn = _compiled.get("fn")
        if fn is None:
            fn = _compiled["fn"] = torch.compile(_shoot_eager, dynamic=True)
        return fn(s, x, y, per_system, inner, sb_dtype)  # type: ignore[operator]
    except Exception as e:  # noqa: BLE001 - no compiler, unsupported backend: the eager path is exact
        msg = f"torch.compile of the ray-shooting path failed ({type(e).__name__}: {e}); using eager"
        warnings.warn(msg, stacklevel=2)
        _compiled["failed"] = True
        return _shoot_eager(s, x, y, per_system, inner, sb_dtype)


def _combined(comps: Tensor, frac: Tensor) -> Tensor:
    """Unit-flux total surface brightness from the components (C, M, …) and clump fractions (M,)."""
    if comps.shape[0] == 1:
        return comps[0]
    f = frac.reshape((-1,) + (1,) * (comps.dim() - 2))
    return comps[0] * (1 - f) + comps[1] * f


def _frac(s) -> Tensor:
    return s.clump_frac if s.clump_frac.numel() else torch.zeros_like(s.src_n)


def _error(sb: Tensor, area: float) -> Tensor:
    """Midpoint-rule error estimate of the pixel flux from its k×k rays (M, k, k), k a multiple of 3."""
    m, k = sb.shape[0], sb.shape[-1]
    t = sb.reshape(m, k // 3, 3, k // 3, 3)
    dxx = (t[..., 0] - 2 * t[..., 1] + t[..., 2]).abs().mean(dim=(1, 2, 3))
    dyy = (t[:, :, 0] - 2 * t[:, :, 1] + t[:, :, 2]).abs().mean(dim=(1, 2, 3))
    return area * (dxx + dyy) * SAFETY / 24


def _select(sys_of: Tensor, err: Tensor, tol: Tensor, budget: Tensor) -> tuple[Tensor, Tensor]:
    """Greedy error control over pixels of systems ``sys_of`` with error estimates ``err``: per system, the
    pixels with the smallest errors stop while their summed error stays within ``budget`` (B,) and each is
    within ``tol`` (B,); returns the positions of the others (to refine) and the error spent per system."""
    order = torch.argsort(err)
    order = order[torch.argsort(sys_of[order], stable=True)]
    e, sy = err[order], sys_of[order]
    cs = e.cumsum(0)
    start = torch.zeros_like(budget).scatter_reduce(0, sy, cs - e, reduce="amin", include_self=False)
    stop = ((cs - start[sy]) <= budget[sy]) & (e <= tol[sy])
    spent = torch.zeros_like(budget).index_add_(0, sy[stop], e[stop])
    return order[~stop], spent


def fixed_subcells(
    s, m: int, pixscale: float, k: int, inner: bool = False, sb_dtype=None
) -> tuple[Tensor, dict]:
    """Sub-cell fluxes (C, B, m, m, 3, 3) from a regular k×k ray grid per pixel."""
    from lensaudit.lensing.render import image_grid

    dtype, device = s.theta_e.dtype, s.theta_e.device
    gx, gy = image_grid(m, pixscale, k, dtype, device)
    comps = _shoot(s, gx, gy, False, inner, sb_dtype)  # (C, B, mk, mk)
    c, b = comps.shape[:2]
    u = torch.arange(k, device=device)
    a = (
        torch.div((u * 2 + 1) * SUB, 2 * k, rounding_mode="floor")[None]
        == torch.arange(SUB, device=device)[:, None]
    )
    a = a.to(dtype) / k  # (3, k): ray u belongs to sub-cell a, weight 1/k per axis
    t = comps.reshape(c, b, m, k, m, k)
    sub = torch.einsum("cbiujv,au,dv->cbijad", t, a, a) * pixscale**2
    n = len(s)
    info = {
        "rays_per_pixel": torch.full((n,), float(k * k)),
        "supersample_max": torch.full((n,), float(k)),
        "refined_pixels": torch.zeros(n),
    }
    return sub, info


def adaptive_subcells(
    s, m: int, pixscale: float, accuracy: float, max_level: int = 6, inner: bool = False, sb_dtype=None
) -> tuple[Tensor, dict]:
    """Sub-cell fluxes (C, B, m, m, 3, 3) by adaptive supersampling to ``accuracy`` (see module doc)."""
    from lensaudit.lensing.render import image_grid

    dtype, device = s.theta_e.dtype, s.theta_e.device
    area = pixscale**2
    b = len(s)
    gx, gy = image_grid(m, pixscale, SUB, dtype, device)
    comps = _shoot(s, gx, gy, False, inner, sb_dtype)  # (C, B, 3m, 3m), one ray per sub-cell
    c = comps.shape[0]
    # per-pixel layout (C, B·m·m, 3, 3)
    comps = comps.reshape(c, b, m, SUB, m, SUB).permute(0, 1, 2, 4, 3, 5).reshape(c, b * m * m, SUB, SUB)
    sb = _combined(comps, _frac(s).repeat_interleave(m * m))
    sub = comps * (area / SUB**2)  # (C, B·m·m, 3, 3) sub-cell fluxes
    pix_flux = sb.mean(dim=(1, 2)).reshape(b, m * m) * area
    tiny = torch.finfo(dtype).tiny
    tol = (accuracy * pix_flux.amax(dim=1)).clamp_min(tiny)  # (B,) per-pixel bound
    budget = (0.5 * accuracy * pix_flux.sum(dim=1)).clamp_min(tiny)  # (B,) bound on the summed error
    err = _error(sb, area) * SAFETY
    flat = torch.arange(b * m * m, device=device)
    # each level may spend half of the budget that is left, so that later levels keep room to stop pixels
    pos, spent = _select(torch.div(flat, m * m, rounding_mode="floor"), err, tol, budget / 2)
    todo = flat[pos]
    raw_prev, ex_prev = sub[:, todo], None
    rays = torch.full((b,), float(m * m * SUB * SUB), dtype=torch.float64)
    kmax = torch.full((b,), float(SUB), dtype=torch.float64)
    refined = torch.zeros(b, dtype=torch.float64)
    cpix = (m - 1) / 2
    for level in range(2, max_level + 1):
        if not len(todo):
            break
        k = SUB * 2 ** (level - 1)  # 6, 12, 24, 48, 96 rays per axis: the midpoint error falls ~4× a level
        off = _offsets(k, dtype, device)
        bi = torch.div(todo, m * m, rounding_mode="floor")
        row = torch.div(todo - bi * m * m, m, rounding_mode="floor")
        col = todo - bi * m * m - row * m
        cnt = torch.bincount(bi, minlength=b).to(torch.float64).cpu()
        rays += cnt * k * k
        kmax = torch.where(cnt > 0, torch.tensor(float(k), dtype=torch.float64), kmax)
        if level == 2:
            refined = cnt.clone()
        raws, exs, errs = [], [], []
        step = max(1, CHUNK // (k * k))
        for i0 in range(0, len(todo), step):
            sl = slice(i0, i0 + step)
            ss = s.subset(bi[sl])
            y = (row[sl].to(dtype)[:, None, None] - cpix + off[None, :, None]) * pixscale
            x = -(col[sl].to(dtype)[:, None, None] - cpix + off[None, None, :]) * pixscale
            y, x = torch.broadcast_tensors(y, x)
            cm = _shoot(ss, x, y, True, inner, sb_dtype)  # (C, M, k, k)
            q = k // SUB
            raw = cm.reshape(c, -1, SUB, q, SUB, q).mean(dim=(3, 5)) * (area / SUB**2)
            # Romberg: twice the rays per axis cut the midpoint error ~4×, so ex = raw + (raw − raw_prev)/3
            # cancels its leading term. What is left is estimated by the change between successive
            # extrapolations (at level 2 by the raw change / 3, the error of raw itself) — valid also at
            # cusps, where second differences are not
            rp = raw_prev[:, sl]
            ex = raw + (raw - rp) / 3
            d = (raw - rp) / 3 if ex_prev is None else ex - ex_prev[:, sl]
            errs.append(_combined(d.sum(dim=(2, 3)), _frac(ss)).abs())
            raws.append(raw)
            exs.append(ex)
            sub[:, todo[sl]] = ex
        left = (budget - spent) * (1.0 if level == max_level else 0.5)
        pos, spent_l = _select(bi, torch.cat(errs), tol, left)
        spent = spent + spent_l
        todo, raw_prev, ex_prev = todo[pos], torch.cat(raws, dim=1)[:, pos], torch.cat(exs, dim=1)[:, pos]
    info = {
        "rays_per_pixel": (rays / (m * m)).to(torch.float32),
        "supersample_max": kmax.to(torch.float32),
        "refined_pixels": refined.to(torch.float32),
        "unconverged_pixels": torch.bincount(torch.div(todo, m * m, rounding_mode="floor"), minlength=b)
        .to(torch.float32)
        .cpu(),
    }
    return sub.reshape(c, b, m, m, SUB, SUB), info
