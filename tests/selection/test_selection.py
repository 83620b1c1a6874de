"""Selection function pieces: Beta intervals, grid cells, insufficient marking, FITS/Parquet round trip,
interpolation, host degradation statistics, realism gates in both directions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lensaudit.config import SelectionConfig
from lensaudit.selection.binomial import beta_posterior
from lensaudit.selection.completeness import completeness_table
from lensaudit.selection.degrade import degrade
from lensaudit.selection.grid import assign_cell, axis, cells
from lensaudit.selection.realism import colour_gates, measured_arc, snr_gates
from lensaudit.selection.table import SelectionFunction


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (57, 200)])
def test_beta_posterior_matches_scipy(k, n):
    p = beta_posterior(k, n, "jeffreys", (0.68, 0.95))
    a, b = k + 0.5, n - k + 0.5
    assert p["mean"] == pytest.approx(a / (a + b))
    assert p["lo68"] == pytest.approx(stats.beta.ppf(0.16, a, b)) and p["hi95"] == pytest.approx(
        stats.beta.ppf(0.975, a, b)
    )
    u = beta_posterior(k, n, "uniform")
    assert u["mean"] == pytest.approx((k + 1) / (n + 2))


def test_grid_axes_and_cell_assignment():
    te = axis((0.5, 3.0, 0.25))
    assert len(te) == 11 and te[-1] == 3.0
    assert len(cells(te, axis((0.9, 1.8, 0.15)), axis((22.5, 24.5, 0.5)))) == 385
    assert assign_cell([0.5, 0.62, 0.63, 3.1, 3.2], te).tolist() == [0, 0, 1, 10, -1]


def _table():
    grid = cells(np.array([1.0, 2.0]), np.array([1.0, 1.5]), np.array([24.0]))
    rows = []
    for c in grid.itertuples():
        n = 5 if c.cell == 3 else 40
        k = int(n * (0.2 + 0.3 * c.theta_e - 0.2 * (c.psf_fwhm - 1)))
        rows += [{"cell": c.cell, "detected": i < k} for i in range(n)]
    return completeness_table(grid, pd.DataFrame(rows), SelectionConfig(n_min=20))


def test_insufficient_roundtrip_and_interpolation(tmp_path):
    t = _table()
    assert t.insufficient.tolist() == [False, False, False, True]
    sf = SelectionFunction(t, {"THRESH": 0.5, "OPPOINT": "fpr=0.01"})
    sf.write(tmp_path / "sf.fits", tmp_path / "sf.parquet")
    for p in ("sf.fits", "sf.parquet"):
        back = SelectionFunction.load(tmp_path / p)
        pd.testing.assert_frame_equal(
            back.table[["theta_e", "n", "k", "c_mean"]].reset_index(drop=True),
            t[["theta_e", "n", "k", "c_mean"]].reset_index(drop=True),
            check_dtype=False,
        )
    from astropy.io import fits

    h = fits.open(tmp_path / "sf.fits")["SELECTION"].header
    assert h["THRESH"] == 0.5 and h["TUNIT1"] == "arcsec"
    c00, c10 = t.c_mean.iloc[0], t.c_mean.iloc[2]
    assert sf.completeness(1.5, 1.0, 24.0)[0] == pytest.approx((c00 + c10) / 2)
    assert np.isnan(sf.completeness(2.0, 1.5, 24.0)[0])  # insufficient cell
    lo, hi = sf.interval([1.0], [1.0], [24.0])
    assert lo[0] < c00 < hi[0]
    with pytest.raises(ValueError, match="outside the grid"):
        sf.completeness(3.5, 1.0, 24.0)


def _star_field(fwhm, sigma, seed, n=101):
    import galsim

    rng = np.random.default_rng(seed)
    img = galsim.Moffat(beta=3.5, fwhm=fwhm).drawImage(nx=n, ny=n, scale=0.262).array * 50.0
    return np.stack([img + rng.normal(0, sigma, img.shape) for _ in range(3)]).astype(np.float32)


def _fwhm(img):
    from lensaudit.sky.check import _fit_fwhm

    return _fit_fwhm(img[1, 38:63, 38:63].astype(float), 3.5)


def test_degraded_host_matches_native_conditions():
    s_good, depth_good, fwhm_good = 0.002, 24.6, 1.0
    fwhm_t, depth_t = 1.4, 24.0
    s_t = s_good * 10 ** (0.4 * (depth_good - depth_t)) * fwhm_good / fwhm_t
    host = _star_field(fwhm_good, s_good, 1)
    iv = np.full_like(host, 1 / s_good**2)
    deg, deg_iv = degrade(host, iv, fwhm_good, depth_good, fwhm_t, depth_t, np.random.default_rng(2))
    native = _star_field(fwhm_t, s_t, 3)
    assert _fwhm(deg) == pytest.approx(_fwhm(native), rel=0.03)
    mad = lambda x: np.median(np.abs(x[:, :20, :20] - np.median(x[:, :20, :20])))  # noqa: E731
    assert mad(deg) == pytest.approx(mad(native), rel=0.05)
    assert deg_iv[1, 0, 0] == pytest.approx(1 / s_t**2)
    with pytest.raises(ValueError):
        degrade(host, iv, 1.4, 24.0, 1.0, 24.0, np.random.default_rng(0))


def _arc_stamps(n, amp, seed):
    from lensaudit.lensing import inject, sample_systems

    rng = np.random.default_rng(seed)
    host = rng.normal(0, 0.003, (n, 3, 101, 101)).astype(np.float32)
    s = sample_systems(
        n,
        rng.uniform(1, 2.5, n),
        {
            "src_mag_r": (22.5 - 2.5 * np.log10(amp), 23.5 - 2.5 * np.log10(amp)),
            "magnification": (5, 15),
            "src_reff": (0.1, 0.3),
            "src_n": (0.7, 1.5),
            "src_q": (0.5, 1),
            "lens_q": (0.7, 1),
        },
        rng,
        {"g": 1.4, "r": 1.3, "z": 1.2},
    )
    return inject(host, np.full_like(host, 1 / 0.003**2), s, rng=seed)[0]


def test_realism_gates_fail_on_ten_times_too_bright_and_pass_on_matched():
    real = measured_arc(_arc_stamps(150, 1.0, 1))
    same = measured_arc(_arc_stamps(150, 1.0, 2))
    bright = measured_arc(_arc_stamps(40, 10.0, 3))
    assert all(g.status == "pass" for g in snr_gates(same["snr"], real["snr"], (0.5, 2.0)))
    assert all(g.status == "fail" for g in snr_gates(bright["snr"], real["snr"], (0.5, 2.0))[1:])
    assert all(g.status == "pass" for g in colour_gates(same, real, 0.2))


def test_snr_gate_compares_differences_where_the_real_percentile_is_noise():
    rng = np.random.default_rng(4)
    real = rng.normal(0.0, 1.0, 400) + np.r_[np.zeros(200), np.full(200, 8.0)]  # p10 ≈ −0.9σ: no arc light
    close = rng.normal(0.0, 1.0, 400) + np.r_[np.zeros(200), np.full(200, 8.0)]
    far = close + np.r_[np.full(200, 5.0), np.zeros(200)]  # faint half 5σ too bright
    g_close = {g.name: g for g in snr_gates(close, real, (0.5, 2.0))}
    g_far = {g.name: g for g in snr_gates(far, real, (0.5, 2.0))}
    assert "difference is gated" in g_close["arc_snr_p10_ratio"].message
    assert g_close["arc_snr_p10_ratio"].status == "pass"
    assert g_far["arc_snr_p10_ratio"].status == "fail"
    assert g_close["arc_snr_p90_ratio"].status == "pass"  # ratio path for significant percentiles


def test_deflector_hosts_follow_the_positives_window():
    from lensaudit.selection.hosts import host_pool

    rng = np.random.default_rng(5)
    n = 400
    label = (np.arange(n) < 100).astype(int)
    mag = np.where(label == 1, rng.uniform(19, 21, n), rng.uniform(17, 23, n))
    g_r = np.where(label == 1, rng.uniform(1.2, 1.6, n), rng.uniform(0.2, 1.8, n))
    typ = np.where(label == 1, rng.choice(["DEV", "SER"], n), rng.choice(["DEV", "SER", "REX"], n))
    r_z = np.where(label == 1, rng.uniform(0.9, 1.4, n), rng.uniform(0.3, 1.6, n))
    sample = pd.DataFrame(
        {
            "galaxy_id": [f"g{i}" for i in range(n)],
            "label": label,
            "mag_r": mag,
            "g_r": g_r,
            "r_z": r_z,
            "type": typ,
            "split": np.where(label == 1, "train", "test"),
            "pool": np.where(label == 1, "positive", "N1"),
        }
    )
    stamps = pd.DataFrame({"row": np.arange(n), "galaxy_id": sample.galaxy_id, "quality_ok": True})
    everyone, info_all = host_pool(sample, stamps, "all")
    hosts, info = host_pool(sample, stamps, "deflector")
    assert info_all["hosts"] == 300 and 0 < info["hosts"] < 300
    assert set(hosts.type) <= {"DEV", "SER"} and "REX" in set(everyone.type)
    lo, hi = info["window"]["mag_r"]
    assert hosts.mag_r.between(lo, hi).all() and 19 <= lo < hi <= 21
    assert hosts.g_r.min() >= info["window"]["g_r"][0] >= 1.2
    assert hosts.r_z.between(*info["window"]["r_z"]).all() and info["window"]["r_z"][0] >= 0.9  # both colours
    # the finder's own candidates among them leave the pool, in both host populations
    flagged = [hosts.galaxy_id.iloc[0], everyone.galaxy_id.iloc[-1], "not-a-host"]
    kept, info_x = host_pool(sample, stamps, "deflector", exclude=flagged)
    assert info_x["candidates_excluded"] == 1 + int(flagged[1] in set(hosts.galaxy_id))
    assert info_x["hosts"] == info["hosts"] - info_x["candidates_excluded"]
    assert not set(flagged) & set(kept.galaxy_id) and kept.host_weight.notna().all()
    kept_all, _ = host_pool(sample, stamps, "all", exclude=flagged)
    assert len(kept_all) == 298 and not set(flagged) & set(kept_all.galaxy_id)
    # a size column in the match (inject.deflector_bins) adds its window: the hosts larger than every
    # positive leave, and the weights follow the positives' size terciles too
    sized = sample.assign(shape_r=np.where(label == 1, rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 3.0, n)))
    by_mag, info_m = host_pool(sized, stamps, "deflector", match_bins={"mag_r": 4})
    by_size, info_s = host_pool(sized, stamps, "deflector", match_bins={"mag_r": 4, "shape_r": 3})
    lo, hi = info_s["window"]["shape_r"]
    assert 0.5 <= lo < hi <= 1.0 and by_size.shape_r.between(lo, hi).all()
    assert 0 < info_s["hosts"] < info_m["hosts"] and set(by_size.galaxy_id) <= set(by_mag.galaxy_id)
    assert by_size.host_weight.sum() > 0 and "shape_r" not in info["window"]


def test_realism_comparison_reweights_injections_to_the_real_conditions():
    from lensaudit.selection.realism import condition_weights

    main = pd.DataFrame(
        {
            "psf_cell": [1.0] * 10 + [1.3] * 20 + [1.3] * 5,
            "depth_cell": [24.0] * 10 + [24.0] * 20 + [24.5] * 5,
        }
    )
    pos = pd.DataFrame({"psfsize_r": [1.28, 1.35, 1.31, 1.02], "psfdepth_mag_r": [24.6, 24.4, 24.9, 23.9]})
    w = condition_weights(main, pos)
    assert w.sum() == pytest.approx(1.0)
    assert w[:10].sum() == pytest.approx(0.25) and w[30:].sum() == pytest.approx(0.75) and w[10:30].sum() == 0
    assert np.allclose(w[30:], w[30])  # shared equally inside a cell


def test_mixed_source_models_in_one_batch_for_the_morphology_bracket():
    from lensaudit.lensing import sample_systems

    prior = {
        "src_mag_r": (22.5, 23.5),
        "magnification": (5, 15),
        "src_reff": (0.1, 0.3),
        "src_n": (0.7, 1.5),
        "src_q": (0.5, 1),
        "lens_q": (0.7, 1),
    }
    models = np.array(["sersic", "clumpy"] * 4)
    s = sample_systems(
        8, 1.5, prior, np.random.default_rng(0), {"g": 1.4, "r": 1.3, "z": 1.2}, source_model=models
    )
    frac = s.clump_frac.numpy()
    assert (frac[models == "sersic"] == 0).all() and (frac[models == "clumpy"] >= 0.2).all()
    plain = sample_systems(
        8, 1.5, prior, np.random.default_rng(0), {"g": 1.4, "r": 1.3, "z": 1.2}, source_model="sersic"
    )
    assert plain.clump_frac.numel() == 0


def test_probe_groups_by_host_so_recurring_hosts_are_not_mistaken_for_unrealistic_arcs():
    from lensaudit.selection.realism import probe_gate

    rng = np.random.default_rng(7)
    d = 32
    real = rng.normal(0, 1, (300, d))  # 300 distinct real lenses
    host_vec = rng.normal(0, 1, (15, d))  # 15 hosts, each reused 20 times
    host_id = np.repeat(np.arange(15), 20)
    inj = host_vec[host_id] + rng.normal(
        0, 0.3, (300, d)
    )  # same population as the real ones, arcs indistinguishable
    plain, _ = probe_gate(real, inj, 0.7, 0.85, seed=0)
    grouped, res = probe_gate(real, inj, 0.7, 0.85, seed=0, groups_real=np.arange(300), groups_inj=host_id)
    assert plain.value > 0.8  # memorised hosts look "unrealistic"
    assert grouped.value < 0.7 and grouped.status == "pass" and res["grouped_by_host"]
    fake, _ = probe_gate(real, inj + 1.0, 0.7, 0.85, seed=0, groups_real=np.arange(300), groups_inj=host_id)
    assert fake.status == "fail"  # a real difference in the arcs is still caught


def _noise_world(scale: float, host_level: float = 0.0, n: int = 24):
    """Arcs injected with the engine into noisy hosts; the added noise (stamp − host − arc) rescaled by
    ``scale`` (0: left out). Returns (stamps, hosts, host invvar)."""
    from lensaudit.lensing import inject, sample_systems

    rng = np.random.default_rng(11)
    host = (host_level + rng.normal(0, 0.003, (n, 3, 101, 101))).astype(np.float32)
    iv = np.full_like(host, 1 / 0.003**2)
    prior = {
        "src_mag_r": (21.5, 22.5),
        "magnification": (5, 15),
        "src_reff": (0.1, 0.3),
        "src_n": (0.7, 1.5),
        "src_q": (0.5, 1),
        "lens_q": (0.7, 1),
    }
    s = sample_systems(n, rng.uniform(1, 2.5, n), prior, rng, {"g": 1.4, "r": 1.3, "z": 1.2})
    stamps, info = inject(host, iv, s, rng=rng, supersample=2)
    arc = info["noiseless_arc"].astype(np.float64)
    added = stamps.astype(np.float64) - host - arc
    return (host + arc + scale * added).astype(np.float32), host, iv


@pytest.mark.parametrize("scale,ok", [(1.0, True), (1.5, False), (0.0, False)])
def test_noise_sigma_ratio_measures_the_added_noise_against_the_untouched_host(scale, ok):
    from lensaudit.selection.realism import noise_sigma_ratios, noise_z

    stamps, host, iv = _noise_world(scale)
    res = noise_sigma_ratios([noise_z(stamps, host, iv, "invvar")], seed=0)
    for r in res:
        assert r["n_pix"] > 1000
        assert (abs(r["value"] - 1) <= 0.05) == ok, r
        # the ratio is the scale; without noise only the arc's leakage through the high-pass is left
        assert abs(r["value"] - scale) < 0.06 if scale else r["value"] < 0.2, r
        assert r["ci68"][0] <= r["value"] <= r["ci68"][1]


def test_noise_sigma_ratio_is_not_fooled_by_float32_rounding_of_bright_hosts():
    """Bright hosts (0.5 nanomaggies, ulp 6e-8): the rounding of the stamp adds variance where the added noise
    is tiny; those pixels are left out, so the ratio stays 1."""
    from lensaudit.selection.realism import noise_sigma_ratios, noise_z

    stamps, host, iv = _noise_world(1.0, host_level=0.5)
    res = noise_sigma_ratios([noise_z(stamps, host, iv, "invvar")], seed=0)
    assert all(abs(r["value"] - 1) < 0.05 for r in res), res


def test_colour_gate_sees_a_colour_offset_in_full_with_unclipped_fluxes():
    """Arcs 0.3 mag redder in g − r: the gate on the unclipped annulus colour fails at 0.2 mag (clipping
    negative residual pixels pulls faint arcs' colours together: on the demo it moved a 0.3 mag offset by
    0.09), while a second sample of the same arcs passes."""
    from lensaudit.lensing import inject, sample_systems

    def arcs(seed: int, redder: float) -> np.ndarray:
        rng = np.random.default_rng(seed)
        host = rng.normal(0, 0.003, (120, 3, 101, 101)).astype(np.float32)
        prior = {
            "src_mag_r": (22.0, 23.5),
            "magnification": (5, 15),
            "src_reff": (0.1, 0.3),
            "src_n": (0.7, 1.5),
            "src_q": (0.5, 1),
            "lens_q": (0.7, 1),
        }
        s = sample_systems(120, rng.uniform(1, 2.5, 120), prior, rng, {"g": 1.4, "r": 1.3, "z": 1.2})
        s.src_mag["g"] = s.src_mag["g"] + redder
        return inject(host, np.full_like(host, 1 / 0.003**2), s, rng=seed, supersample=2)[0]

    real = measured_arc(arcs(1, 0.0), clip=False)
    red = measured_arc(arcs(2, 0.3), clip=False)
    same = measured_arc(arcs(3, 0.0), clip=False)
    g_red = {g.name: g for g in colour_gates(red, real, 0.2)}["arc_colour_g_r_diff"]
    assert g_red.value > 0.2 and g_red.status == "fail"
    assert all(g.status == "pass" for g in colour_gates(same, real, 0.2))
