"""The DESI SL VAC is an independent set: train rows within the exclusion radius of a VAC system are dropped
from the sample (positives and negatives alike), val and test rows are kept."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.catalog.sampling import exclude_independent


def test_vac_exclusion_radius():
    ra0, dec0 = 150.0, 2.0
    offsets = np.array([0.0, 5.0, 10.9, 11.1, 30.0]) / 3600.0  # arcsec, along Dec
    rows = []
    for split in ("train", "val", "test"):
        for k, off in enumerate(offsets):
            rows.append(
                {"galaxy_id": f"{split}{k}", "ra": ra0, "dec": dec0 + off, "split": split, "label": k % 2}
            )
    s = pd.DataFrame(rows)
    kept, n = exclude_independent(s, np.array([ra0]), np.array([dec0]), 11.0)
    dropped = sorted(set(s.galaxy_id) - set(kept.galaxy_id))
    assert dropped == ["train0", "train1", "train2"]  # 0″, 5″, 10.9″; 11.1″ and 30″ stay
    assert n == {"vac_excluded_train_pos": 1, "vac_excluded_train_neg": 2}
    # the radius is the configured one, and RA offsets count on the sphere (cos δ)
    kept, _ = exclude_independent(s, np.array([ra0]), np.array([dec0]), 20.0)
    assert sorted(set(s.galaxy_id) - set(kept.galaxy_id)) == ["train0", "train1", "train2", "train3"]
    far_ra = pd.DataFrame({"galaxy_id": ["a"], "ra": [ra0 + 10.5 / 3600 / np.cos(np.deg2rad(60.0))],
                           "dec": [60.0], "split": ["train"], "label": [0]})  # fmt: skip
    assert len(exclude_independent(far_ra, np.array([ra0]), np.array([60.0]), 11.0)[0]) == 0
    assert len(exclude_independent(far_ra, np.array([ra0]), np.array([60.0]), 10.0)[0]) == 1


def test_no_vac_keeps_everything():
    s = pd.DataFrame({"galaxy_id": ["a"], "ra": [1.0], "dec": [1.0], "split": ["train"], "label": [1]})
    kept, n = exclude_independent(s, np.zeros(0), np.zeros(0), 11.0)
    assert len(kept) == 1 and n == {"vac_excluded_train_pos": 0, "vac_excluded_train_neg": 0}
