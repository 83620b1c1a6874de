"""The bottom layer: the run directory, stage contracts, manifests, the runner and the resume primitive.

Nothing here imports a domain package or a stage; stages are handed to the runner as modules.
"""

from lensaudit.run.artifacts import ARTIFACTS, INPROGRESS, MANIFEST, STAGE_ORDER
from lensaudit.run.context import RunContext, StageContext, StageProgress, log
from lensaudit.run.manifest import Manifest, git_commit
from lensaudit.run.runner import fingerprint, run_pipeline, run_stage
from lensaudit.run.shards import ShardLog

__all__ = [
    "ARTIFACTS",
    "INPROGRESS",
    "MANIFEST",
    "STAGE_ORDER",
    "Manifest",
    "RunContext",
    "ShardLog",
    "StageContext",
    "StageProgress",
    "fingerprint",
    "git_commit",
    "log",
    "run_pipeline",
    "run_stage",
]
