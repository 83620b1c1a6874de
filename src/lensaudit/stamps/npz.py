"""Import the predecessor's one-.npz-per-galaxy archives: ``cutout`` (101, 101, 3) HWC float32 nanomaggies
plus ``meta_*`` keys. HWC → CHW with pixel values preserved; no invvar was stored, so invvar is estimated
per band from the outer-annulus MAD (1/(1.4826·MAD)², flagged in the index as ``invvar_source='mad'``)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from lensaudit.errors import InputError
from lensaudit.stamps.quality import radius_map


def read_npz(path: str | Path) -> tuple[np.ndarray, dict]:
    """(image (3, S, S) float32 CHW, meta dict without the 'meta_' prefix)."""
    try:
        with np.load(path, allow_pickle=False) as d:
            if "cutout" not in d.files:
                raise InputError(f"{path}: no 'cutout' array (predecessor .npz layout expected)")
            cut = np.asarray(d["cutout"], np.float32)
            meta = {k[5:]: d[k].item() if d[k].ndim == 0 else d[k] for k in d.files if k.startswith("meta_")}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz ({exc})") from None
    if cut.ndim != 3 or cut.shape[2] != 3 or cut.shape[0] != cut.shape[1]:
        raise InputError(f"{path}: cutout shape {cut.shape} is not (S, S, 3) HWC")
    return np.ascontiguousarray(cut.transpose(2, 0, 1)), meta


def mad_invvar(image: np.ndarray) -> np.ndarray:
    r = radius_map(image.shape[-1])
    iv = np.zeros_like(image)
    for k in range(image.shape[0]):
        x = image[k][(r >= 30) & np.isfinite(image[k])]
        sig = 1.4826 * np.median(np.abs(x - np.median(x))) if x.size else 0.0
        iv[k] = 1.0 / sig**2 if sig > 0 else 0.0
    return iv


def index_npz_dir(location: str) -> dict[str, str]:
    """galaxy_id → path for every .npz under a directory or glob (id from meta_galaxy_id, else the file
    stem)."""
    pattern = location if any(c in location for c in "*?[") else str(Path(location) / "**" / "*.npz")
    out = {}
    for p in sorted(glob.glob(pattern, recursive=True)):
        out[Path(p).stem] = p
    return out
