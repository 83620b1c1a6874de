"""What every command shares: the console, the one-sentence error guard, loading a run context."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from lensaudit.config import load_config
from lensaudit.errors import LensAuditError
from lensaudit.run import RunContext

console = Console(stderr=True)
T = TypeVar("T")

DEFAULT_CONFIG = "configs/demo.yaml"
ConfigArg = Annotated[Path, typer.Argument(help="YAML config (default configs/demo.yaml).")]
RunDirOpt = Annotated[Path | None, typer.Option("--run-dir", help="Run directory; overrides run.run_dir.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Typed override section.key=value; repeatable.")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even when up to date.")]


def guard(fn: Callable[[], T]) -> T:
    """Turn a LensAuditError into one clear sentence and its exit code (no traceback)."""
    try:
        return fn()
    except LensAuditError as exc:
        console.print(f"[bold red]error:[/bold red] {escape(str(exc))}")
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: rerun the same command to resume[/yellow]")
        raise typer.Exit(code=130) from None


def context(config: Path | None, run_dir: Path | None, overrides: list[str] | None) -> RunContext:
    """A run context from a config file, ``--set`` overrides and an optional run directory."""
    return RunContext(load_config(config, overrides or [], run_dir), console=console)


def status_colour(status: str) -> str:
    return {"pass": "green", "warn": "yellow", "fail": "red"}.get(status, "white")


def fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
