"""Store, quality metrics, npz import of the real predecessor cutouts, and the service client against the
real server with faults."""

from __future__ import annotations

import glob

import numpy as np
import pandas as pd
import pytest

from lensaudit.sky.server import FaultConfig, serve
from lensaudit.stamps.npz import read_npz
from lensaudit.stamps.quality import quality_metrics
from lensaudit.stamps.store import StampStore
from lensaudit.survey.coadds import cutout_from_coadds
from lensaudit.survey.cutout_service import CutoutClient, cutout_url


def test_store_roundtrip_and_holes(tmp_path):
    s = StampStore.create(tmp_path / "s.zarr", 10, size=101, shard_size=4)
    img = np.random.default_rng(0).normal(size=(4, 3, 101, 101)).astype(np.float32)
    s.write(4, img, img * 0 + 1, np.zeros((4, 101, 101)))
    s2 = StampStore.open(tmp_path / "s.zarr")
    assert s2.written_rows().tolist() == [False] * 4 + [True] * 4 + [False] * 2
    got, iv, mb = s2.read([6, 4])
    np.testing.assert_array_equal(got, img[[2, 0]])
    assert np.isnan(s2.read_image(0)).all()


def test_real_npz_import_preserves_pixels(dr10_reference):
    files = sorted(glob.glob(str(dr10_reference / "cutouts" / "*.npz")))
    assert len(files) == 4
    for f in files:
        chw, meta = read_npz(f)
        raw = np.load(f)["cutout"]
        assert chw.shape == (3, 101, 101)
        np.testing.assert_array_equal(chw[1], raw[:, :, 1])
        np.testing.assert_array_equal(chw.transpose(1, 2, 0), raw)
        q = quality_metrics(chw[None], np.ones_like(chw[None]), np.zeros((1, 101, 101), np.int32))
        assert q.mad_r.iloc[0] == pytest.approx(meta["mad_r"], rel=0.25)
        assert meta["galaxy_id"] in f


def test_quality_flags_central_nan():
    img = np.ones((2, 3, 101, 101), np.float32)
    img[1, :, 50, 50] = np.nan
    q = quality_metrics(img, np.ones_like(img), np.zeros((2, 101, 101), np.int32))
    assert q.central_nan.tolist() == [False, True] and q.nan_pixel_count.tolist() == [0, 1]
    assert q.core4_r.iloc[0] == pytest.approx(1.0)


def test_url_encoding():
    u = cutout_url("http://h/viewer/cutout.fits", 1.5, -2.25)
    assert "ra=1.5000000&dec=-2.2500000&layer=ls-dr10&pixscale=0.262&size=101&bands=grz&invvar&maskbits" in u


def test_service_matches_coadds_and_survives_faults(tiny_sky):
    t = pd.read_parquet(tiny_sky / "truth.parquet")
    targets = t[t.kind.isin(["lens", "galaxy"])].head(12)
    faults = FaultConfig(
        error_rate=0.2,
        error_codes=(503, 429),
        truncate_rate=0.1,
        latency_s=0.5,
        latency_rate=0.05,
        reset_once=True,
        seed=3,
    )
    with serve(tiny_sky, faults=faults) as srv:
        client = CutoutClient(
            srv.url,
            requests_per_second=200,
            concurrency=4,
            timeout_s=10,
            max_attempts=8,
            backoff_base_s=0.01,
            seed=1,
        )
        res = client.fetch_many(list(zip(targets.ra, targets.dec)))
        off = client.fetch(300.0, -70.0)
        bad_layer = CutoutClient(
            srv.url, layer="ls-dr99", requests_per_second=200, backoff_base_s=0.01
        ).fetch(targets.ra.iloc[0], targets.dec.iloc[0])
    assert all(r.ok for r in res), [r.reason for r in res if not r.ok]
    # faults were met and retried
    assert max(r.attempts for r in res) <= 8 and sum(r.attempts for r in res) > len(res)
    for r, (ra, dec) in zip(res, zip(targets.ra, targets.dec)):
        # the service sees the coordinates as the URL carries them (7 decimals): compare at those, since a
        # position within 0.0014 px of a pixel boundary rounds to the neighbouring pixel
        img, iv, mb = cutout_from_coadds(tiny_sky / "coadd", float(f"{ra:.7f}"), float(f"{dec:.7f}"), 101)
        np.testing.assert_array_equal(r.image, img)
        np.testing.assert_array_equal(r.maskbits, mb)
    assert not off.ok and "off footprint" in off.reason and off.attempts <= 8
    assert not bad_layer.ok and "no such layer" in bad_layer.reason and bad_layer.attempts == 1
