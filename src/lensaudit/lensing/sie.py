"""Deflection of a singular isothermal ellipsoid (SIE) and of an external shear, batched.

Kormann et al. 1994 / Keeton & Kochanek 1998 analytic form in the lens frame (major axis along x′):
α_x′ = b/√(1−q²)·arctan(√(1−q²)·x′/ψ), α_y′ = b/√(1−q²)·artanh(√(1−q²)·y′/ψ), ψ = √(q²x′² + y′²),
with b = θE·√q, so that θE is the product-averaged Einstein radius (lenstronomy's SIE convention).
Stable for q → 1 (series of arctan(εu)/ε) and at the centre (ψ floored).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _atan_over(eps: Tensor, u: Tensor) -> Tensor:
    """arctan(eps·u)/eps, continuous at eps → 0."""
    small = eps < 1e-4
    e = torch.where(small, torch.ones_like(eps), eps)
    return torch.where(small, u - eps**2 * u**3 / 3, torch.atan(e * u) / e)


def _atanh_over(eps: Tensor, u: Tensor) -> Tensor:
    small = eps < 1e-4
    e = torch.where(small, torch.ones_like(eps), eps)
    arg = (
        torch.clamp(e * u, -1 + 1e-15, 1 - 1e-15)
        if u.dtype == torch.float64
        else torch.clamp(e * u, -1 + 1e-7, 1 - 1e-7)
    )
    return torch.where(small, u + eps**2 * u**3 / 3, torch.atanh(arg) / e)


def sie_deflection(
    x: Tensor,
    y: Tensor,
    theta_e: Tensor,
    q: Tensor,
    phi: Tensor,
    x0: Tensor | None = None,
    y0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Deflection (arcsec) of an SIE at image-plane points x, y (B, …) in arcsec; parameters (B,)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    theta_e, q, phi = theta_e.reshape(shape), q.reshape(shape).clamp(1e-3, 1.0), phi.reshape(shape)
    if x0 is not None and y0 is not None:
        x = x - x0.reshape(shape)
        y = y - y0.reshape(shape)
    c, s = torch.cos(phi), torch.sin(phi)
    xp, yp = c * x + s * y, -s * x + c * y
    b = theta_e * torch.sqrt(q)
    floor = 1e-12 if x.dtype == torch.float64 else 1e-6
    psi = torch.sqrt(q**2 * xp**2 + yp**2).clamp_min(floor)
    eps = torch.sqrt((1 - q**2).clamp_min(0.0))
    axp = b * _atan_over(eps, xp / psi)
    ayp = b * _atanh_over(eps, yp / psi)
    return c * axp - s * ayp, s * axp + c * ayp


def shear_deflection(
    x: Tensor, y: Tensor, gamma1: Tensor, gamma2: Tensor, x0: Tensor | None = None, y0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """External shear: α = (γ1·x + γ2·y, γ2·x − γ1·y) about (x0, y0); parameters (B,)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    g1, g2 = gamma1.reshape(shape), gamma2.reshape(shape)
    if x0 is not None and y0 is not None:
        x = x - x0.reshape(shape)
        y = y - y0.reshape(shape)
    return g1 * x + g2 * y, g2 * x - g1 * y
