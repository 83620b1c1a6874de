"""The injection engine against lenstronomy (oracle), analytic cases, units, noise statistics, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from lensaudit.lensing import (
    LensSystems,
    inject,
    moffat_kernel,
    render_arcs,
    sample_systems,
    shear_deflection,
    sie_deflection,
)

PIX = 0.262


def _e1e2(q, phi):
    c = (1 - q) / (1 + q)
    return c * np.cos(2 * phi), c * np.sin(2 * phi)


@pytest.mark.oracle
def test_sie_shear_deflection_matches_lenstronomy():
    from lenstronomy.LensModel.lens_model import LensModel

    lm = LensModel(["SIE", "SHEAR"])
    rng = np.random.default_rng(1)
    for q in list(rng.uniform(0.3, 0.999, 8)) + [1.0 - 1e-9]:
        te, phi, g1, g2 = (
            rng.uniform(0.5, 3.0),
            rng.uniform(0, np.pi),
            rng.normal(0, 0.05),
            rng.normal(0, 0.05),
        )
        e1, e2 = _e1e2(q, phi)
        x, y = rng.uniform(-6, 6, 400), rng.uniform(-6, 6, 400)
        ax, ay = lm.alpha(
            x,
            y,
            [
                {"theta_E": te, "e1": e1, "e2": e2, "center_x": 0.2, "center_y": -0.1},
                {"gamma1": g1, "gamma2": g2, "ra_0": 0.2, "dec_0": -0.1},
            ],
        )
        T = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
        X, Y = torch.tensor(x[None]), torch.tensor(y[None])
        bx, by = sie_deflection(X, Y, T(te), T(q), T(phi), T(0.2), T(-0.1))
        sx, sy = shear_deflection(X, Y, T(g1), T(g2), T(0.2), T(-0.1))
        np.testing.assert_allclose((bx + sx).numpy()[0], ax, rtol=1e-6, atol=1e-6 * np.abs(ax).max())
        np.testing.assert_allclose((by + sy).numpy()[0], ay, rtol=1e-6, atol=1e-6 * np.abs(ay).max())


def test_sie_finite_at_centre_and_round_limit():
    z = torch.zeros(1, 3, dtype=torch.float64)
    ax, ay = sie_deflection(
        z,
        z,
        torch.tensor([1.0], dtype=torch.float64),
        torch.tensor([1.0], dtype=torch.float64),
        torch.tensor([0.3], dtype=torch.float64),
    )
    assert torch.isfinite(ax).all() and torch.isfinite(ay).all()
    x = torch.tensor([[2.0]], dtype=torch.float64)
    a1 = sie_deflection(
        x,
        x * 0,
        torch.tensor([1.2], dtype=torch.float64),
        torch.tensor([1.0], dtype=torch.float64),
        torch.tensor([0.0], dtype=torch.float64),
    )[0]
    assert float(a1) == pytest.approx(1.2, rel=1e-12)  # SIS: |α| = θE


@pytest.mark.oracle
def test_lensed_sersic_image_matches_lenstronomy():
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    from lensaudit.lensing.render import sersic_total

    rng = np.random.default_rng(3)
    size, ss = 61, 5
    for _ in range(3):
        te, q, phi = rng.uniform(0.6, 2.5), rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
        sq, sphi, n, reff = (
            rng.uniform(0.5, 1.0),
            rng.uniform(0, np.pi),
            rng.uniform(0.7, 2.0),
            rng.uniform(0.15, 0.4),
        )
        sx, sy, mag = rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), 22.0
        s = LensSystems.make(
            theta_e=te,
            q=q,
            phi=phi,
            src_mag={"r": mag},
            psf_fwhm={"r": 1.2},
            src_reff=reff,
            src_n=n,
            src_q=sq,
            src_phi=sphi,
            src_x=sx,
            src_y=sy,
            psf_beta=3.0,
        )
        kern = moffat_kernel(torch.tensor([1.2]), torch.tensor([3.0]), PIX, 31, dtype=torch.float64)
        ours, _ = render_arcs(s, size, PIX, "r", ss, dtype=torch.float64, psf_images={"r": kern})
        ours = ours[0, 0].numpy()
        c = (size - 1) / 2
        data = ImageData(
            image_data=np.zeros((size, size)),
            ra_at_xy_0=c * PIX,
            dec_at_xy_0=-c * PIX,
            transform_pix2angle=np.array([[-PIX, 0.0], [0.0, PIX]]),
        )
        e1, e2 = _e1e2(q, phi)
        se1, se2 = _e1e2(sq, sphi)
        total = 10 ** (-0.4 * (mag - 22.5))
        amp = total / float(sersic_total(torch.tensor(reff), torch.tensor(n)))
        model = ImageModel(
            data,
            PSF(psf_type="PIXEL", kernel_point_source=kern[0].numpy()),
            lens_model_class=LensModel(["SIE"]),
            source_model_class=LightModel(["SERSIC_ELLIPSE"]),
            kwargs_numerics={"supersampling_factor": ss, "supersampling_convolution": False},
        )
        ref = model.image(
            kwargs_lens=[{"theta_E": te, "e1": e1, "e2": e2, "center_x": 0, "center_y": 0}],
            kwargs_source=[
                {
                    "amp": amp,
                    "R_sersic": reff,
                    "n_sersic": n,
                    "e1": se1,
                    "e2": se2,
                    "center_x": sx,
                    "center_y": sy,
                }
            ],
        )
        assert np.abs(ours - ref).max() < 1e-3 * ref.max()
        assert ours.sum() == pytest.approx(ref.sum(), rel=1e-3)


def _point_like(te, bx, mag=22.0, reff=0.01):
    return LensSystems.make(
        theta_e=te, src_mag={"r": mag}, psf_fwhm={"r": 1.0}, src_reff=reff, src_n=1.0, src_x=bx
    )


def test_flux_units_without_lensing_and_with_magnification():
    arcs, info = render_arcs(_point_like(1e-6, 0.0, reff=0.5), 101, PIX, "r", 5, dtype=torch.float64)
    assert float(arcs.sum()) == pytest.approx(10 ** (-0.4 * (22.0 - 22.5)), rel=1e-3)  # 1.585 nmgy, not 100×
    # SIS, small source far from the caustic (β = 3θE): one image, μ = 1 + θE/β
    arcs, info = render_arcs(_point_like(1.0, 3.0, reff=0.15), 101, PIX, "r", 9, dtype=torch.float64)
    assert float(info["magnification"][0]) == pytest.approx(1 + 1 / 3, rel=5e-3)
    assert float(arcs.sum()) == pytest.approx(
        float(info["magnification"][0]) * 10 ** (-0.4 * (22.0 - 22.5)), rel=2e-3
    )


def test_sis_einstein_ring_radius():
    arcs, _ = render_arcs(
        LensSystems.make(theta_e=2.0, src_mag={"r": 21.0}, psf_fwhm={"r": 0.3}, src_reff=0.05, src_x=0.0),
        101,
        PIX,
        "r",
        5,
        dtype=torch.float64,
    )
    img = arcs[0, 0].numpy()
    yy, xx = np.mgrid[0:101, 0:101]
    r = np.hypot(xx - 50, yy - 50) * PIX
    prof = [img[(r >= a) & (r < a + PIX)].mean() for a in np.arange(0, 4, PIX)]
    assert abs(np.arange(0, 4, PIX)[int(np.argmax(prof))] + PIX / 2 - 2.0) < PIX


def test_noise_has_unit_variance_and_runs_are_reproducible():
    rng = np.random.default_rng(0)
    sig = 0.003
    host = rng.normal(0, sig, (4, 3, 101, 101)).astype(np.float32)
    iv = np.full_like(host, 1 / sig**2)
    s = sample_systems(
        4,
        [1.5, 2.0, 1.0, 2.5],
        {
            "src_mag_r": (19.0, 19.5),
            "magnification": (5, 10),
            "src_reff": (0.2, 0.4),
            "src_n": (1, 1.5),
            "src_q": (0.6, 1.0),
            "lens_q": (0.7, 1.0),
        },
        np.random.default_rng(1),
        {"g": 1.4, "r": 1.3, "z": 1.2},
    )
    st, info = inject(host, iv, s, rng=5)
    resid = (st - host - info["noiseless_arc"]) / info["added_noise_sigma"].clip(1e-12)
    m = info["added_noise_sigma"] > 0.1 * sig
    assert m.sum() > 500
    assert stats.kstest(resid[m], "norm").pvalue > 0.01
    st2, _ = inject(host, iv, s, rng=5)
    np.testing.assert_array_equal(st, st2)
    assert (info["arc_snr"] > 0).all() and (info["magnification"] > 1).all()
