"""Multiple images of a point source behind an SIE + external shear: positions and signed magnifications.

The lens equation β = θ − α(θ) is solved for the source centre of each system: the image plane around the
lens is sampled on a grid (``n_grid``² points over ±(2θE + |β| + 0.5″)), the local minima of |θ − α(θ) − β|
are the starting points, and Newton's method with the lens map's Jacobian A = ∂β/∂θ (central differences)
refines them to |Δβ| < ``tol`` (arcsec). Converged roots closer than 10⁻⁴″ are merged; the singular centre of
the isothermal profile (where the central image is infinitely demagnified) is excluded. The magnification of
an image is 1/det A, negative for saddle-point images.

Checked against the analytic SIS (images at β ± θE with μ = 1 ± θE/β) and lenstronomy's
``LensEquationSolver`` (``tests/lensing/test_images.py``).

>>> import numpy as np
>>> x, y, mu = image_positions(np.array([1.0]), np.array([1.0]), np.array([0.0]), np.array([0.0]),
...                            np.array([0.0]), np.array([0.2]), np.array([0.0]))
>>> np.sort(x[0][np.isfinite(x[0])]).round(4).tolist(), np.sort(mu[0][np.isfinite(mu[0])]).round(3).tolist()
([-0.8, 1.2], [-4.0, 6.0])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lensaudit.lensing.sie import shear_deflection, sie_deflection

#: the most images an SIE + shear makes of a point source (the singular centre excluded): 4
MAX_IMAGES = 4


def _source_plane(x, y, te, q, phi, g1, g2):
    ax, ay = sie_deflection(x, y, te, q, phi)
    sx, sy = shear_deflection(x, y, g1, g2)
    return x - ax - sx, y - ay - sy


def _jacobian(px, py, p, h: float = 1e-6):
    """A = ∂β/∂θ of the lens map by central differences: (a11, a12, a21, a22) = (∂βx/∂x, ∂βx/∂y, ∂βy/∂x,
    ∂βy/∂y)."""
    xp, xm = _source_plane(px + h, py, *p), _source_plane(px - h, py, *p)
    yp, ym = _source_plane(px, py + h, *p), _source_plane(px, py - h, *p)
    return (
        (xp[0] - xm[0]) / (2 * h),
        (yp[0] - ym[0]) / (2 * h),
        (xp[1] - xm[1]) / (2 * h),
        (yp[1] - ym[1]) / (2 * h),
    )


def image_positions(
    theta_e: np.ndarray,
    q: np.ndarray,
    phi: np.ndarray,
    gamma1: np.ndarray,
    gamma2: np.ndarray,
    src_x: np.ndarray,
    src_y: np.ndarray,
    n_grid: int = 81,
    tol: float = 1e-6,
    iterations: int = 30,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image positions (arcsec, relative to the lens centre) and signed magnifications of B point sources.

    Returns (x, y, mu), each (B, 4), ordered by decreasing |μ| and NaN-padded where a system has fewer images.
    """
    t = lambda v: torch.as_tensor(np.asarray(v, float), dtype=torch.float64).reshape(-1)  # noqa: E731
    te, qq, ph, g1, g2, bx, by = (t(v) for v in (theta_e, q, phi, gamma1, gamma2, src_x, src_y))
    b = len(te)
    out = np.full((3, b, MAX_IMAGES), np.nan)
    if b == 0:
        return out[0], out[1], out[2]
    half = 2 * te + torch.hypot(bx, by) + 0.5
    u = torch.linspace(-1, 1, n_grid, dtype=torch.float64)
    gy, gx = torch.meshgrid(u, u, indexing="ij")
    x, y = gx[None] * half[:, None, None], gy[None] * half[:, None, None]
    sx, sy = _source_plane(x, y, te, qq, ph, g1, g2)
    d = (sx - bx[:, None, None]) ** 2 + (sy - by[:, None, None]) ** 2
    is_min = F.max_pool2d(-d[:, None], 3, stride=1, padding=1)[:, 0] == -d
    is_min[:, [0, -1], :] = False
    is_min[:, :, [0, -1]] = False
    k, i, j = torch.nonzero(is_min, as_tuple=True)
    px, py = x[k, i, j], y[k, i, j]
    p = (te[k], qq[k], ph[k], g1[k], g2[k])
    for _ in range(iterations):
        fx, fy = _source_plane(px, py, *p)
        rx, ry = bx[k] - fx, by[k] - fy
        a11, a12, a21, a22 = _jacobian(px, py, p)
        det = a11 * a22 - a12 * a21
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        dx, dy = (a22 * rx - a12 * ry) / det, (-a21 * rx + a11 * ry) / det
        step = torch.hypot(dx, dy).clamp_min(1e-300)
        limit = 0.25 * te[k]  # damped: never jump across the lens
        scale = torch.clamp(limit / step, max=1.0)
        px, py = px + dx * scale, py + dy * scale
        if bool((torch.hypot(dx, dy) < 1e-3 * tol).all()):  # quadratic convergence: every root is settled
            break
    fx, fy = _source_plane(px, py, *p)
    resid = torch.hypot(fx - bx[k], fy - by[k])
    a11, a12, a21, a22 = _jacobian(px, py, p)
    mu = 1.0 / (a11 * a22 - a12 * a21)
    ok = (resid < tol) & (torch.hypot(px, py) > 1e-3 * te[k]) & torch.isfinite(mu)
    kk, xx, yy, mm = (v[ok].numpy() for v in (k, px, py, mu))
    for s in range(b):
        sel = kk == s
        found: list[tuple[float, float, float]] = []
        for xi, yi, mi in sorted(zip(xx[sel], yy[sel], mm[sel]), key=lambda r: -abs(r[2])):
            if all(np.hypot(xi - fx_, yi - fy_) > 1e-4 for fx_, fy_, _ in found):
                found.append((xi, yi, mi))
        for m, (xi, yi, mi) in enumerate(found[:MAX_IMAGES]):
            out[:, s, m] = (xi, yi, mi)
    return out[0], out[1], out[2]
