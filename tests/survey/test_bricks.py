from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.survey.bricks import (
    N_BRICKS,
    brick_at,
    brick_center,
    brick_from_id,
    brickid_from_radec,
    brickname_from_radec,
    coadd_path,
    sweep_filename,
)


def test_spec_example():
    assert brickname_from_radec(112.6, 22.2) == "1126p222"
    b = brick_center("1126p222")
    assert b.dec == 22.25 and b.ra1 < 112.6 < b.ra2 and b.subdir == "112"


def test_total_number_of_bricks():
    assert brick_from_id(N_BRICKS).dec == 90.0
    assert brickid_from_radec(0.0, 90.0) == N_BRICKS
    assert brickid_from_radec(0.0, -90.0) == 1


def test_real_bricks_reproduced_from_centres(dr10_reference):
    real = pd.read_csv(dr10_reference / "bricks_conditions.csv")
    assert len(real) == 44
    names = brickname_from_radec(real.ra.to_numpy(), real.dec.to_numpy())
    assert list(names) == list(real.brickname)
    for row in real.itertuples():
        b = brick_center(row.brickname)
        assert b.ra == pytest.approx(row.ra, abs=1e-9) and b.dec == pytest.approx(row.dec, abs=1e-9)
        assert (b.ra1, b.ra2, b.dec1, b.dec2) == pytest.approx(
            (row.ra1, row.ra2, row.dec1, row.dec2), abs=1e-9
        )
        assert brick_from_id(b.brickid) == b


def test_id_name_roundtrip_random():
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 500), rng.uniform(-89.8, 89.8, 500)
    ids = brickid_from_radec(ra, dec)
    for r, d, i in zip(ra[:50], dec[:50], ids[:50]):
        b = brick_from_id(int(i))
        assert b.ra1 <= r < b.ra2 + 1e-9 and b.dec1 <= d <= b.dec2
        assert brick_at(r, d) == b


def test_bad_name_is_a_clear_error():
    with pytest.raises(ValueError, match="not a DR10 brick name"):
        brick_center("11x6p22")


def test_paths():
    assert coadd_path("1126p222", "image", "r") == "112/1126p222/legacysurvey-1126p222-image-r.fits.fz"
    assert coadd_path("1126p222", "maskbits") == "112/1126p222/legacysurvey-1126p222-maskbits.fits.fz"
    assert sweep_filename(162.0, -7.0) == "sweep-160m010-165m005.fits"
    assert sweep_filename(1.0, 1.0) == "sweep-000p000-005p005.fits"
    assert sweep_filename(7.0, -3.0) == "sweep-005m005-010p000.fits"
