"""The 4-D selection function C(θE, PSF, depth, m): tabulation, interpolation, marginals under magnitude
priors, the design matrix and FITS/Parquet round trips — on synthetic injections with a known C(m)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lensaudit.config import SelectionConfig
from lensaudit.selection.completeness import completeness_table, completeness_table4
from lensaudit.selection.grid import cells
from lensaudit.selection.table import SelectionFunction, beta_variance

EDGES = np.arange(20.0, 27.0 + 1e-9, 1.0)
PRIORM = "uniform(20,27)"


def true_c(theta_e, psf, depth, m):
    """Completeness rising with θE and depth, falling with PSF and (logistically) with magnitude."""
    m50 = 23.0 + 0.8 * theta_e - 1.0 * (psf - 1.0) + 0.5 * (depth - 24.0)
    return 0.95 / (1.0 + np.exp((m - m50) / 0.5))


def _injections(per_cell: int = 200, seed: int = 0, stratified: bool = False):
    """~``per_cell`` injections per 3-D cell, source magnitudes uniform over :data:`EDGES` — drawn at random
    (as the inject stage does) or ``stratified`` (evenly spread, so every bin holds its prior share)."""
    grid = cells(np.array([1.0, 1.5, 2.0, 2.5]), np.array([1.0, 1.3, 1.6]), np.array([23.5, 24.0, 24.5]))
    rng = np.random.default_rng(seed)
    rows = grid.loc[grid.index.repeat(per_cell)].reset_index(drop=True)
    if stratified:
        u = (np.tile(np.arange(per_cell), len(grid)) + rng.random(len(rows))) / per_cell
    else:
        u = rng.random(len(rows))
    m = EDGES[0] + u * (EDGES[-1] - EDGES[0])
    p = true_c(rows.theta_e.to_numpy(), rows.psf_fwhm.to_numpy(), rows.depth.to_numpy(), m)
    inj = pd.DataFrame({"cell": rows.cell, "detected": rng.random(len(rows)) < p, "src_mag": m})
    return grid, inj


def true_marginal(grid: pd.DataFrame) -> np.ndarray:
    """The true C(θE, PSF, depth) under the uniform injection prior (per grid cell)."""
    m = np.linspace(EDGES[0], EDGES[-1], 7001)
    c = true_c(
        grid.theta_e.to_numpy()[:, None], grid.psf_fwhm.to_numpy()[:, None], grid.depth.to_numpy()[:, None], m
    )
    return c.mean(axis=1)


@pytest.fixture(scope="module")
def world():
    grid, inj = _injections()
    cfg = SelectionConfig(n_min=20)
    t4 = completeness_table4(grid, inj, "src_mag", EDGES, cfg, n_min=5)
    meta = {"AXIS4": "src_mag", "AXIS4DSC": "unlensed source r mag", "PRIORM": PRIORM, "NMIN": 20}
    return grid, inj, cfg, SelectionFunction(t4, meta)


def test_table4_columns_counts_and_posterior_variance(world):
    grid, inj, cfg, sf = world
    t = sf.table
    assert len(t) == len(grid) * (len(EDGES) - 1)
    for c in ("cell", "i_theta_e", "i_psf", "i_depth", "theta_e", "psf_fwhm", "depth", "i_mag", "src_mag"):
        assert c in t
    assert {"src_mag_lo", "src_mag_hi", "n", "k", "c_var", "c_lo95", "insufficient"} <= set(t.columns)
    assert t.n.sum() == len(inj) and t.k.sum() == inj.detected.sum()
    a, b = t.k + 0.5, t.n - t.k + 0.5
    assert np.allclose(t.c_var, stats.beta.var(a, b))
    assert sf.mag_axis == "src_mag" and len(sf.axes) == 4
    assert np.allclose(sf.mag_edges, EDGES) and sf.mag_range == (20.0, 27.0)
    t3 = completeness_table(grid, inj, cfg)
    assert np.allclose(t3.c_var, beta_variance(t3.k, t3.n))
    assert SelectionFunction(t3).mag_axis is None and len(SelectionFunction(t3).axes) == 3


def test_edge_magnitudes_go_to_the_end_bins_and_outside_ones_are_dropped():
    grid = cells(np.array([1.0]), np.array([1.0]), np.array([24.0]))
    inj = pd.DataFrame({"cell": 0, "detected": True, "src_mag": [20.0, 21.0, 27.0, 19.99, 27.01, np.nan]})
    t = completeness_table4(grid, inj, "src_mag", EDGES, SelectionConfig(), 1)
    assert t.n.tolist() == [1, 1, 0, 0, 0, 0, 1]


def test_marginal_under_the_injection_prior_reproduces_the_3d_table():
    """Issue 15's "done when": where the injections' magnitudes follow the declared prior bin by bin, the
    marginal under the injection prior is the 3-D table of the same injections within its 68% intervals."""
    grid, inj = _injections(per_cell=210, stratified=True)
    cfg = SelectionConfig(n_min=20)
    t4 = completeness_table4(grid, inj, "src_mag", EDGES, cfg, n_min=5)
    assert (t4.n == 30).all()
    marg = SelectionFunction(t4, {"PRIORM": PRIORM}).marginalise("injection").table
    t3 = completeness_table(grid, inj, cfg)
    assert (marg.n == t3.n).all() and (marg.k == t3.k).all()
    inside = marg.c_mean.between(t3.c_lo68, t3.c_hi68)
    assert inside.mean() >= 0.9, inside.mean()
    assert np.abs(marg.c_mean - t3.c_mean).max() < 0.01  # only the per-bin Jeffreys prior differs
    # conditioning on the magnitude removes the spread of C(m) from the binomial variance: never wider
    assert ((marg.c_hi68 - marg.c_lo68) <= 1.02 * (t3.c_hi68 - t3.c_lo68)).all()


def test_marginal_of_randomly_drawn_magnitudes_agrees_with_the_3d_table_and_covers_the_truth(world):
    """Magnitudes drawn at random: the 3-D table weights each bin by its realised count, the marginal by the
    declared prior, so they differ by the count scatter (about 0.8σ of the 3-D table): their 68% intervals
    overlap in most cells, and both cover the true marginal about 68% of the time."""
    grid, inj, cfg, sf = world
    t3 = completeness_table(grid, inj, cfg)
    marg = sf.marginalise("injection")
    m = marg.table
    cols = ["cell", "i_theta_e", "i_psf", "i_depth", "theta_e", "psf_fwhm", "depth", "n", "k", "c_mean"]
    assert list(m.columns[: len(cols)]) == cols
    assert {"c_lo68", "c_hi68", "c_lo95", "c_hi95", "c_var", "insufficient"} <= set(m.columns)
    assert marg.mag_axis is None and marg.meta["MARGPRIO"] == f"injection: {PRIORM}"
    assert marg.meta["MARGAXIS"] == "src_mag" and "AXIS4" not in marg.meta
    assert (m.cell.to_numpy() == t3.cell.to_numpy()).all()
    assert (m.n.to_numpy() == t3.n.to_numpy()).all() and (m.k == t3.k).all()
    overlap = (m.c_lo68 <= t3.c_hi68) & (t3.c_lo68 <= m.c_hi68)
    assert overlap.mean() >= 0.85, overlap.mean()
    assert m.c_mean.between(t3.c_lo95, t3.c_hi95).mean() >= 0.9
    truth = true_marginal(grid)
    for lo, hi in ((m.c_lo68, m.c_hi68), (t3.c_lo68, t3.c_hi68)):
        assert 0.45 <= np.mean((lo <= truth) & (truth <= hi)) <= 0.9
    # the marginal's own intervals hold its mean and nest
    assert (m.c_lo68 < m.c_mean).all() and (m.c_mean < m.c_hi68).all()
    assert (m.c_lo95 < m.c_lo68).all() and (m.c_hi68 < m.c_hi95).all()
    # c_var is the exact Σ w² var_j; the Monte Carlo 68% half-width agrees with its square root
    w = np.diff(EDGES) / np.ptp(EDGES)
    var = sf.table.c_var.to_numpy().reshape(len(grid), -1) @ w**2
    assert np.allclose(m.c_var, var)
    assert np.allclose((m.c_hi68 - m.c_lo68) / 2, np.sqrt(var), rtol=0.1)
    # deterministic; no declared prior is the same uniform prior
    again = SelectionFunction(sf.table, {}).marginalise("injection")
    pd.testing.assert_frame_equal(again.table, m)
    assert not m.insufficient.any()


def test_a_fainter_prior_gives_lower_completeness_and_weights_give_the_same_answer(world):
    *_, sf = world
    bright, faint = sf.marginalise("normal(22.5,0.6)"), sf.marginalise("normal(25.5,0.6)")
    assert (faint.table.c_mean < bright.table.c_mean).all()
    w = sf.prior_weights("normal(25.5,0.6)")
    assert w.sum() == pytest.approx(1.0) and w[-1] > w[0]
    by_weights = sf.marginalise(list(w * 3.0))
    cols = [c for c in faint.table.columns]
    pd.testing.assert_frame_equal(by_weights.table[cols], faint.table[cols])
    assert by_weights.meta["MARGPRIO"].startswith("weights ")
    assert faint.meta["MARGPRIO"] == "normal(25.5,0.6)"
    # a one-bin prior is that bin's column of the 4-D table
    one = sf.marginalise(np.eye(len(EDGES) - 1)[2])
    bin2 = sf.table[sf.table.i_mag == 2].reset_index(drop=True)
    # (its detected fraction k/n: the marginal's point estimate is unbiased, not the posterior mean)
    assert np.allclose(one.table.c_mean, bin2.k / bin2.n) and (one.table.n == bin2.n).all()
    assert np.allclose(one.table.c_var, bin2.c_var)
    shift = bin2.k / bin2.n - bin2.c_mean  # the intervals move with the point estimate
    assert np.allclose(one.table.c_lo68, np.clip(bin2.c_lo68 + shift, 0, 1), atol=0.01)


def test_prior_mass_outside_the_table_and_bad_weights_raise(world):
    *_, sf = world
    with pytest.raises(ValueError, match=r"50\.0% of the prior normal\(27,0.5\) lies outside.*\[20, 27\]"):
        sf.marginalise("normal(27,0.5)")
    with pytest.raises(ValueError, match="outside the table's magnitude range"):
        sf.marginalise("uniform(19,27)")
    sf.marginalise("uniform(20.05,27)")  # 0.7% outside: allowed
    with pytest.raises(ValueError, match="unknown prior"):
        sf.marginalise("lognormal(1,2)")
    with pytest.raises(ValueError, match="6 weights for 7 magnitude bins"):
        sf.marginalise(np.ones(6))
    with pytest.raises(ValueError, match="non-negative"):
        sf.marginalise(-np.ones(7))
    t3 = SelectionFunction(sf.marginalise("injection").table)
    with pytest.raises(ValueError, match="no magnitude axis"):
        t3.marginalise("injection")


def test_interpolation_is_exact_at_centres_clamped_in_end_bins_and_monotone_between(world):
    *_, sf = world
    t = sf.table
    ok = ~t.insufficient.to_numpy()
    c = sf.completeness(t.theta_e, t.psf_fwhm, t.depth, src_mag=t.src_mag)
    assert np.allclose(c[ok], t.c_mean[ok]) and np.isnan(c[~ok]).all()
    lo, hi = sf.interval(t.theta_e, t.psf_fwhm, t.depth, t.src_mag, level=95)
    assert np.allclose(lo[ok], t.c_lo95[ok]) and np.allclose(hi[ok], t.c_hi95[ok])
    # between the first low edge and the first centre (and the last centre and high edge): the end bin
    assert sf.completeness(1.5, 1.3, 24.0, 20.0)[0] == pytest.approx(sf.completeness(1.5, 1.3, 24.0, 20.5)[0])
    assert sf.completeness(1.5, 1.3, 24.0, 27.0)[0] == pytest.approx(sf.completeness(1.5, 1.3, 24.0, 26.5)[0])
    # between two centres: monotone from one node's value to the other's, and linear in m
    nodes = sf.completeness(2.0, 1.0, 24.5, np.arange(22.5, 25.6, 1.0))
    assert nodes[-1] < nodes[0]  # the table falls with m through m50 = 24.85
    for a in (22.5, 23.5, 24.5):
        cm = sf.completeness(2.0, 1.0, 24.5, np.linspace(a, a + 1.0, 11))
        step = np.diff(cm) * np.sign(cm[-1] - cm[0])
        assert (step >= -1e-12).all()
        assert cm[5] == pytest.approx((cm[0] + cm[-1]) / 2)
    # 4-axis multilinear: the midpoint of a 4-D cell is the mean of its 16 corners
    sub = t[t.i_theta_e.isin([0, 1]) & t.i_psf.isin([0, 1]) & t.i_depth.isin([1, 2]) & t.i_mag.isin([2, 3])]
    assert sf.completeness(1.25, 1.15, 24.25, 23.0)[0] == pytest.approx(sub.c_mean.mean())
    # broadcasting
    assert sf.completeness(np.array([[1.0], [2.0]]), 1.3, 24.0, np.array([21.0, 22.0, 23.0])).shape == (6,)


def test_out_of_grid_points_and_a_magnitude_on_a_3d_table_raise(world):
    grid, inj, cfg, sf = world
    with pytest.raises(ValueError, match=r"src_mag=19\.9 is outside the grid \[20, 27\]"):
        sf.completeness(1.5, 1.3, 24.0, [21.0, 19.9])
    with pytest.raises(ValueError, match=r"src_mag=27\.1 is outside"):
        sf.interval(1.5, 1.3, 24.0, 27.1)
    with pytest.raises(ValueError, match=r"theta_e=3 is outside the grid"):
        sf.completeness(3.0, 1.3, 24.0, 22.0)
    with pytest.raises(ValueError, match=r"depth=22 is outside the grid"):
        sf.completeness(1.5, 1.3, 22.0)
    t3 = SelectionFunction(completeness_table(grid, inj, cfg))
    with pytest.raises(ValueError, match="this table has no magnitude axis"):
        t3.completeness(1.5, 1.3, 24.0, src_mag=22.0)
    with pytest.raises(ValueError, match="this table has no magnitude axis"):
        _ = t3.mag_edges


def test_insufficient_cells_are_nan_only_where_they_are_used(world):
    *_, sf = world
    t = sf.table.copy()
    hole = (t.i_theta_e == 1) & (t.i_psf == 1) & (t.i_depth == 1) & (t.i_mag == 3)
    t.loc[hole, "insufficient"] = True
    holed = SelectionFunction(t, sf.meta)
    c = holed.completeness(
        [1.5, 1.5, 1.5, 1.75, 1.5], [1.3, 1.3, 1.3, 1.3, 1.3], 24.0, [23.5, 22.5, 23.9, 23.2, 24.5]
    )
    assert np.isnan(c[[0, 2, 3]]).all()
    assert np.isfinite(c[[1, 4]]).all()  # on the neighbouring nodes: the hole has zero weight
    assert c[1] == pytest.approx(sf.completeness(1.5, 1.3, 24.0, 22.5)[0])
    # a NaN coordinate gives NaN, not a silent zero
    assert np.isnan(sf.completeness([1.5, np.nan], 1.3, 24.0, [22.5, 22.5])[1])
    assert np.isnan(sf.completeness(1.5, 1.3, 24.0, np.nan)[0]) and np.isnan(
        sf.completeness(np.nan, 1.3, 24.0)[0]
    )
    # the marginal is still sufficient there (n summed over the bins), so the 3-D query is finite
    assert np.isfinite(holed.completeness(1.5, 1.3, 24.0)).all()


def test_a_marginal_cell_is_insufficient_on_low_total_n_or_an_empty_weighted_bin():
    grid = cells(np.array([1.0, 2.0]), np.array([1.0]), np.array([24.0]))
    mags = np.r_[np.full(30, 20.5), np.full(30, 21.5), np.full(8, 20.5)]  # cell 1: nothing in bin 1
    inj = pd.DataFrame({"cell": np.r_[np.zeros(60, int), np.ones(8, int)], "detected": True, "src_mag": mags})
    t = completeness_table4(grid, inj, "src_mag", np.array([20.0, 21.0, 22.0]), SelectionConfig(), 5)
    sf = SelectionFunction(t, {"NMIN": 5})
    assert sf.marginalise("injection").table.insufficient.tolist() == [False, True]
    assert sf.marginalise([1.0, 0.0]).table.insufficient.tolist() == [False, False]
    assert sf.marginalise([1.0, 0.0]).table.n.tolist() == [30, 8]
    assert SelectionFunction(t, {"NMIN": 40}).marginalise([1.0, 0.0]).table.insufficient.tolist() == [
        True,
        True,
    ]


def test_without_a_magnitude_the_4d_table_answers_with_its_injection_marginal(world):
    *_, sf = world
    marg = sf.marginalise("injection")
    te, ps, dp = np.array([1.2, 2.3, 1.0]), np.array([1.1, 1.6, 1.45]), np.array([23.6, 24.5, 24.2])
    assert np.allclose(sf.completeness(te, ps, dp), marg.completeness(te, ps, dp))
    lo, hi = sf.interval(te, ps, dp)
    mlo, mhi = marg.interval(te, ps, dp)
    assert np.allclose(lo, mlo) and np.allclose(hi, mhi)


def test_design_matrix_reproduces_the_completeness_and_carries_the_table_variance(world):
    *_, sf = world
    rng = np.random.default_rng(3)
    te, ps, dp = rng.uniform(1.0, 2.5, 50), rng.uniform(1.0, 1.6, 50), rng.uniform(23.5, 24.5, 50)
    m = rng.uniform(20.0, 27.0, 50)
    c_mean, c_var = sf.table.c_mean.to_numpy(), sf.table.c_var.to_numpy()
    for mag in (m, None):
        w = sf.design_matrix(te, ps, dp, src_mag=mag)
        assert w.shape == (50, len(sf.table))
        assert np.allclose(np.asarray(w.sum(axis=1)).ravel(), 1.0)
        c = sf.completeness(te, ps, dp, src_mag=mag)
        ok = np.isfinite(c)
        # the marginal (mag None) sums the bins' detected fractions, the conditional their posterior means
        est = c_mean if mag is not None else sf.table.k.to_numpy() / sf.table.n.to_numpy()
        assert ok.sum() > 40 and np.allclose((w @ est)[ok], c[ok])
    # at a 4-D cell centre the table variance is that cell's; halfway between two bins a quarter of each
    row = sf.table.iloc[100]
    w1 = sf.design_matrix(row.theta_e, row.psf_fwhm, row.depth, row.src_mag)
    col = np.asarray(w1.sum(axis=0)).ravel()
    assert (col**2 * c_var).sum() == pytest.approx(row.c_var)
    nxt = sf.table.iloc[101]
    wh = sf.design_matrix(row.theta_e, row.psf_fwhm, row.depth, row.src_mag + 0.5)
    col = np.asarray(wh.sum(axis=0)).ravel()
    assert (col**2 * c_var).sum() == pytest.approx(0.25 * (row.c_var + nxt.c_var))
    # without a magnitude: the injection-prior weights, so the variance is the marginal's c_var
    w0 = sf.design_matrix(row.theta_e, row.psf_fwhm, row.depth)
    col = np.asarray(w0.sum(axis=0)).ravel()
    marg = sf.marginalise("injection").table
    assert (col**2 * c_var).sum() == pytest.approx(marg.c_var[marg.cell == row.cell].item())
    # a 3-D table's design matrix
    sf3 = SelectionFunction(marg)
    w3 = sf3.design_matrix(te, ps, dp)
    assert w3.shape == (50, len(marg)) and np.allclose(
        w3 @ marg.c_mean.to_numpy(), sf3.completeness(te, ps, dp)
    )


@pytest.mark.parametrize("fmt", ["fits", "parquet"])
def test_round_trip_keeps_axes_units_header_and_answers(world, tmp_path, fmt):
    from astropy.io import fits

    *_, sf = world
    meta = {**sf.meta, "THRESH": 0.42, "OPPOINT": "fpr=0.01", "GRIDMAG": "[20.0, 21.0]", "HOSTS": "all N1"}
    src = SelectionFunction(sf.table, meta)
    src.write(tmp_path / "sf.fits", tmp_path / "sf.parquet")
    h = fits.getheader(tmp_path / "sf.fits", "SELECTION")
    assert [h[f"TUNIT{i}"] for i in range(1, 5)] == ["arcsec", "arcsec", "mag", "mag"]
    assert [h[f"TTYPE{i}"] for i in range(1, 7)] == [
        "theta_e",
        "psf_fwhm",
        "depth",
        "src_mag",
        "src_mag_lo",
        "src_mag_hi",
    ]
    assert h["TUNIT5"] == h["TUNIT6"] == "mag"
    assert h["AXIS4"] == "src_mag" and h["PRIORM"] == PRIORM and h["AXIS4DSC"] == "unlensed source r mag"
    back = SelectionFunction.load(tmp_path / f"sf.{fmt}")
    assert {k: back.meta[k] for k in meta} == meta
    assert back.mag_axis == "src_mag" and np.allclose(back.mag_edges, EDGES)
    rng = np.random.default_rng(5)
    pts = (
        rng.uniform(1, 2.5, 40),
        rng.uniform(1, 1.6, 40),
        rng.uniform(23.5, 24.5, 40),
        rng.uniform(20, 27, 40),
    )
    assert np.array_equal(back.completeness(*pts), src.completeness(*pts), equal_nan=True)
    assert np.array_equal(back.completeness(*pts[:3]), src.completeness(*pts[:3]), equal_nan=True)
    assert np.array_equal(back.interval(*pts)[1], src.interval(*pts)[1], equal_nan=True)
    pd.testing.assert_frame_equal(
        back.marginalise("normal(24,1)").table, src.marginalise("normal(24,1)").table, check_dtype=False
    )


def test_a_generic_arc_magnitude_axis_with_an_undeclared_prior_uses_the_injections_own_distribution():
    grid, inj = _injections(per_cell=60, seed=1)
    inj = inj.rename(columns={"src_mag": "arc_mag"}).assign(arc_mag=lambda d: d.arc_mag - 2.0)
    edges = np.arange(18.0, 25.0 + 1e-9, 1.0)
    t = completeness_table4(grid, inj, "arc_mag", edges, SelectionConfig(), 5)
    sf = SelectionFunction(t, {"AXIS4": "arc_mag", "PRIORM": "none (from src_mag and mu priors)"})
    assert sf.mag_axis == "arc_mag" and SelectionFunction(t).mag_axis == "arc_mag"
    n = t.groupby("i_mag").n.sum().to_numpy()
    assert np.allclose(sf.prior_weights("injection"), n / n.sum())
    cell = t[(t.theta_e == 1.5) & (t.psf_fwhm == 1.3) & (t.depth == 24.0)]
    expected = cell[cell.arc_mag.isin([20.5, 21.5])].c_mean.mean()
    assert sf.completeness(1.5, 1.3, 24.0, 21.0)[0] == pytest.approx(expected)
    assert sf.marginalise("injection").meta["MARGAXIS"] == "arc_mag"


def test_a_marginal_round_trips_with_its_prior_and_variance(world, tmp_path):
    *_, sf = world
    marg = sf.marginalise("normal(24,1)")
    marg.write(tmp_path / "m.fits", tmp_path / "m.parquet")
    for name in ("m.fits", "m.parquet"):
        back = SelectionFunction.load(tmp_path / name)
        assert back.mag_axis is None and back.meta["MARGPRIO"] == "normal(24,1)"
        assert back.meta["MARGAXIS"] == "src_mag" and "AXIS4" not in back.meta
        assert np.allclose(back.table.c_var, marg.table.c_var)
        assert np.array_equal(back.completeness(1.7, 1.2, 24.1), marg.completeness(1.7, 1.2, 24.1))
