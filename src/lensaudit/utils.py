"""Small shared helpers: stable seeding, hashing, atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts (run seed, object id, purpose), independent of order of processing.

    >>> stable_seed(42, "sky", "brick", "1126p222") == stable_seed(42, "sky", "brick", "1126p222")
    True
    """
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def rng_for(*parts: Any) -> np.random.Generator:
    """A numpy Generator seeded from ``stable_seed(*parts)``."""
    return np.random.default_rng(stable_seed(*parts))


def hash_unit_interval(keys: Any, seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) values from string/int keys and a seed (order-free sampling).

    >>> hash_unit_interval(["a", "b"], 1).shape
    (2,)
    """
    import pandas as pd

    s = pd.Series(np.asarray(keys)).astype(str) + f"|{seed}"
    h = pd.util.hash_pandas_object(s, index=False).to_numpy(dtype=np.uint64)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def file_fingerprint(path: str | Path, full_hash_max_bytes: int = 64 << 20) -> str:
    """sha256 for files up to 64 MiB; (size, mtime) for larger ones, which would take minutes to hash."""
    p = Path(path)
    st = p.stat()
    if st.st_size <= full_hash_max_bytes:
        return "sha256:" + sha256_file(p)
    return f"size-mtime:{st.st_size}:{int(st.st_mtime)}"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write via a temporary file and rename, so that a killed process never leaves a half-written file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    from lensaudit.gates import _jsonable

    atomic_write_bytes(path, (json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def write_parquet_atomic(df, path: str | Path, metadata: dict[bytes, str] | None = None) -> None:
    """Write a DataFrame to Parquet atomically, without the pandas index and with stable bytes; ``metadata``
    (optional) becomes the schema's key-value metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(metadata)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.chmod(tmp, 0o644)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
