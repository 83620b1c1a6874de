"""Paired systematics (PSF β bracket, inner-image ablation), the injection metadata and the stress set."""

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection.injection import PARAMETER_COLUMNS, STRESS_PRIOR, draw_systems, paired_variants
from lensaudit.selection.systematics import paired_shift, paired_summary, pairs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "lensing.md"


def _rows(variants, cells=(0, 1), n=3, draw=None):
    rows = []
    for v in variants:
        for c in cells:
            for j in range(n):
                beta = float(v[9:]) if v.startswith("psf_beta_") else 3.5
                rows.append(
                    {
                        "variant": v,
                        "draw": draw or ("main" if v != "morphology" else v),
                        "cell": c,
                        "index": j,
                        "theta_e": 1.0 + c,
                        "psf_beta": beta,
                        "suppress_inner": v == "no_inner",
                    }
                )
    return pd.DataFrame(rows)


def test_paired_variants_repeat_the_main_system_and_change_only_their_one_thing():
    cfg = InjectConfig(n_per_cell=3, morphology_bracket=True)
    assert paired_variants(cfg) == ["psf_beta_2.5", "psf_beta_4.5", "no_inner"]
    b = _rows(["main", "psf_beta_2.5", "no_inner", "morphology"])
    psf = {band: np.full(len(b), 1.3) for band in "grz"}
    s, models = draw_systems(cfg, b, psf, seed=5)
    main, beta, inner = (np.flatnonzero(b.variant == v) for v in ("main", "psf_beta_2.5", "no_inner"))
    for name in ("theta_e", "q", "phi", "gamma1", "gamma2", "src_reff", "src_n", "src_x", "src_y"):
        t = getattr(s, name).numpy()
        np.testing.assert_array_equal(t[main], t[beta], err_msg=name)
        np.testing.assert_array_equal(t[main], t[inner], err_msg=name)
    for band in "grz":
        np.testing.assert_array_equal(s.src_mag[band].numpy()[main], s.src_mag[band].numpy()[beta])
    assert (s.psf_beta.numpy()[beta] == 2.5).all() and (s.psf_beta.numpy()[main] == 3.5).all()
    # the morphology bracket draws its own systems, with the other source model
    morph = np.flatnonzero(b.variant == "morphology")
    assert not np.array_equal(s.src_x.numpy()[morph], s.src_x.numpy()[main])
    assert set(models[morph]) == {"clumpy"} and set(models[main]) == {"sersic"}
    # a row's system does not depend on the batch it is drawn in
    s1, _ = draw_systems(cfg, b.iloc[::-1].reset_index(drop=True), {k: v[::-1] for k, v in psf.items()}, 5)
    np.testing.assert_array_equal(s1.src_x.numpy()[::-1], s.src_x.numpy())


def test_stress_rows_draw_from_the_stress_prior():
    cfg = InjectConfig()
    b = _rows(["stress"], cells=(-1,), n=200, draw="stress").assign(theta_e=1.2)
    s, _ = draw_systems(cfg, b, {band: np.full(len(b), 1.3) for band in "grz"}, seed=1)
    lo, hi = STRESS_PRIOR["src_reff"]
    assert (s.src_reff.numpy() >= lo).all() and (s.src_reff.numpy() <= hi).all()
    m = s.src_mag["r"].numpy()
    assert m.min() >= STRESS_PRIOR["src_mag_r"][0] and m.max() <= STRESS_PRIOR["src_mag_r"][1]


def test_paired_shift_is_the_mean_paired_difference_with_its_error():
    rng = np.random.default_rng(0)
    main = pd.DataFrame(
        {
            "variant": "main",
            "cell": 0,
            "index": np.arange(400),
            "theta_e": 1.0,
            "detected": rng.random(400) < 0.6,
        }
    )
    # the variant loses every 5th detection of main: ΔC = −(detected & index % 5 == 0) / n
    lost = main.detected & (main["index"] % 5 == 0)
    alt = main.assign(variant="psf_beta_2.5", detected=main.detected & ~lost)
    inj = pd.concat([main, alt])
    p = pairs(inj, "psf_beta_2.5")
    r = paired_shift(p, "cell").iloc[0]
    assert r.n == 400 and np.isclose(r.delta, -lost.mean())
    assert r.lo < r.delta < r.hi and r.hi - r.lo < 0.05  # paired: far tighter than two independent draws
    summary = paired_summary(inj, ["psf_beta_2.5", "no_inner"], 0.68)
    assert [v["variant"] for v in summary] == ["psf_beta_2.5"]  # no_inner absent: no row
    assert np.isclose(summary[0]["delta"], -lost.mean())


def test_injection_metadata_has_at_least_15_documented_parameter_columns():
    assert len(PARAMETER_COLUMNS) >= 15
    text = DOCS.read_text()
    missing = [
        c for c in (*PARAMETER_COLUMNS, "image_x", "image_y", "image_mu", "n_images") if f"`{c}`" not in text
    ]
    assert not missing, f"docs/lensing.md does not document {missing}"


def test_stress_summary_reports_recall_and_the_grid_prediction():
    from lensaudit.selection import conditional
    from lensaudit.selection.completeness import provenance
    from lensaudit.selection.grid import grid_of
    from lensaudit.selection.systematics import stress_summary

    icfg = InjectConfig(theta_e_grid=(0.5, 2.0, 0.5), psf_grid=(1.2, 1.5, 0.3), depth_grid=(24.5, 24.5, 0.5))
    scfg = SelectionConfig()
    grid, _ = grid_of(icfg)
    rng = np.random.default_rng(1)
    n_cell = 400
    inj = pd.concat(
        [
            pd.DataFrame(
                {
                    "variant": "main",
                    "cell": c.cell,
                    "theta_e": c.theta_e,
                    "src_mag_r": (m := rng.uniform(*icfg.src_mag_r_range, n_cell)),
                    "arc_mag_r": m - 2.5,
                    "detected": rng.random(n_cell) < 0.5,  # a flat completeness of one half
                }
            )
            for c in grid.itertuples()
        ],
        ignore_index=True,
    )
    meta = provenance(icfg, scfg, "0" * 64, 0.5, "fpr=0.01", "GO")
    sf = conditional.build_tables(grid, inj, icfg, scfg, meta).by_axis["src_mag"]
    n = 300
    stress = pd.DataFrame(
        {
            "variant": "stress",
            "theta_e": rng.uniform(0.6, 1.8, n),
            "psf_r": 1.3,
            "depth_cell": 24.5,
            "src_mag_r": rng.uniform(21, 24, n),
            "arc_mag_r": 20.0,
            "score": rng.random(n),
        }
    )
    stress["detected"] = stress.score >= 0.5
    out = stress_summary(pd.concat([inj, stress], ignore_index=True), sf, 0.5, scfg)
    assert out is not None and out["n"] == n and out["k"] == int(stress.detected.sum())
    assert sum(r["n"] for r in out["by_theta_e"]) == n
    assert out["lo"] < out["recall"] < out["hi"]
    assert out["grid_n_predicted"] == n and abs(out["grid_expected"] - n / 2) < 3 * out["grid_sigma"]
    assert abs(out["grid_pull"]) < 3
    # a finder that misses every compact source: the grid over-predicts it, loudly
    worse = stress.assign(score=0.0, detected=False)
    bad = stress_summary(pd.concat([inj, worse], ignore_index=True), sf, 0.5, scfg)
    assert bad is not None and bad["recall"] < 0.01 and bad["grid_pull"] < -5
