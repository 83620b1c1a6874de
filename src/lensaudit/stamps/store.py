"""The stamp store: one Zarr v3 group per run, sharded so that one stamp reads alone and each worker
writes whole shards without locks.

Layout (``stamps.zarr``):
- ``image``    (N, B, S, S) float32, nanomaggies/pixel, bands in ``attrs['bands']`` order (g, r, z);
- ``invvar``   (N, B, S, S) float32, 1/nanomaggy²;
- ``maskbits`` (N, S, S)    int32, DR10 MASKBITS.
Chunks hold one stamp; shards hold ``shard_size`` consecutive rows. Unwritten rows read as NaN (image,
invvar) and −1 (maskbits), so holes are detectable. Works on local paths and fsspec URLs.

Codec: new stores are written uncompressed (``codec="none"``: the ``bytes`` codec only, inside the
``sharding_indexed`` codec). Noise-dominated float32 stamps shrink by ~7% under zstd, while decoding zstd
chunk by chunk through zarr-python costs most of the read time. An uncompressed shard is the stamps' bytes
back to back followed by the shard index, so :meth:`StampStore.read_images` reads a run of rows with one
``readinto`` per contiguous byte range (after checking the index's CRC32C), still a valid Zarr v3 store
that zarr-python reads identically (docs/data.md has the measurements). ``codec="zstd"`` stores (and stores
made before this choice) are read through zarr-python.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lensaudit.errors import InputError

ARRAYS = ("image", "invvar", "maskbits")
#: the shard index entry of a chunk that was never written (offset and length both 2⁶⁴−1)
_EMPTY = np.uint64(2**64 - 1)


@dataclass
class StampStore:
    """Handle on a stamp store. Create with ``StampStore.create``, open with ``StampStore.open``."""

    group: Any
    path: str

    def __post_init__(self) -> None:
        # array handles are opened once: looking them up in the group re-reads their metadata on every access
        self._arrays = {a: self.group[a] for a in ARRAYS if a in self.group}
        self._readers: dict[str, ShardReader | None] = {}
        self._shard_size = int(self.group.attrs["shard_size"])

    def _a(self, name: str):
        return self._arrays[name]

    @classmethod
    def create(
        cls,
        path: str | Path,
        n: int,
        size: int = 101,
        bands: str = "grz",
        shard_size: int = 256,
        overwrite: bool = False,
        attrs: dict | None = None,
        codec: Literal["none", "zstd"] = "none",
    ) -> StampStore:
        """A new store of ``n`` stamps, created whole: it is built beside ``path`` and renamed into place, so
        a run killed while creating it leaves no half-made store for a resume to reopen. FileExistsError when
        ``path`` exists and not ``overwrite``. ``codec``: ``none`` (default: uncompressed chunks, read by
        :meth:`read_images` straight from the shard files) or ``zstd`` (zarr's default)."""
        import shutil

        import zarr

        final = Path(path)
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"a stamp store already exists at {final}")
            shutil.rmtree(final)
        tmp = final.with_name(f".{final.name}.creating")
        if tmp.exists():
            shutil.rmtree(tmp)
        shard = max(1, min(shard_size, n)) if n > 0 else 1
        g = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        nb = len(bands)
        for name, shape, dtype, fill in (
            ("image", (n, nb, size, size), "float32", np.nan),
            ("invvar", (n, nb, size, size), "float32", np.nan),
            ("maskbits", (n, size, size), "int32", -1),
        ):
            chunks = (1,) + shape[1:]
            g.create_array(
                name,
                shape=shape,
                chunks=chunks,
                shards=(shard,) + shape[1:],
                dtype=dtype,
                fill_value=fill,
                compressors=None if codec == "none" else "auto",
            )
        g.attrs.update(
            {
                "bands": bands,
                "size": size,
                "shard_size": shard,
                "n": n,
                "units": "nanomaggies/pixel",
                "pixscale_arcsec": 0.262,
                **(attrs or {}),
            }
        )
        tmp.rename(final)
        return cls.open(final, mode="r+")

    @classmethod
    def open(cls, path: str | Path, mode: Literal["r", "r+"] = "r") -> StampStore:
        import zarr

        try:
            g = zarr.open_group(str(path), mode=mode, zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise InputError(f"no stamp store at {path}") from None
        missing = [a for a in ARRAYS if a not in g]
        if missing:
            raise InputError(f"stamp store {path} lacks arrays {missing}")
        return cls(g, str(path))

    # -- geometry --------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self._a("image").shape[0])

    @property
    def bands(self) -> str:
        return str(self.group.attrs["bands"])

    @property
    def shard_size(self) -> int:
        return self._shard_size

    def shard_ranges(self) -> list[tuple[int, int]]:
        """[start, stop) row ranges, one per shard: the unit of lock-free parallel writing."""
        s = self.shard_size
        return [(a, min(a + s, self.n)) for a in range(0, self.n, s)]

    # -- I/O -------------------------------------------------------------------------------------
    def write(self, start: int, image: np.ndarray, invvar: np.ndarray, maskbits: np.ndarray) -> None:
        """Write consecutive rows from ``start``. Concurrent writers must own whole shards."""
        stop = start + len(image)
        self._a("image")[start:stop] = np.asarray(image, np.float32)
        self._a("invvar")[start:stop] = np.asarray(invvar, np.float32)
        self._a("maskbits")[start:stop] = np.asarray(maskbits, np.int32)

    def read(self, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Read rows (int, slice, or index array in any order, repeats allowed) → (image, invvar, maskbits),
        in the order asked (an int gives arrays without the row axis).

        Arrays stored uncompressed are read by :class:`ShardReader` straight from the shard files (the bytes
        zarr-python reads); others through zarr-python. A shard that fails to decode (truncated, overwritten,
        checksum mismatch) raises InputError naming the store and the rows."""
        if all(self.reader(a) is not None for a in ARRAYS):
            single = isinstance(rows, (int, np.integer))
            if isinstance(rows, slice):
                idx = np.arange(*rows.indices(self.n))
            else:
                idx = np.asarray(rows, dtype=np.int64).reshape(-1)
                idx = np.where(idx < 0, idx + self.n, idx)  # negative rows count from the end, as in zarr
            image, invvar, maskbits = (self.reader(a).read(idx) for a in ARRAYS)  # type: ignore[union-attr]
            return (image[0], invvar[0], maskbits[0]) if single else (image, invvar, maskbits)
        with self._decoding(rows):
            return self._read(rows)

    def _read(self, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if isinstance(rows, (int, np.integer)):
            image, invvar, maskbits = (self._a(a)[int(rows)] for a in ARRAYS)
            return image, invvar, maskbits
        if isinstance(rows, slice):
            image, invvar, maskbits = (self._a(a)[rows] for a in ARRAYS)
            return image, invvar, maskbits
        idx = np.asarray(rows, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        out = []
        for a in ARRAYS:
            arr = self._a(a).get_orthogonal_selection((idx[order],) + (slice(None),) * (self._a(a).ndim - 1))
            res = np.empty_like(arr)
            res[order] = arr
            out.append(res)
        image, invvar, maskbits = out
        return image, invvar, maskbits

    def read_images(self, rows, out: np.ndarray | None = None) -> np.ndarray:
        """Images (k, B, S, S) float32 of ``rows`` (int array, any order, repeats allowed), in that order.

        The read path of training and scoring. In an uncompressed local store (:meth:`reader`) every stamp
        is copied once, from the page cache or the disk straight to its place in the output, so a shuffled
        read costs what a sorted one does. Other stores read each contiguous run of rows as one zarr slice.
        Unwritten rows are NaN. InputError naming the store and shard when a shard is corrupt. ``out``: a
        C-contiguous float32 array to fill and return (e.g. a reused buffer or a tensor in shared memory)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        raw = self.reader("image")
        if raw is not None:
            return raw.read(idx, out)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"stamp store {self.path}: rows outside 0…{self.n - 1}")
        shape = (len(idx),) + tuple(self._a("image").shape[1:])
        _check_out(out, shape, np.dtype(np.float32))
        img = self._read_images_zarr(idx)
        if out is None:
            return img
        out[...] = img
        return out

    def _read_images_zarr(self, idx: np.ndarray) -> np.ndarray:
        """:meth:`read_images` through zarr-python: one slice per run of consecutive rows."""
        uniq, inv = np.unique(idx, return_inverse=True)
        a = self._a("image")
        out = np.empty((len(uniq),) + tuple(a.shape[1:]), np.float32)
        for p0, p1 in _runs(uniq):
            r0 = int(uniq[p0])
            with self._decoding(slice(r0, r0 + p1 - p0)):
                out[p0:p1] = a[r0 : r0 + p1 - p0]
        return out if len(uniq) == len(idx) and bool((np.diff(idx) > 0).all()) else out[inv]

    def reader(self, name: str = "image") -> ShardReader | None:
        """The direct reader of array ``name`` when its shard files can be read without zarr: a local store
        whose array is sharded (``shard_size`` rows per shard, one row per chunk) with the little-endian
        ``bytes`` codec only (no compression) and the index at the end, CRC32C-checked; None otherwise."""
        if name in self._readers:
            return self._readers[name]
        a = self._a(name)
        try:
            meta = a.metadata.to_dict()
            codecs = meta["codecs"]
            inner = codecs[0]["configuration"]
            shard_shape = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
            key = meta["chunk_key_encoding"]
            ok = (
                len(codecs) == 1
                and codecs[0]["name"] == "sharding_indexed"
                and [c["name"] for c in inner["codecs"]] == ["bytes"]
                and inner["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                and [c["name"] for c in inner["index_codecs"]] == ["bytes", "crc32c"]
                and inner["index_location"] == "end"
                and tuple(inner["chunk_shape"]) == (1,) + tuple(a.shape[1:])
                and shard_shape == (self.shard_size,) + tuple(a.shape[1:])
                and key["name"] == "default"
                and key.get("configuration", {}).get("separator", "/") == "/"
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            ok = False
        root = Path(self.path)
        r = None
        if ok and "://" not in self.path and (root / name / "zarr.json").is_file():
            r = ShardReader(
                self.path, str(root / name / "c"), self.shard_size, tuple(a.shape), a.dtype.str, a.fill_value
            )
        self._readers[name] = r
        return r

    def _raw_dir(self) -> Path | None:
        """The image array's chunk directory when :meth:`reader` reads it directly, else None."""
        r = self.reader("image")
        return None if r is None else Path(r.chunks)

    def read_image(self, row: int) -> np.ndarray:
        """One stamp's image (B, S, S)."""
        if self.reader("image") is not None:
            return self.read_images([int(row)])[0]
        with self._decoding(int(row)):
            return self._a("image")[int(row)]

    def _decoding(self, rows: Any):
        return _decoding(self.path, self.shard_size, rows)

    def written_rows(self) -> np.ndarray:
        """Boolean (N,): rows whose maskbits were written (−1 fill means never written)."""
        mb = self._a("maskbits")
        out = np.zeros(self.n, bool)
        for a, b in self.shard_ranges():
            out[a:b] = mb[a:b, 0, 0] != -1
        return out


def _runs(sorted_rows: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) positions of the runs of consecutive values in a sorted array.

    >>> _runs(np.array([1, 2, 3, 7, 9, 10]))
    [(0, 3), (3, 4), (4, 6)]
    """
    if len(sorted_rows) == 0:
        return []
    cut = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
    edges = np.concatenate([[0], cut, [len(sorted_rows)]])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


@dataclass(frozen=True)
class ShardReader:
    """Direct reader of one uncompressed sharded array of a local store, without zarr: small and picklable,
    so worker processes get it without opening the store. Made by :meth:`StampStore.reader`.

    ``read(rows)`` groups the rows by shard; per shard file it reads the index once (checking its CRC32C),
    then reads each stamp with one ``preadv`` straight into its place in the output (one copy, from the page
    cache or the disk), in ascending file offset; runs of stamps consecutive both in the output and in the
    file are read together. Unwritten chunks (or a missing shard file) read as the fill value."""

    store: str  # the store's path, for error messages
    chunks: str  # the array's chunk directory (``<store>/<array>/c``)
    shard_size: int
    shape: tuple[int, ...]  # the whole array's shape
    dtype: str  # numpy dtype string, little-endian
    fill: Any

    def read(self, rows, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``rows`` (int array, any order, repeats allowed; negative counts from the end) in that order,
        into ``out`` (C-contiguous, of the array's dtype) when given."""
        n = self.shape[0]
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"stamp store {self.store}: rows outside 0…{n - 1}")
        shape = (len(idx),) + self.shape[1:]
        dt = np.dtype(self.dtype)
        _check_out(out, shape, dt)
        out = np.empty(shape, dt) if out is None else out
        if not len(idx):
            return out
        s = self.shard_size
        shard = idx // s
        if len(idx) == 1 or bool((np.diff(shard) == 0).all()):
            groups = [np.arange(len(idx))]
        else:
            order = np.argsort(shard, kind="stable")
            groups = np.split(order, np.flatnonzero(np.diff(shard[order])) + 1)
        tail = "/0" * (len(self.shape) - 1)
        for grp in groups:
            k = int(shard[grp[0]])
            with _decoding(self.store, s, idx[grp]):
                self._read_shard(f"{self.chunks}/{k}{tail}", idx[grp] - k * s, out, grp)
        return out

    def _read_shard(self, path: str, local: np.ndarray, out: np.ndarray, pos: np.ndarray) -> None:
        import os

        import google_crc32c

        nbytes = out[0].nbytes
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            out[pos] = self.fill
            return
        try:
            size = os.fstat(fd).st_size
            isz = 16 * self.shard_size + 4
            if size < isz:
                raise ValueError(f"shard file {path} is {size} bytes, shorter than its index")
            ib = os.pread(fd, isz, size - isz)
            if int.from_bytes(ib[-4:], "little") != google_crc32c.value(ib[:-4]):
                raise ValueError(f"shard index checksum mismatch in {path}")
            index = np.frombuffer(ib[:-4], "<u8").reshape(self.shard_size, 2)
            off, ln = index[local, 0], index[local, 1]
            empty = off == _EMPTY
            if empty.any():
                out[pos[empty]] = self.fill
            full = ~empty
            if ((ln[full] != nbytes) | (off[full] + ln[full] > size - isz)).any():
                raise ValueError(f"shard {path} has a chunk of unexpected length or beyond its end")
            k = np.flatnonzero(full)
            if len(k) == 0:
                return
            k = k[np.argsort(off[k], kind="stable")]  # ascending file offsets: sequential for the disk
            brk = (np.diff(pos[k]) != 1) | (np.diff(off[k].astype(np.int64)) != nbytes)
            edges = np.concatenate([[0], np.flatnonzero(brk) + 1, [len(k)]]).tolist()
            flat = out.reshape(len(out), -1)
            pk, ok = pos[k].tolist(), off[k].tolist()
            for a, b in zip(edges[:-1], edges[1:]):
                if os.preadv(fd, [flat[pk[a] : pk[a] + b - a].data.cast("B")], ok[a]) != (b - a) * nbytes:
                    raise ValueError(f"shard {path} ended early")
        finally:
            os.close(fd)


def _check_out(out: np.ndarray | None, shape: tuple, dtype: np.dtype) -> None:
    if out is not None and (out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous):
        raise ValueError(f"read: out must be C-contiguous {dtype} of shape {shape}")


@contextmanager
def _decoding(path: str, shard_size: int, rows: Any) -> Iterator[None]:
    """Turn a zarr/codec failure while reading ``rows`` into one InputError naming the store and shard."""
    try:
        yield
    except (ValueError, OSError, RuntimeError, KeyError, TypeError) as exc:
        raise InputError(
            f"stamp store {path}: {_describe(rows, shard_size)} cannot be read, a shard is "
            f"corrupt ({' '.join(str(exc).split())[:160]}); delete the store to fetch it again"
        ) from None


def _describe(rows: Any, shard_size: int) -> str:
    """The rows and shards of a read, for an error message.

    >>> _describe(slice(4, 8), 4), _describe(5, 4), _describe(np.array([1, 9]), 4)
    ('rows 4–7 (shard 1)', 'row 5 (shard 1)', 'rows [1, 9] (shards [0, 2])')
    """
    if isinstance(rows, (int, np.integer)):
        return f"row {int(rows)} (shard {int(rows) // shard_size})"
    if isinstance(rows, slice):
        a, b = rows.start or 0, rows.stop
        shards = sorted({a // shard_size, (b - 1) // shard_size}) if b is not None else [a // shard_size]
        where = f"shard {shards[0]}" if len(shards) == 1 else f"shards {shards[0]}–{shards[-1]}"
        return f"rows {a}–{'' if b is None else b - 1} ({where})"
    idx = np.asarray(rows, dtype=np.int64)
    sh = sorted({int(i) // shard_size for i in idx})
    where = f"shard {sh[0]}" if len(sh) == 1 else f"shards {sh[:8]}{'…' if len(sh) > 8 else ''}"
    return f"rows {idx[:8].tolist()}{'…' if len(idx) > 8 else ''} ({where})"
