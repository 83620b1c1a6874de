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
        return int(self.group.attrs["shard_size"])

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
        """Read rows (int, slice, or sorted/unsorted index array) → (image, invvar, maskbits).

        A shard that fails to decode (truncated, overwritten, checksum mismatch) raises InputError naming the
        store and the rows."""
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

        The read path of training and scoring. In an uncompressed local store each shard file touched is
        memory-mapped once (its index's CRC32C checked) and every stamp is copied once, from the page cache
        straight to its place in the output, so a shuffled read costs what a sorted one does. Other stores
        read each contiguous run of rows as one zarr slice. Unwritten rows are NaN. InputError naming the
        store and shard when a shard is corrupt. ``out``: a C-contiguous float32 array to fill and return
        (e.g. a tensor in shared memory)."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"stamp store {self.path}: rows outside 0…{self.n - 1}")
        raw = self._raw_dir()
        shape = (len(idx),) + tuple(self._a("image").shape[1:])
        if out is not None and (out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous):
            raise ValueError(f"read_images: out must be C-contiguous float32 of shape {shape}")
        if raw is None:
            img = self._read_images_zarr(idx)
            if out is None:
                return img
            out[...] = img
            return out
        out = np.empty(shape, np.float32) if out is None else out
        s = self.shard_size
        order = np.argsort(idx // s, kind="stable")
        shard_of = idx[order] // s
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        for grp in np.split(order, bounds) if len(idx) else []:
            k = int(idx[grp[0]] // s)
            with self._decoding(idx[grp]):
                _read_shard_raw(raw / str(k) / "0" / "0" / "0", idx[grp] - k * s, s, out, grp)
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

    def _raw_dir(self) -> Path | None:
        """The image array's chunk directory when shard files can be read directly: a local store whose
        image array is sharded with the ``bytes`` codec only (no compression); None otherwise."""
        if hasattr(self, "_raw"):
            return self._raw
        self._raw: Path | None = None
        try:
            codecs = self._a("image").metadata.to_dict()["codecs"]
            inner = codecs[0]["configuration"]
            ok = (
                len(codecs) == 1
                and codecs[0]["name"] == "sharding_indexed"
                and [c["name"] for c in inner["codecs"]] == ["bytes"]
                and inner["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
                and [c["name"] for c in inner["index_codecs"]] == ["bytes", "crc32c"]
                and inner["index_location"] == "end"
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            ok = False
        root = Path(self.path)
        if ok and "://" not in self.path and (root / "image" / "zarr.json").is_file():
            self._raw = root / "image" / "c"
        return self._raw

    def read_image(self, row: int) -> np.ndarray:
        """One stamp's image (B, S, S): reads a single chunk."""
        with self._decoding(int(row)):
            return self._a("image")[int(row)]

    @contextmanager
    def _decoding(self, rows: Any) -> Iterator[None]:
        """Turn a zarr/codec failure while reading ``rows`` into one InputError naming the store and shard."""
        try:
            yield
        except (ValueError, OSError, RuntimeError, KeyError, TypeError) as exc:
            raise InputError(
                f"stamp store {self.path}: {_describe(rows, self.shard_size)} cannot be read, a shard is "
                f"corrupt ({' '.join(str(exc).split())[:160]}); delete the store to fetch it again"
            ) from None

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


def _read_shard_raw(path: Path, local: np.ndarray, shard_size: int, out: np.ndarray, pos: np.ndarray) -> None:
    """Read the chunks ``local`` (rows within the shard, any order) of one uncompressed shard file into
    ``out[pos]``: the index (at the end: offset and length as uint64 per chunk, then the CRC32C of those) is
    checked, then each stamp is read with one ``preadv`` straight into its place in ``out`` (one copy, from
    the page cache or the disk), in ascending file offset (a sequential pass for the disk's read-ahead);
    runs of stamps that are consecutive both in ``out`` and in the file are read together. Unwritten chunks
    (or a missing shard file) are NaN."""
    import os

    import google_crc32c

    nbytes = out[0].nbytes
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        out[pos] = np.nan
        return
    try:
        size = os.fstat(fd).st_size
        isz = 16 * shard_size + 4
        if size < isz:
            raise ValueError(f"shard file {path} is {size} bytes, shorter than its index")
        ib = os.pread(fd, isz, size - isz)
        if int.from_bytes(ib[-4:], "little") != google_crc32c.value(ib[:-4]):
            raise ValueError(f"shard index checksum mismatch in {path}")
        index = np.frombuffer(ib[:-4], "<u8").reshape(shard_size, 2)
        off, ln = index[local, 0], index[local, 1]
        empty = off == _EMPTY
        if empty.any():
            out[pos[empty]] = np.nan
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
