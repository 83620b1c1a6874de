"""report: one self-contained HTML page (report/index.html) from every stage's manifest and artifacts."""
from __future__ import annotations

from pathlib import Path

from lensaudit.config import ReportConfig, RunConfig, dump_config
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.report.html import build
from lensaudit.stages import STAGE_ORDER
from lensaudit.utils import atomic_write_bytes

NAME = "report"
SECTIONS = ("report",)
DEPENDS: tuple[str, ...] = ()


def inputs(cfg: RunConfig) -> list[Path]:
    """Every existing upstream manifest: the report reruns whenever any stage changes."""
    run = Path(cfg.run.run_dir)
    return [run / s / "_stage.json" for s in STAGE_ORDER if s != "report" and (run / s / "_stage.json").is_file()]


def run(cfg: ReportConfig, ctx: RunContext) -> Manifest:
    out = ctx.stage_dir(NAME)
    html = build(ctx.run_dir, dump_config(ctx.config), cfg.title)
    atomic_write_bytes(out / "index.html", html.encode())
    missing = [s for s in STAGE_ORDER if s != "report" and not (ctx.run_dir / s / "_stage.json").is_file()]
    return Manifest(counts={"bytes": len(html), "sections": 10},
                    gates=[Gate.check("all_stages_reported", not missing, value=len(missing), warn_only=True,
                                      message=f"missing: {', '.join(missing)}" if missing else "")],
                    outputs=["index.html"])
