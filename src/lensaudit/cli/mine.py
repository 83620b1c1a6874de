"""`lensaudit mine-negatives`: hard-negative mining of the TRAIN split, explicit and optional.

Scores the TRAIN-split negatives with the frozen finder and writes the top-K to
``evaluate/mined_negatives.parquet``. A next training round can add them as an extra N2 category ``mined``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lensaudit.cli.common import DEFAULT_CONFIG, ConfigArg, RunDirOpt, SetOpt, console, context, guard
from lensaudit.run import StageContext
from lensaudit.stages import evaluate

app = typer.Typer()


def mine_negatives(
    config: ConfigArg = Path(DEFAULT_CONFIG),
    run_dir: RunDirOpt = None,
    set_: SetOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", help="How many negatives to export.")] = 500,
) -> None:
    """Export the top-scoring TRAIN-split negatives (hard-negative mining) to
    evaluate/mined_negatives.parquet."""

    def go() -> None:
        ctx = context(config, run_dir, set_)
        out = evaluate.mine(StageContext(ctx, evaluate), top_k)
        console.print(f"mined negatives → {out}")

    guard(go)
