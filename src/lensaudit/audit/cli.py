"""`lensaudit mine-negatives`: the seed plan's hard-negative mining loop, optional and explicit.

Scores the TRAIN split negatives with the frozen finder and writes the top-K as a Parquet list
(``evaluate/mined_negatives.parquet``). A next training round can add them as an extra N2 category
``mined`` (e.g. by concatenating them to the sample with ``n2_category='mined'``); nothing does so automatically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("mine-negatives")
    def mine_negatives(config: Annotated[Path, typer.Argument(help="YAML config.")] = Path("configs/demo.yaml"),
                       run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="Run directory.")] = None,
                       set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override section.key=value.")] = None,
                       top_k: Annotated[int, typer.Option("--top-k", help="How many negatives to export.")] = 500) -> None:
        """Export the top-scoring TRAIN-split negatives (hard-negative mining) to evaluate/mined_negatives.parquet."""
        from lensaudit.cli import _context, _guard, console

        def go():
            from lensaudit.stages.evaluate import score_table
            from lensaudit.utils import write_parquet_atomic

            ctx = _context(config, run_dir, set_)
            ctx.require("train")
            df, sha = score_table(ctx, ("train",))
            neg = df[df.label == 0].nlargest(top_k, "score")
            out = ctx.stage_dir("evaluate") / "mined_negatives.parquet"
            write_parquet_atomic(neg[["galaxy_id", "ra", "dec", "score", "n2_category", "split"]].assign(
                proposed_n2_category="mined", model_sha256=sha), out)
            console.print(f"{len(neg)} mined negatives → {out}")

        _guard(go)
