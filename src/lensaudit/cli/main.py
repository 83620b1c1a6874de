"""The command line: thin — parse, load config, call a stage.

lensaudit demo                         # everything, on the built-in synthetic DR10 sky
lensaudit run configs/dr10.yaml        # everything, on real DR10
lensaudit train configs/demo.yaml --set train.lr=3e-4 --run-dir runs/x
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lensaudit import __version__
from lensaudit.cli import doctor, mine, sky, validate
from lensaudit.cli.common import (
    DEFAULT_CONFIG,
    ConfigArg,
    ForceOpt,
    RunDirOpt,
    SetOpt,
    console,
    context,
    guard,
    status_colour,
)
from lensaudit.config import config_reference_markdown, dump_config, load_config
from lensaudit.run import Manifest, RunContext, run_pipeline
from lensaudit.stages import STAGES, contracts_markdown, get_stage, pipeline_stages

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help=(
        "lensaudit: bias-controlled lens-finder training sets, audits and selection functions for DESI "
        "Legacy Surveys DR10.\n\nStart with [bold]lensaudit demo[/bold]: it builds a synthetic DR10-like sky "
        "and runs every stage, then prints the report path."
    ),
)
config_app = typer.Typer(no_args_is_help=True, help="Show or document the configuration.")
app.add_typer(config_app, name="config")
app.add_typer(sky.app, name="sky")
app.command("mine-negatives")(mine.mine_negatives)
app.command("gates")(validate.gates)
app.command("verify")(validate.verify)
app.command("doctor")(doctor.doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lensaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """lensaudit command line."""


def _summary(ctx: RunContext, manifests: Sequence[Manifest]) -> None:
    t = Table(title=f"run {ctx.run_dir}", show_lines=False)
    for c in ("stage", "gates", "wall s", "counts"):
        t.add_column(c)
    for m in manifests:
        st = m.gate_status
        counts = ", ".join(f"{k}={v}" for k, v in list(m.counts.items())[:4])
        t.add_row(m.stage, f"[{status_colour(st)}]{st}[/]", f"{m.wall_s:.1f}", counts)
    console.print(t)
    for m in manifests:
        if m.extra.get("trustworthy") is False:
            console.print(
                f"[bold red]AUDIT NOT TRUSTWORTHY[/bold red]: {m.stage} has red shortcut/realism gates "
                "— see the report."
            )
    report = ctx.path("report", "html")
    if report.is_file():
        console.print(f"report: [bold]{report.resolve()}[/bold]")


def _run_stages(
    config: Path, run_dir: Path | None, overrides: list[str] | None, stages: list[str] | None, force: bool
) -> None:
    ctx = context(config, run_dir, overrides)
    mods = [get_stage(s) for s in stages] if stages else pipeline_stages(ctx.config)
    try:
        mans = run_pipeline(ctx, mods, force=force, registry=STAGES)
    finally:
        ctx.close()
    _summary(ctx, mans)


@app.command()
def run(
    config: ConfigArg = Path(DEFAULT_CONFIG),
    run_dir: RunDirOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
    stages: Annotated[
        str | None, typer.Option("--stages", help="Comma-separated subset, e.g. train,evaluate.")
    ] = None,
) -> None:
    """Run every stage in order (each skipped when up to date)."""
    names = [s.strip() for s in stages.split(",")] if stages else None
    guard(lambda: _run_stages(config, run_dir, set_, names, force))


@app.command()
def demo(
    config: ConfigArg = Path(DEFAULT_CONFIG),
    run_dir: RunDirOpt = None,
    set_: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Build the synthetic DR10 sky (if missing) under the run directory and run every stage on it."""
    overrides = list(set_ or []) + ["data.source=synthetic"]
    guard(lambda: _run_stages(config, run_dir, overrides, None, force))


_STAGE_DOCS = {
    "positives": "Known lenses (lenscat, + extra CSVs, + DESI SL VAC) → tiers and weights → "
    "positives.parquet.",
    "catalog": "Sweeps → parent cuts → N1/N2 → 11″ lens exclusion → HEALPix split (Dask) → pool/.",
    "sample": "Pool → negatives per (nobs_z bin, TYPE) stratum, 100:1 and N1:N2 85:15 → sample.parquet.",
    "cutouts": "Sample → 101×101 grz stamps with invvar/maskbits → stamps.zarr + quality gates.",
    "train": "Train the lens finder (ResNet-18, weighted BCE) and freeze it.",
    "evaluate": "Audit the frozen finder: AUC, recall, ECE, FPR by category and conditions, shortcut gates.",
    "inject": "Inject simulated arcs into real hosts over the θE × PSF × depth grid; realism gates.",
    "selection": "Score injections → completeness per cell with Bayesian intervals → lookup table.",
    "failures": "Failure-mode taxonomy: FPR by confuser × conditions, completeness collapse, galleries.",
    "report": "Write the self-contained HTML report.",
}


def _stage_command(name: str, doc: str) -> None:
    def cmd(
        config: ConfigArg = Path(DEFAULT_CONFIG),
        run_dir: RunDirOpt = None,
        set_: SetOpt = None,
        force: ForceOpt = False,
    ) -> None:
        guard(lambda: _run_stages(config, run_dir, set_, [name], force))

    cmd.__doc__ = doc
    app.command(name=name)(cmd)


for _name, _doc in _STAGE_DOCS.items():
    _stage_command(_name, _doc)


@app.command("stages")
def stages_cmd(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the Markdown table of docs/artifacts.md.")
    ] = False,
) -> None:
    """List the stages with the config they read and the artifacts they read and write."""
    if markdown:
        typer.echo(contracts_markdown(), nl=False)
        return
    t = Table(title="stage contracts (? = optional read)")
    for c in ("stage", "config", "reads", "writes"):
        t.add_column(c)
    for name, mod in STAGES.items():
        t.add_row(name, "\n".join(mod.SECTIONS), "\n".join(mod.READS) or "—", "\n".join(mod.WRITES))
    console.print(t)


@config_app.command("show")
def config_show(
    config: ConfigArg = Path(DEFAULT_CONFIG), run_dir: RunDirOpt = None, set_: SetOpt = None
) -> None:
    """Print the resolved config (defaults + YAML + overrides) as YAML."""
    guard(lambda: typer.echo(dump_config(load_config(config, set_ or [], run_dir))))


@config_app.command("reference")
def config_reference() -> None:
    """Print the config reference (Markdown), generated from the pydantic models."""
    typer.echo(config_reference_markdown())
