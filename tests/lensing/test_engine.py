"""The injection engine's accuracy contract: adaptive supersampling against an independent finite-source SIS
magnification and lenstronomy at supersampling 25, the pixel response applied once, float32 Sersic at large
n, one source evaluation for all bands, the compiled path and its fallback, bf16 against fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lensaudit.lensing import LensSystems, moffat_kernel, render_arcs, sample_systems
from lensaudit.lensing import integrate as lint
from lensaudit.lensing.render import sersic_total

PIX = 0.262


def _sis_finite_source_mu(te: float, b0: float, reff: float, n: float = 1.0) -> float:
    """Total magnification of a circular Sersic source at offset b0 behind an SIS: ∫S·μ d²β / ∫S d²β, with the
    point-source μ(β) = 2θE/β inside the Einstein radius (two images) and 1 + θE/β outside (one). In polar
    coordinates about the lens the Jacobian β cancels the 1/β: μ·β = 2θE (β < θE) or β + θE, so the integrand
    is bounded; Gauss–Legendre in β (split at θE and around the source), periodic trapezoid in angle."""
    bn = 1.9992 * n - 0.3271
    rmax = b0 + 25 * reff * n
    edges = sorted({0.0, te, max(b0 - 3 * reff, 0.0), b0, b0 + 3 * reff, rmax})
    edges = [e for e in edges if e <= rmax]
    x, w = np.polynomial.legendre.leggauss(200)
    beta = np.concatenate([(hi - lo) / 2 * x + (hi + lo) / 2 for lo, hi in zip(edges[:-1], edges[1:])])
    wb = np.concatenate([(hi - lo) / 2 * w for lo, hi in zip(edges[:-1], edges[1:])])
    phi = np.linspace(0, 2 * np.pi, 2048, endpoint=False)
    r = np.sqrt(np.clip(beta[:, None] ** 2 + b0**2 - 2 * beta[:, None] * b0 * np.cos(phi)[None], 0, None))
    sb = np.exp(-bn * (r / reff) ** (1 / n))
    mu_beta = np.where(beta < te, 2 * te, beta + te)[:, None]
    return float((wb[:, None] * sb * mu_beta).sum() / (wb[:, None] * sb * beta[:, None]).sum())


def test_finite_source_analytic_reproduces_the_issue_value():
    # the issue's figure for r_eff 0.05″, n 1, θE 1.5″, β 0.3θE: 6.713
    assert _sis_finite_source_mu(1.5, 0.45, 0.05) == pytest.approx(6.713, abs=5e-4)


@pytest.mark.parametrize("reff", [0.05, 0.08, 0.15, 0.3])
def test_default_mode_matches_finite_source_sis_magnification(reff):
    s = LensSystems.make(
        theta_e=1.5, src_mag={"r": 22.0}, psf_fwhm={"r": 1.3}, src_reff=reff, src_n=1.0, src_x=0.45
    )
    _, info = render_arcs(s, 101, PIX, "r")  # the default: adaptive, accuracy 1e-3, float32
    mu = float(info["magnification"][0])
    assert mu == pytest.approx(_sis_finite_source_mu(1.5, 0.45, reff), rel=0.01)
    # the fixed mode at the old default (5) is 2.6% high on the most compact one: the test can tell
    if reff == 0.05:
        _, fixed = render_arcs(s, 101, PIX, "r", 5)
        assert float(fixed["magnification"][0]) > 1.02 * _sis_finite_source_mu(1.5, 0.45, reff)


def _default_prior():
    from lensaudit.config import InjectConfig
    from lensaudit.selection.injection import prior

    return prior(InjectConfig())


@pytest.mark.oracle
def test_total_flux_matches_lenstronomy_ss25_across_the_default_prior():
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    rng = np.random.default_rng(11)
    n, size = 6, 101
    s = sample_systems(n, rng.uniform(0.5, 3.0, n), _default_prior(), rng, {"r": 1.3}, 3.5)
    ours, _ = render_arcs(s, size, PIX, "r", convolve=False)
    c = (size - 1) / 2
    data = ImageData(
        image_data=np.zeros((size, size)),
        ra_at_xy_0=c * PIX,
        dec_at_xy_0=-c * PIX,
        transform_pix2angle=np.array([[-PIX, 0.0], [0.0, PIX]]),
    )
    model = ImageModel(
        data,
        PSF(psf_type="NONE"),
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": 25},
    )
    for i in range(n):
        q, phi, sq, sphi = (float(v[i]) for v in (s.q, s.phi, s.src_q, s.src_phi))
        e, se = (1 - q) / (1 + q), (1 - sq) / (1 + sq)
        total = 10 ** (-0.4 * (float(s.src_mag["r"][i]) - 22.5))
        ref = model.image(
            kwargs_lens=[
                {
                    "theta_E": float(s.theta_e[i]),
                    "e1": e * np.cos(2 * phi),
                    "e2": e * np.sin(2 * phi),
                    "center_x": 0.0,
                    "center_y": 0.0,
                },
                {"gamma1": float(s.gamma1[i]), "gamma2": float(s.gamma2[i]), "ra_0": 0.0, "dec_0": 0.0},
            ],
            kwargs_source=[
                {
                    "amp": total / float(sersic_total(s.src_reff[i : i + 1], s.src_n[i : i + 1])[0]),
                    "R_sersic": float(s.src_reff[i]),
                    "n_sersic": float(s.src_n[i]),
                    "e1": se * np.cos(2 * sphi),
                    "e2": se * np.sin(2 * sphi),
                    "center_x": float(s.src_x[i]),
                    "center_y": float(s.src_y[i]),
                }
            ],
        )
        assert float(ours[i, 0].sum()) == pytest.approx(ref.sum(), rel=0.005)
        assert float((ours[i, 0].double().numpy() - ref).__abs__().max()) < 0.01 * ref.max()


def _fine_reference(size, reff, n, fwhm, beta, x0, y0, f=15):
    """Sersic (unit flux) sampled on an f× finer grid, convolved with the Moffat sampled (not integrated) at
    the fine spacing, then summed into pixels: the pixel response applied exactly once (numpy)."""
    c = (size - 1) / 2
    g = ((np.arange(size * f) + 0.5) / f - 0.5 - c) * PIX
    yy, xx = np.meshgrid(g, -g, indexing="ij")  # x = −(column − c)·pix
    bn = 1.9992 * n - 0.3271
    r = np.hypot(xx - x0, yy - y0)
    sb = np.exp(-bn * (r / reff) ** (1 / n)) / float(sersic_total(torch.tensor(reff), torch.tensor(n)))
    img = sb * np.exp(bn) * (PIX / f) ** 2
    h = 20 * f
    k1 = np.arange(-h, h + 1) * PIX / f
    ky, kx = np.meshgrid(k1, k1, indexing="ij")
    a = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    k = (1 + (kx**2 + ky**2) / a**2) ** (-beta)
    k /= k.sum()
    p = img.shape[0] + k.shape[0] - 1
    out = np.fft.irfft2(np.fft.rfft2(img, (p, p)) * np.fft.rfft2(k, (p, p)), (p, p))[
        h : h + size * f, h : h + size * f
    ]
    return out.reshape(size, f, size, f).sum(axis=(1, 3))


def test_pixel_response_enters_once_for_a_sersic_n4():
    size, reff, n, fwhm, beta, x0, y0 = 41, 0.3, 4.0, 1.3, 3.5, 0.03, -0.07
    s = LensSystems.make(
        theta_e=1e-6, src_mag={"r": 22.5}, psf_fwhm={"r": fwhm}, src_reff=reff, src_n=n, src_x=x0, src_y=y0,
        psf_beta=beta,
    )  # fmt: skip
    ours, _ = render_arcs(s, size, PIX, "r", accuracy=1e-4, dtype=torch.float64)
    ref = _fine_reference(size, reff, n, fwhm, beta, x0, y0)
    peak = ref.max()
    assert np.abs(ours[0, 0].numpy() - ref).max() < 0.006 * peak
    # the pitfall: the pixel-integrated image convolved with a pixel-integrated PSF (pixel response twice)
    kern = moffat_kernel(torch.tensor([fwhm]), torch.tensor([beta]), PIX, 41, dtype=torch.float64)
    twice, _ = render_arcs(s, size, PIX, "r", accuracy=1e-4, dtype=torch.float64, psf_images={"r": kern})
    assert np.abs(twice[0, 0].numpy() - ref).max() > 0.015 * peak


@pytest.mark.parametrize("n", [4.0, 8.0, 10.0])
def test_float32_sersic_is_safe_at_large_n(n):
    s = LensSystems.make(theta_e=1.2, src_mag={"r": 22.0}, psf_fwhm={"r": 1.2}, src_reff=0.3, src_n=n)
    a32, i32 = render_arcs(s, 61, PIX, "r", dtype=torch.float32, convolve=False)
    a64, i64 = render_arcs(s, 61, PIX, "r", dtype=torch.float64, convolve=False)
    assert torch.isfinite(a32).all()
    assert float(i32["magnification"][0]) == pytest.approx(float(i64["magnification"][0]), rel=2e-3)
    assert float((a32.double() - a64).abs().max()) < 2e-3 * float(a64.max())


def test_one_source_evaluation_serves_all_bands_and_clumps_are_a_component():
    rng = np.random.default_rng(4)
    fw = {"g": 1.5, "r": 1.3, "z": 1.2}
    s = sample_systems(4, [1.0, 1.5, 2.0, 2.5], _default_prior(), rng, fw, 3.5, ["sersic", "clumpy"] * 2)
    arcs, info = render_arcs(s, 101, PIX, "grz")
    ratio = info["flux_lensed"] / info["flux_unlensed"]
    np.testing.assert_allclose(ratio[:, 0].numpy(), ratio[:, 2].numpy(), rtol=1e-5)  # same SED in all bands
    # the PSF keeps the flux that lands inside the stamp
    np.testing.assert_allclose(arcs.sum(dim=(2, 3)).numpy(), info["flux_lensed"].numpy(), rtol=2e-3)
    # a clumpy system alone, and as part of the batch, renders the same
    one, _ = render_arcs(s.subset([1]), 101, PIX, "grz")
    np.testing.assert_allclose(one[0].numpy(), arcs[1].numpy(), atol=1e-6 * float(arcs[1].max()))


def test_info_records_the_supersampling_used():
    s = LensSystems.make(
        theta_e=1.5, src_mag={"r": 22.0}, psf_fwhm={"r": 1.3}, src_reff=0.05, src_n=1.0, src_x=0.45
    )
    _, info = render_arcs(s, 101, PIX, "r")
    assert float(info["rays_per_pixel"][0]) > 9 and float(info["supersample_max"][0]) >= 24
    assert float(info["refined_pixels"][0]) > 0
    assert (
        0 <= float(info["unconverged_pixels"][0]) < float(info["refined_pixels"][0])
    )  # reported, not hidden
    _, fixed = render_arcs(s, 101, PIX, "r", 7)
    assert float(fixed["rays_per_pixel"][0]) == 49 and float(fixed["supersample_max"][0]) == 7
    # a tighter accuracy costs more rays and lands closer to the analytic value
    _, tight = render_arcs(s, 101, PIX, "r", accuracy=1e-4)
    ref = _sis_finite_source_mu(1.5, 0.45, 0.05)
    assert float(tight["rays_per_pixel"][0]) > float(info["rays_per_pixel"][0])
    assert abs(float(tight["magnification"][0]) / ref - 1) < 1e-3


def _batch():
    rng = np.random.default_rng(2)
    return sample_systems(4, rng.uniform(0.8, 2.5, 4), _default_prior(), rng, {"r": 1.3}, 3.5)


def test_compile_failure_falls_back_to_the_eager_path(monkeypatch):
    s = _batch()
    eager, _ = render_arcs(s, 61, PIX, "r")

    def broken(*a, **k):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(lint, "COMPILE", "always")
    monkeypatch.setattr(lint, "_compiled", {})
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="falls back|failed"):
        out, _ = render_arcs(s, 61, PIX, "r")
    torch.testing.assert_close(out, eager)
    assert lint._compiled.get("failed")


@pytest.mark.slow
def test_compiled_path_matches_eager(monkeypatch):
    s = _batch()
    eager, _ = render_arcs(s, 61, PIX, "r", 5)
    monkeypatch.setattr(lint, "COMPILE", "always")
    monkeypatch.setattr(lint, "_compiled", {})
    comp, _ = render_arcs(s, 61, PIX, "r", 5)
    assert not lint._compiled.get("failed")
    torch.testing.assert_close(comp, eager, rtol=1e-4, atol=1e-5 * float(eager.max()))


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
        ),
    ],
)
def test_bf16_source_profile_agrees_with_fp32(device):
    rng = np.random.default_rng(5)
    n = 16
    s = sample_systems(
        n, rng.uniform(0.5, 3.0, n), _default_prior(), rng, {"g": 1.5, "r": 1.3, "z": 1.2}, 3.5
    )
    a32, i32 = render_arcs(s, 101, PIX, "grz", device=device)
    a16, i16 = render_arcs(s, 101, PIX, "grz", device=device, sb_dtype=torch.bfloat16)
    np.testing.assert_allclose(
        i16["magnification"].cpu().numpy(), i32["magnification"].cpu().numpy(), rtol=0.02
    )
    peak = a32.amax(dim=(2, 3), keepdim=True)
    assert float(((a16 - a32).abs() / peak).max()) < 0.02
