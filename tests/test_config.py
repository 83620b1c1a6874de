from __future__ import annotations

import pytest

from lensaudit.config import RunConfig, config_reference_markdown, dump_config, load_config
from lensaudit.errors import ConfigError


def test_defaults_encode_documented_decisions():
    c = RunConfig()
    assert c.catalog.nside == 128
    assert c.catalog.split_fractions == {"train": 0.70, "val": 0.15, "test": 0.15}
    assert c.catalog.exclusion_radius_arcsec == 11.0
    assert c.sample.neg_per_pos == 100 and c.sample.n1_fraction == 0.85
    assert c.catalog.types == ["SER", "DEV", "REX"]
    assert (c.positives.tier_a_weight, c.positives.tier_b_weight) == (1.0, 0.5)
    assert (c.cutouts.size_pix, c.cutouts.pixscale_arcsec, c.cutouts.bands) == (101, 0.262, "grz")
    assert c.inject.theta_e_grid == (0.5, 3.0, 0.25)
    assert c.inject.psf_grid == (0.9, 1.8, 0.15)
    assert c.inject.depth_grid == (22.5, 24.5, 0.5)
    assert c.inject.n_per_cell >= 200
    assert c.selection.interval == 0.68 and c.evaluate.interval == 0.68
    assert c.train.arch == "resnet18" and 20 <= c.train.epochs <= 40


def test_unknown_key_names_the_field(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key"):
        load_config(p)


def test_out_of_range_names_field_and_range():
    with pytest.raises(ConfigError, match=r"catalog\.exclusion_radius_arcsec.*allowed: > 0.0"):
        load_config(None, ["catalog.exclusion_radius_arcsec=-1"])
    with pytest.raises(ConfigError, match=r"sample\.n1_fraction.*≤ 1.0"):
        load_config(None, ["sample.n1_fraction=1.5"])


def test_nside_must_be_power_of_two_and_splits_sum_to_one():
    with pytest.raises(ConfigError, match="catalog.nside"):
        load_config(None, ["catalog.nside=100"])
    with pytest.raises(ConfigError, match="split_fractions"):
        load_config(None, ["catalog.split_fractions={train: 0.5, val: 0.2, test: 0.2}"])


def test_operating_point_is_checked_when_the_config_loads():
    assert load_config(None, ["evaluate.operating_point=fpr=0.050"]).evaluate.operating_point == "fpr=0.05"
    for bad in ("fpr=5", "recall=0.9", "score=abc"):
        with pytest.raises(ConfigError, match=r"evaluate\.operating_point.*'score=S' or 'fpr=F'"):
            load_config(None, [f"evaluate.operating_point={bad}"])


def test_overrides_are_typed_and_run_dir_wins(tmp_path):
    c = load_config(
        None, ["train.lr=3e-4", "catalog.types=[DEV, SER]", "train.augment=false"], run_dir=tmp_path
    )
    assert (
        c.train.lr == pytest.approx(3e-4) and c.catalog.types == ["DEV", "SER"] and c.train.augment is False
    )
    assert c.run_dir == tmp_path
    assert c.sky_dir == tmp_path / "sky"


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_demo_config_loads_and_dump_roundtrips(tmp_path):
    from pathlib import Path

    from lensaudit.cli import DEFAULT_CONFIG

    c = load_config(Path(__file__).resolve().parents[1] / DEFAULT_CONFIG)
    p = tmp_path / "dump.yaml"
    p.write_text(dump_config(c))
    assert load_config(p) == c


def test_config_reference_lists_every_section():
    md = config_reference_markdown()
    for section in RunConfig.model_fields:
        assert f"## `{section}`" in md


def test_deflector_match_columns_are_checked_when_the_config_loads():
    c = load_config(None, ["inject.deflector_bins={mag_r: 4, g_r: 3, shape_r: 3}"])
    assert c.inject.deflector_bins == {"mag_r": 4, "g_r": 3, "shape_r": 3}
    from lensaudit.selection.hosts import DEFLECTOR_MATCH

    assert RunConfig().inject.deflector_bins == DEFLECTOR_MATCH == {"mag_r": 4, "g_r": 3, "r_z": 3}
    with pytest.raises(ConfigError, match=r"inject\.deflector_bins"):
        load_config(None, ["inject.deflector_bins={mag_r: 0}"])
    with pytest.raises(ConfigError, match=r"inject\.deflector_bins"):
        load_config(None, ["inject.deflector_bins={flux_w1: 3}"])
    with pytest.raises(ConfigError, match=r"inject\.deflector_bins"):
        load_config(None, ["inject.deflector_bins={}"])
