"""The FITS ingest: fitsio (the stage's reader) gives the former astropy reader's DataFrame bit for bit, and
reads row ranges."""

from __future__ import annotations

import pandas as pd
import pytest
from astropy.io import fits

from lensaudit.catalog.columns import SWEEP_READ
from lensaudit.errors import InputError
from lensaudit.survey.sweeps import _read_hdu, read_sweep, sweep_nrows


def test_fitsio_reader_equals_astropy_and_reads_row_ranges(tiny_sky, tmp_path):
    f = sorted((tiny_sky / "sweep").glob("sweep-*.fits"))[0]
    with fits.open(f, memmap=True) as h:
        ref_all = _read_hdu(h, str(f), None)
        ref = _read_hdu(h, str(f), SWEEP_READ)
    pd.testing.assert_frame_equal(read_sweep(f), ref_all, check_exact=True)
    got = read_sweep(f, SWEEP_READ)
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    n = sweep_nrows(f)
    assert n == len(ref) > 10
    part = read_sweep(f, SWEEP_READ, rows=(3, n - 2))
    pd.testing.assert_frame_equal(part, ref.iloc[3 : n - 2].reset_index(drop=True), check_exact=True)
    with pytest.raises(InputError, match="missing sweep columns"):
        read_sweep(f, ["RA", "NOT_A_COLUMN"])
    bad = tmp_path / "sweep-bad.fits"
    bad.write_bytes(b"\0" * 2880 * 2)
    with pytest.raises(InputError, match="sweep-bad.fits"):
        sweep_nrows(bad)
