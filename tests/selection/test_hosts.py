"""Deflector-like hosts are drawn weighted to the known lenses' deflectors (inject.host_weighting)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.selection.grid import cells
from lensaudit.selection.hosts import assign_hosts, deflector_weights, effective_n


def _hosts(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row": np.arange(n),
            "galaxy_id": [f"h{i}" for i in range(n)],
            "type": "DEV",
            "mag_r": rng.uniform(19.0, 22.0, n),  # the field: many faint hosts
            "g_r": rng.uniform(1.0, 1.8, n),
            "r_z": rng.uniform(0.9, 1.5, n),
            "psfsize_g": 1.3,
            "psfsize_r": 1.3,
            "psfsize_z": 1.3,
            "psfdepth_mag_r": 24.5,
        }
    )


def test_weighted_draws_follow_the_positives_and_unweighted_ones_the_field():
    rng = np.random.default_rng(0)
    hosts = _hosts(rng, 400)
    pos = pd.DataFrame(
        {
            "type": "DEV",
            "mag_r": rng.normal(19.6, 0.3, 300),
            "g_r": rng.uniform(1.0, 1.8, 300),
            "r_z": rng.uniform(0.9, 1.5, 300),
        }
    )
    hosts["host_weight"] = deflector_weights(pos, hosts)
    assert 1 < effective_n(hosts.host_weight.to_numpy()) < len(hosts)
    grid = cells(np.array([1.0]), np.array([1.3]), np.array([24.5]))
    weighted = assign_hosts(grid, hosts, 2000, 0.1, 0.3, False, 1)
    even = assign_hosts(grid, hosts.assign(host_weight=1.0), 2000, 0.1, 0.3, False, 1)
    mag = hosts.set_index("galaxy_id").mag_r
    m_w, m_e = mag.loc[weighted.host_galaxy_id].median(), mag.loc[even.host_galaxy_id].median()
    assert abs(m_w - pos.mag_r.median()) < 0.3 < abs(m_e - pos.mag_r.median())
    # deterministic per seed
    again = assign_hosts(grid, hosts, 2000, 0.1, 0.3, False, 1)
    assert (again.host_row.to_numpy() == weighted.host_row.to_numpy()).all()
