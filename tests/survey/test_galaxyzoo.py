"""The Galaxy Zoo DECaLS reader on a fixture in the real volunteers_5 column layout, and the sky's own
GZ-format catalogue and DESI SL VAC read back through the real readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lensaudit.errors import InputError
from lensaudit.survey.galaxyzoo import morphology, read_gz_decals

FIXTURE = Path(__file__).parent / "data" / "gz_decals_volunteers_5_fixture.csv"


def test_reader_on_the_real_layout_fixture():
    gz = read_gz_decals(FIXTURE)
    assert gz.iauname.tolist() == ["J094651.40-010228.5", "J112103.78+012434.2", "J134512.02-003011.9"]
    assert gz.ra.tolist() == pytest.approx([146.714167, 170.265750, 206.300083])
    assert gz.spiral.tolist() == pytest.approx([30 / 34, 1 / 3, 2 / 8])
    assert gz.edge_on.tolist() == pytest.approx([2 / 36, 28 / 31, 1 / 9])
    # merger = merging_merger + merging_major-disturbance fractions
    assert gz.merger.tolist() == pytest.approx([2 / 40, 4 / 40, 30 / 40])
    assert gz.total_votes.tolist() == [40, 40, 40]
    assert gz.ring.isna().all()  # GZ DECaLS has no ring question
    assert morphology(gz, 0.5).tolist() == ["spiral", "edge_on", "merger"]


def test_reader_reads_parquet_and_a_ring_label(tmp_path):
    df = pd.read_csv(FIXTURE).assign(ring=[0, 0, 1])
    p = tmp_path / "gz.parquet"
    df.to_parquet(p)
    gz = read_gz_decals(p)
    assert gz.ring.tolist() == [0, 0, 1]
    assert morphology(gz, 0.5).tolist() == ["spiral", "edge_on", "merger"]  # merger wins over ring
    assert morphology(gz.assign(merger=0.0), 0.5).tolist()[2] == "ring"


def test_reader_names_the_missing_column_and_the_missing_file(tmp_path):
    p = tmp_path / "gz.csv"
    pd.read_csv(FIXTURE).drop(columns=["has-spiral-arms_yes_fraction"]).to_csv(p, index=False)
    with pytest.raises(InputError, match="has-spiral-arms_yes_fraction"):
        read_gz_decals(p)
    with pytest.raises(InputError, match="not found"):
        read_gz_decals(tmp_path / "absent.csv")


def test_the_sky_writes_a_gz_catalogue_whose_votes_follow_its_truth(tiny_sky):
    from lensaudit.audit.galaxyzoo import crossmatch

    gz = read_gz_decals(tiny_sky / "gz_decals_volunteers_5.parquet")
    truth = pd.read_parquet(tiny_sky / "truth.parquet")
    gals = truth[(truth.galaxy_id != "") & (truth.kind != "star")]
    assert len(gz) == len(gals)
    lab = crossmatch(gals, gz, 0.5)
    assert (lab != "").all()
    spir = lab[gals.kind == "spiral"]
    other = lab[gals.kind == "galaxy"]
    assert len(spir) and (spir == "spiral").mean() > (other == "spiral").mean() + 0.3
    edge = lab[gals.kind == "edge_on"]
    assert len(edge) and (edge == "edge_on").mean() > 0.5


def test_the_sky_writes_a_vac_in_the_real_layout(tiny_sky):
    from astropy.io import fits

    from lensaudit.survey.lenses import read_desi_sl_vac

    p = tiny_sky / "desi-sl-vac-v1.fits"
    with fits.open(p) as h:
        names = h["DESI_SL_CATALOG"].columns.names
        assert names[:17] == [
            "TARGETID", "SURVEY", "PROGRAM", "HEALPIX", "SPGRPVAL", "Z", "ZERR", "ZWARN", "CHI2", "COEFF",
            "NPIXELS", "SPECTYPE", "SUBTYPE", "NCOEFF", "DELTACHI2", "COADD_FIBERSTATUS", "TARGET_RA",
        ]  # fmt: skip
        assert {"TARGET_DEC", "BRICKNAME", "MORPHTYPE", "FLUX_G", "FLUX_R", "FLUX_Z"} <= set(names)
        assert h["DESI_SL_CATALOG"].data["COEFF"].shape[1:] == (10,)
    vac = read_desi_sl_vac(p)
    truth = pd.read_parquet(tiny_sky / "truth.parquet")
    lenses = truth[truth.is_lens & (truth.galaxy_id != "")]
    unknown = lenses[~lenses.in_lenses_csv]
    assert len(unknown) <= len(vac) <= len(lenses)
    # every VAC system is a rendered lens, and every lens only DESI found is in it
    d = np.hypot(
        vac.ra.to_numpy()[:, None] - lenses.ra.to_numpy()[None],
        vac.dec.to_numpy()[:, None] - lenses.dec.to_numpy()[None],
    )
    assert (d.min(axis=1) < 1e-6).all()
    du = np.hypot(
        unknown.ra.to_numpy()[:, None] - vac.ra.to_numpy()[None],
        unknown.dec.to_numpy()[:, None] - vac.dec.to_numpy()[None],
    )
    assert len(unknown) == 0 or (du.min(axis=1) < 1e-6).all()
