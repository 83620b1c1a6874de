"""The vectorised median of the normalisation against numpy's nanmedian, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lensaudit.stamps.normalize import Normalizer, nanmedian_rows, stamp_mad_sigma
from lensaudit.stamps.quality import radius_map


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 2, 3, 10, 7374, 7375])
def test_nanmedian_rows_is_numpys(dtype, k):
    g = np.random.default_rng(k)
    a = (g.normal(size=(40, k)) * g.choice([1.0, 1e-30, 1e30], size=(40, 1))).astype(dtype)
    a[g.random(a.shape) < 0.2] = np.nan  # most rows have NaN: sorted path
    a[10:20] = g.normal(size=(10, k))  # rows without NaN: partition path
    a[3] = np.nan  # all NaN
    a[4] = a[4, 0]  # ties
    a[5, g.random(k) < 0.3] = np.inf
    a[6, : k // 2] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = np.nanmedian(a, axis=-1)
    got = nanmedian_rows(a)
    assert got.dtype == ref.dtype and got.tobytes() == ref.tobytes()
    assert nanmedian_rows(a[10:20].reshape(2, 5, k)).tobytes() == ref[10:20].tobytes()


def test_normalizer_bytes_equal_the_nanmedian_formula():
    g = np.random.default_rng(0)
    img = (0.01 * g.normal(size=(9, 3, 101, 101)) + g.normal(size=(9, 3, 1, 1))).astype(np.float32)
    img[0, 0, 0, :5] = np.nan  # masked pixels in the annulus
    img[1, :, 50, 50] = np.nan  # and in the centre
    img[2, 1] = np.nan  # a whole band
    norm = Normalizer([0.5, 0.7, 1.1], asinh=True)
    outer = np.where(radius_map(101) >= 30, img, np.nan)  # the formula before vectorisation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        med = np.nan_to_num(np.nanmedian(outer.reshape(9, 3, -1), axis=-1))
        x = (img - med[..., None, None]) / np.asarray(norm.sigma, np.float32)[:, None, None]
        ref = (4.0 * np.arcsinh(x / 4.0)).astype(np.float32)
        sig = 1.4826 * np.nanmedian(
            np.abs(
                img[..., radius_map(101) >= 30] - np.nanmedian(img[..., radius_map(101) >= 30], -1)[..., None]
            ),
            -1,
        )
    assert norm(img).tobytes() == ref.tobytes()
    assert stamp_mad_sigma(img).tobytes() == sig.tobytes()
