"""The Dask client from config: LocalCluster (default, tests) | scheduler address | dask-jobqueue SLURM."""

from __future__ import annotations

from typing import Any

from lensaudit.config import EngineConfig
from lensaudit.errors import ConfigError


def make_client(cfg: EngineConfig) -> tuple[Any, Any]:
    """Return (client, cluster); cluster is None when connecting to an existing scheduler."""
    from dask.distributed import Client, LocalCluster

    if cfg.kind == "local":
        cluster = LocalCluster(
            n_workers=cfg.n_workers,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            processes=True,
            dashboard_address=None,
        )
        return Client(cluster), cluster
    if cfg.kind == "address":
        if not cfg.address:
            raise ConfigError("engine.address must be set when engine.kind = 'address'")
        return Client(cfg.address), None
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError(
            "engine.kind = 'slurm' needs dask-jobqueue: pip install 'lensaudit[cluster]'"
        ) from None
    cluster = SLURMCluster(**cfg.slurm)
    cluster.scale(jobs=cfg.slurm_jobs)
    return Client(cluster), cluster
