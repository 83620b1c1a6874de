"""Image positions and magnifications of the injection metadata against the analytic SIS and lenstronomy."""

import numpy as np
import pytest

from lensaudit.lensing.images import image_positions


def test_sis_images_are_analytic():
    te, beta = np.array([1.5, 1.0]), np.array([0.3, 0.05])
    zero = np.zeros(2)
    x, y, mu = image_positions(te, np.ones(2), zero, zero, zero, beta, zero)
    for i in range(2):
        ok = np.isfinite(x[i])
        assert ok.sum() == 2
        np.testing.assert_allclose(np.sort(x[i][ok]), [beta[i] - te[i], beta[i] + te[i]], atol=1e-7)
        np.testing.assert_allclose(np.abs(y[i][ok]), 0, atol=1e-7)
        # SIS: μ± = ±(1 ± θE/β)… signed: 1 + θE/β outside, 1 − θE/β (negative, a saddle) inside
        np.testing.assert_allclose(np.sort(mu[i][ok]), [1 - te[i] / beta[i], 1 + te[i] / beta[i]], rtol=1e-6)


def test_sie_shear_images_match_lenstronomy():
    lens_model = pytest.importorskip("lenstronomy.LensModel.lens_model")
    solver_mod = pytest.importorskip("lenstronomy.LensModel.Solver.lens_equation_solver")
    from lenstronomy.Util.param_util import phi_q2_ellipticity

    rng = np.random.default_rng(3)
    n = 30
    te, q, phi = rng.uniform(0.5, 3, n), rng.uniform(0.5, 1, n), rng.uniform(0, np.pi, n)
    g, ga = rng.uniform(0, 0.05, n), rng.uniform(0, np.pi, n)
    g1, g2 = g * np.cos(2 * ga), g * np.sin(2 * ga)
    beta, ang = 2 * te / rng.uniform(5, 30, n), rng.uniform(0, 2 * np.pi, n)
    sx, sy = beta * np.cos(ang), beta * np.sin(ang)
    x, y, mu = image_positions(te, q, phi, g1, g2, sx, sy)
    lm = lens_model.LensModel(["SIE", "SHEAR"])
    solver = solver_mod.LensEquationSolver(lm)
    for i in range(n):
        e1, e2 = phi_q2_ellipticity(phi[i], q[i])
        kw = [
            {"theta_E": te[i], "e1": e1, "e2": e2, "center_x": 0, "center_y": 0},
            {"gamma1": g1[i], "gamma2": g2[i], "ra_0": 0, "dec_0": 0},
        ]
        xl, yl = solver.image_position_from_source(
            sx[i],
            sy[i],
            kw,
            min_distance=0.01,
            search_window=6 * te[i],
            precision_limit=1e-10,
            num_iter_max=100,
        )
        ml = lm.magnification(xl, yl, kw)
        real = np.abs(ml) > 1e-6  # lenstronomy also returns the singular centre (μ → 0), which has no image
        ok = np.isfinite(x[i])
        assert ok.sum() == real.sum(), i
        order = np.argsort(-np.abs(ml[real]))
        np.testing.assert_allclose(x[i][ok], xl[real][order], atol=1e-5)
        np.testing.assert_allclose(y[i][ok], yl[real][order], atol=1e-5)
        np.testing.assert_allclose(mu[i][ok], ml[real][order], rtol=2e-3)
