"""The command line: thin — parse, load config, call a stage.

    lensaudit demo                         # everything, on the built-in synthetic DR10 sky
    lensaudit run configs/dr10.yaml        # everything, on real DR10
    lensaudit train configs/demo.yaml --set train.lr=3e-4 --run-dir runs/x
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from lensaudit import __version__
from lensaudit.errors import LensAuditError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="lensaudit: bias-controlled lens-finder training sets, audits and selection functions for DESI Legacy Surveys DR10.\n\n"
                       "Start with [bold]lensaudit demo[/bold]: it builds a synthetic DR10-like sky and runs every stage, then prints the report path.")
config_app = typer.Typer(no_args_is_help=True, help="Show or document the configuration.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

DEFAULT_CONFIG = "configs/demo.yaml"
ConfigArg = Annotated[Path, typer.Argument(help="YAML config (default configs/demo.yaml).")]
RunDirOpt = Annotated[Optional[Path], typer.Option("--run-dir", help="Run directory; overrides run.run_dir.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Typed override section.key=value; repeatable.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even when up to date.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lensaudit {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False) -> None:
    """lensaudit command line."""


def _guard(fn):
    """Turn LensAuditError into one clear sentence and an exit code."""
    try:
        return fn()
    except LensAuditError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}")
        raise typer.Exit(code=exc.exit_code) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: rerun the same command to resume[/yellow]")
        raise typer.Exit(code=130) from None


def _context(config: Path, run_dir: Path | None, overrides: list[str] | None):
    from lensaudit.config import load_config
    from lensaudit.pipeline import RunContext

    cfg = load_config(config, overrides or [], run_dir)
    return RunContext(cfg, console=console)


def _summary(ctx, manifests) -> None:
    from lensaudit.gates import worst

    t = Table(title=f"run {ctx.run_dir}", show_lines=False)
    for c in ("stage", "gates", "wall s", "counts"):
        t.add_column(c)
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}
    for m in manifests:
        st = worst(m.gates)
        counts = ", ".join(f"{k}={v}" for k, v in list(m.counts.items())[:4])
        t.add_row(m.stage, f"[{colour[st]}]{st}[/]", f"{m.wall_s:.1f}", counts)
    console.print(t)
    for m in manifests:
        if m.extra.get("trustworthy") is False:
            console.print(f"[bold red]AUDIT NOT TRUSTWORTHY[/bold red]: {m.stage} has red shortcut/realism gates — see the report.")
    report = ctx.run_dir / "report" / "index.html"
    if report.is_file():
        console.print(f"report: [bold]{report.resolve()}[/bold]")


def _run_stages(config: Path, run_dir: Path | None, overrides: list[str] | None, stages: list[str] | None, force: bool) -> None:
    from lensaudit.pipeline import run_pipeline

    ctx = _context(config, run_dir, overrides)
    try:
        mans = run_pipeline(ctx, stages, force=force)
    finally:
        ctx.close()
    _summary(ctx, mans)


@app.command()
def run(config: ConfigArg = Path(DEFAULT_CONFIG), run_dir: RunDirOpt = None, set_: SetOpt = None, force: ForceOpt = False,
        stages: Annotated[Optional[str], typer.Option("--stages", help="Comma-separated subset, e.g. train,evaluate.")] = None) -> None:
    """Run every stage in order (each skipped when up to date)."""
    names = [s.strip() for s in stages.split(",")] if stages else None
    _guard(lambda: _run_stages(config, run_dir, set_, names, force))


@app.command()
def demo(config: ConfigArg = Path(DEFAULT_CONFIG), run_dir: RunDirOpt = None, set_: SetOpt = None, force: ForceOpt = False) -> None:
    """Build the synthetic DR10 sky (if missing) under the run directory and run every stage on it."""
    overrides = list(set_ or []) + ["data.source=synthetic"]
    _guard(lambda: _run_stages(config, run_dir, overrides, None, force))


def _stage_command(name: str, doc: str) -> None:
    def cmd(config: ConfigArg = Path(DEFAULT_CONFIG), run_dir: RunDirOpt = None, set_: SetOpt = None, force: ForceOpt = False) -> None:
        _guard(lambda: _run_stages(config, run_dir, set_, [name], force))

    cmd.__doc__ = doc
    app.command(name=name)(cmd)


_STAGE_DOCS = {
    "positives": "Known lenses (lenscat, + extra CSVs, + DESI SL VAC) → tiers and weights → positives.parquet.",
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
for _name, _doc in _STAGE_DOCS.items():
    _stage_command(_name, _doc)


@config_app.command("show")
def config_show(config: ConfigArg = Path(DEFAULT_CONFIG), run_dir: RunDirOpt = None, set_: SetOpt = None) -> None:
    """Print the resolved config (defaults + YAML + overrides) as YAML."""
    from lensaudit.config import dump_config, load_config

    _guard(lambda: typer.echo(dump_config(load_config(config, set_ or [], run_dir))))


@config_app.command("reference")
def config_reference() -> None:
    """Print the config reference (Markdown), generated from the pydantic models."""
    from lensaudit.config import config_reference_markdown

    typer.echo(config_reference_markdown())


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # parent package absent
        return False


def _optional_subapps() -> None:
    """Sub-command groups that live beside their subpackage (e.g. `lensaudit sky make|serve|check`)."""
    for mod_name, group in (("lensaudit.sky.cli", "sky"),):
        if _module_exists(mod_name):
            mod = __import__(mod_name, fromlist=["app"])
            app.add_typer(mod.app, name=group)
    for mod_name in ("lensaudit.audit.cli",):
        if _module_exists(mod_name):
            __import__(mod_name, fromlist=["register"]).register(app)


_optional_subapps()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
