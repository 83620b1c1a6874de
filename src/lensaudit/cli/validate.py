"""`lensaudit gates` (the registry) and `lensaudit verify RUN_DIR` (recompute every gate from the
artifacts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lensaudit.cli.common import console, fmt_value, guard, status_colour
from lensaudit.run import RunContext
from lensaudit.validation import specs
from lensaudit.validation.verify import exit_code, verify_run


def gates_markdown() -> str:
    """docs/gates.md: the registry as a table per stage (defaults filled in from the default config)."""
    from lensaudit.config import RunConfig

    cfg = RunConfig()
    lines = [
        "# Validation gates",
        "",
        "Generated from the registry (`lensaudit gates --markdown`); `tests/test_docs.py` keeps it current.",
        "Source `design`: the threshold is the original design's; `ours`: a choice of this project, "
        "with the reason.",
        "",
    ]
    stage = None
    for s in specs():
        if s.stage != stage:
            stage = s.stage
            lines += [
                "",
                f"## {stage}",
                "",
                "| gate | measures | rule (defaults) | source | why | blocking | reads |",
                "|---|---|---|---|---|---|---|",
            ]
        d = s.to_dict(cfg)
        lines.append(
            f"| `{d['name']}` | {d['measures']} | {d['rule']} | {d['source']} | {d['why']} | "
            f"{'yes' if d['blocking'] else 'no'} | {', '.join(f'`{r}`' for r in d['reads'])} |"
        )
    return "\n".join(lines) + "\n"


def gates(
    as_json: Annotated[bool, typer.Option("--json", help="Print the registry as JSON.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print docs/gates.md.")] = False,
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage's gates.")] = None,
) -> None:
    """List every validation gate: what it measures, its thresholds and their source, whether it blocks."""
    from lensaudit.config import RunConfig

    cfg = RunConfig()
    rows = [s.to_dict(cfg) for s in specs(stage)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    elif markdown:
        typer.echo(gates_markdown(), nl=False)
    else:
        t = Table(title=f"{len(rows)} validation gates")
        for c in ("stage", "gate", "rule", "source", "blocking"):
            t.add_column(c)
        for r in rows:
            t.add_row(r["stage"], r["name"], r["rule"], r["source"], "yes" if r["blocking"] else "no")
        console.print(t)


def verify(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (with config.yaml).")],
    stage: Annotated[
        list[str] | None, typer.Option("--stage", help="Only these stages (repeatable); default every stage.")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also exit non-zero on failing non-blocking gates.")
    ] = False,
) -> None:
    """Recompute every gate from the run's artifacts and compare with what each stage recorded."""

    def go() -> int:
        ctx = RunContext.from_run_dir(run_dir, console=console)
        checks = verify_run(ctx, stage)
        t = Table(title=f"verify {run_dir}")
        for col in ("stage", "gate", "recorded", "recomputed", "status", "agrees"):
            t.add_column(col)
        for c in checks:
            status = c.status + ("" if c.blocking or c.status != "fail" else " (non-blocking)")
            t.add_row(
                c.stage,
                c.gate,
                fmt_value(c.recorded),
                fmt_value(c.recomputed),
                f"[{status_colour(c.status)}]{status}[/]",
                "yes" if c.agrees else f"[red]NO: {c.problem}[/]",
            )
        console.print(t)
        code = exit_code(checks, strict)
        bad = [c for c in checks if not c.agrees]
        console.print(
            f"{len(checks)} gates recomputed, {len(bad)} disagree, "
            f"{sum(c.status == 'fail' for c in checks)} fail → exit {code}"
        )
        return code

    code = guard(go)
    if code:
        raise typer.Exit(code)
