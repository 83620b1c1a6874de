"""The direct shard reader against zarr-python, corrupt shards, and the shard-aware order."""

from __future__ import annotations

import numpy as np
import pytest

from lensaudit.errors import InputError
from lensaudit.stamps.loader import iter_batches, shard_windows
from lensaudit.stamps.store import StampStore


def _store(path, codec, n=40, written=32):
    img = np.random.default_rng(0).normal(size=(written, 3, 21, 21)).astype(np.float32)
    s = StampStore.create(path, n, size=21, shard_size=8, codec=codec)
    s.write(0, img, img * 0 + 1, np.zeros((written, 21, 21)))
    return StampStore.open(path), img


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_read_images_equals_zarr_in_any_order(tmp_path, codec):
    s, img = _store(tmp_path / "s.zarr", codec)
    assert (s._raw_dir() is not None) == (codec == "none")
    rows = np.array([3, 39, 4, 5, 17, 3, 0, 31, 33])
    got = s.read_images(rows)
    np.testing.assert_array_equal(got, s.read(rows)[0])  # zarr-python's own decoding
    np.testing.assert_array_equal(got[rows < 32], img[rows[rows < 32]])
    assert np.isnan(got[rows >= 32]).all()  # unwritten rows
    np.testing.assert_array_equal(s.read_images(np.arange(8, 24)), img[8:24])


def test_corrupt_uncompressed_shard_names_store_and_shard(tmp_path):
    s, _ = _store(tmp_path / "s.zarr", "none")
    f = tmp_path / "s.zarr" / "image" / "c" / "1" / "0" / "0" / "0"
    body = bytearray(f.read_bytes())
    body[-20] ^= 0xFF  # one bit pattern of the index flipped: the CRC32C no longer matches
    f.write_bytes(bytes(body))
    with pytest.raises(InputError, match=r"s\.zarr.*shard 1.*corrupt"):
        StampStore.open(tmp_path / "s.zarr").read_images([9])
    f.write_bytes(bytes(body[: len(body) // 2]))
    with pytest.raises(InputError, match="shard 1"):
        StampStore.open(tmp_path / "s.zarr").read_images([9])


def test_shard_windows_cover_each_row_once_and_batches_follow_them(tmp_path):
    s, img = _store(tmp_path / "s.zarr", "none")
    rows = np.random.default_rng(1).permutation(32)
    w = shard_windows(rows, 8, np.random.default_rng(2), 2)
    assert len(w) == 2 and sorted(np.concatenate(w).tolist()) == list(range(32))
    assert all(len(np.unique(rows[x] // 8)) == 2 for x in w)  # each window = two whole shards
    seen = []
    for pos, im in iter_batches(s, rows, w, 5):
        np.testing.assert_array_equal(im, img[rows[pos]])
        seen += pos.tolist()
    assert seen == np.concatenate(w).tolist()
