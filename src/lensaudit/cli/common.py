"""What every command shares: the console, the one-sentence error guard, loading a run context."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from lensaudit.config import load_config
from lensaudit.errors import InputError, LensAuditError
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
    """Turn a LensAuditError into one clear sentence and its exit code (no traceback).

    Exit codes (:mod:`lensaudit.errors`): 2 config, 3 input (also an ``OSError`` on a file or directory the
    run reads or writes: unwritable run directory, disk full), 4 gate failed, 5 upstream, 6 contract, 130
    interrupted. The sentence is printed on one line whatever the terminal width."""
    try:
        return fn()
    except LensAuditError as exc:
        _error(str(exc))
        raise typer.Exit(code=exc.exit_code) from None
    except OSError as exc:
        _error(os_error_sentence(exc))
        raise typer.Exit(code=InputError.exit_code) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: rerun the same command to resume[/yellow]")
        raise typer.Exit(code=130) from None


def _error(message: str) -> None:
    console.print(f"[bold red]error:[/bold red] {escape(' '.join(message.split()))}", soft_wrap=True)


def os_error_sentence(exc: OSError) -> str:
    """One sentence for an operating-system error on a file: what failed, on which path.

    >>> os_error_sentence(PermissionError(13, "Permission denied", "/runs/x/run.log"))
    'cannot access /runs/x/run.log: Permission denied'
    """
    where = exc.filename if exc.filename is not None else "a file"
    return f"cannot access {where}: {exc.strerror or exc}"


def context(config: Path | None, run_dir: Path | None, overrides: list[str] | None) -> RunContext:
    """A run context from a config file, ``--set`` overrides and an optional run directory; a run directory
    that cannot be created or written is an InputError naming it."""
    cfg = load_config(config, overrides or [], run_dir)
    try:
        return RunContext(cfg, console=console)
    except OSError as exc:
        raise InputError(
            f"run directory {cfg.run.run_dir} cannot be created or written ({os_error_sentence(exc)})"
        ) from None


def status_colour(status: str) -> str:
    return {"pass": "green", "warn": "yellow", "fail": "red"}.get(status, "white")


def fmt_value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
