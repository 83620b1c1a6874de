"""The direct shard reader against zarr-python, corrupt shards, and the shard-aware order."""

from __future__ import annotations

import numpy as np
import pytest

from lensaudit.errors import InputError
from lensaudit.stamps.loader import WindowDataset, WorkerBatches, iter_batches, shard_windows
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


def _store3(path, codec, n=40, written=32):
    """A store whose three arrays hold different random values (rows ≥ ``written`` unwritten)."""
    g = np.random.default_rng(3)
    img = g.normal(size=(written, 3, 21, 21)).astype(np.float32)
    iv = g.random((written, 3, 21, 21)).astype(np.float32)
    mb = g.integers(0, 2**20, (written, 21, 21)).astype(np.int32)
    s = StampStore.create(path, n, size=21, shard_size=8, codec=codec)
    s.write(0, img, iv, mb)
    return StampStore.open(path)


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_read_all_arrays_equals_zarr_python(tmp_path, codec):
    s = _store3(tmp_path / "s.zarr", codec)
    assert all((s.reader(a) is not None) == (codec == "none") for a in ("image", "invvar", "maskbits"))
    for rows in (np.array([3, 39, 4, 5, 17, 3, 0, 31, 33]), slice(6, 35), slice(2, 30, 3), 7, -1, 35):
        got, ref = s.read(rows), s._read(rows)  # the direct path against zarr-python's own decoding
        for g, r in zip(got, ref):
            assert g.dtype == r.dtype and g.shape == r.shape and g.tobytes() == r.tobytes()
    assert (s.read([36])[2] == -1).all() and np.isnan(s.read([36])[1]).all()  # unwritten: the fill values
    np.testing.assert_array_equal(s.read_image(5), s._read(5)[0])
    with pytest.raises(IndexError):
        s.read([40])


def _expected(s, rows, pos):
    return s._read(rows[pos])[0]  # zarr-python


@pytest.mark.parametrize("threads", [0, 2])
def test_reused_window_buffers_give_the_same_batches(tmp_path, threads):
    s = _store3(tmp_path / "s.zarr", "none")
    rows = np.random.default_rng(1).permutation(40)
    w = shard_windows(rows, 8, np.random.default_rng(2), 2)
    plain = [(p.copy(), im.copy()) for p, im in iter_batches(s, rows, w, 7, threads=threads)]
    reused = [(p.copy(), im.copy()) for p, im in iter_batches(s, rows, w, 7, threads=threads, reuse=True)]
    assert len(plain) == len(reused) == 6  # batches span windows (40 rows, windows of 16, 16, 8)
    for (p0, i0), (p1, i1) in zip(plain, reused):
        np.testing.assert_array_equal(p0, p1)
        assert i0.tobytes() == i1.tobytes() == _expected(s, rows, p1).tobytes()


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_worker_batches_through_shared_slots(tmp_path, codec):
    """2 DataLoader worker processes, non-persistent and persistent (two epochs, the first cut short):
    every batch holds the bytes zarr-python reads, and the positions are the windows' in order per worker."""
    s = _store3(tmp_path / "s.zarr", codec)
    rows = np.random.default_rng(1).permutation(40)
    w = shard_windows(rows, 8, np.random.default_rng(2), 1)
    for persistent in (False, True):
        wb = WorkerBatches(s, rows, w, 3, workers=2, persistent=persistent)
        for _ in range(2):
            seen = []
            for p, im in wb:
                assert im.is_shared() and im.numpy().tobytes() == _expected(s, rows, p).tobytes()
                seen.append(p.tolist())
            assert sorted(sum(seen, [])) == list(range(40))
            assert seen[:2] == [w[0][:3].tolist(), w[1][:3].tolist()]  # workers 0 and 1 take turns
            assert int(wb.busy.sum()) == 0  # every slot released at the end of the epoch
            for k, _ in enumerate(wb):  # an epoch cut short: its busy slots are free in the next
                if k == 3:
                    break
        ptr = wb.ring.data_ptr()
        del wb  # a non-persistent loader's slots go to the cache, for the next loader of that size
        wb2 = WorkerBatches(s, rows, w, 3, workers=2, persistent=persistent)
        assert (wb2.ring.data_ptr() == ptr) == (not persistent)
        for p, im in wb2:
            assert im.numpy().tobytes() == _expected(s, rows, p).tobytes()
        wb2.close()


def test_worker_batches_in_this_process(tmp_path):
    s = _store3(tmp_path / "s.zarr", "none")
    rows = np.random.default_rng(4).permutation(40)
    w = shard_windows(rows, 8, np.random.default_rng(5), 2)
    seen = []
    for p, im in WorkerBatches(s, rows, w, 6, workers=0):
        assert im.numpy().tobytes() == _expected(s, rows, p).tobytes()
        seen += p.tolist()
    assert seen == np.concatenate(w).tolist()


def test_worker_without_a_free_slot_sends_a_fresh_tensor(tmp_path):
    """The worker side alone (no DataLoader: worker 0 of 1): with every slot held, each batch travels in
    its own shared tensor (slot −1) with the right bytes; with free slots, the ring is filled."""
    s = _store3(tmp_path / "s.zarr", "none")
    rows = np.arange(40)
    w = shard_windows(rows, 8, None, 2)
    wb = WorkerBatches(s, rows, w, 5, workers=1)
    ds = WindowDataset(s, rows, w, 5, wb.ring, wb.busy, wb.epoch)
    wb.epoch[0] = 7
    wb.busy[:] = 7  # all held in this epoch
    out = list(ds)
    assert [o[3] for o in out] == [-1] * 10  # windows of 16, 16, 8 rows in batches of 5
    for i, a, _, _, t in out:
        assert t.is_shared() and t.numpy().tobytes() == _expected(s, rows, w[i][a : a + 5]).tobytes()
    wb.busy[:] = 6  # left busy by an earlier epoch: free
    for i, a, _, slot, t in ds:
        assert slot == 0 and t is None
        p = w[i][a : a + 5]
        assert wb.ring[0, 0, : len(p)].numpy().tobytes() == _expected(s, rows, p).tobytes()
        wb.busy[0, 0] = 0  # released, as the main process does on the next request
