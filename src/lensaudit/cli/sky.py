"""`lensaudit sky make | serve | check`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lensaudit.cli.common import console, guard, status_colour

app = typer.Typer(
    no_args_is_help=True, help="The synthetic DR10 sky: build it, serve its cutout API, check its realism."
)


@app.command()
def make(
    out: Annotated[Path, typer.Option("--out", help="Sky directory to write.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML config (its `sky:` section and run.seed).")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override section.key=value.")] = None,
) -> None:
    """Write a synthetic sky (sweeps, coadds, survey-bricks, truth, lenses.csv) to OUT."""
    from lensaudit.config import load_config
    from lensaudit.sky.build import build_sky, plan

    def go():
        cfg = load_config(config, set_ or [])
        n = len(plan(cfg.sky, cfg.run.seed))
        with console.status(f"rendering {n} bricks"):
            counts = build_sky(out, cfg.sky, cfg.run.seed, workers=cfg.sky.workers)
        console.print(counts)

    guard(go)


@app.command()
def serve(
    sky: Annotated[Path, typer.Option("--sky", help="Sky directory (with coadd/).")],
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0 = any free port).")] = 8080,
    error_rate: Annotated[
        float, typer.Option(help="Fault injection: fraction of 429/503/504 answers.")
    ] = 0.0,
    truncate_rate: Annotated[
        float, typer.Option(help="Fault injection: fraction of truncated bodies.")
    ] = 0.0,
    latency_s: Annotated[float, typer.Option(help="Fault injection: latency spike (s).")] = 0.0,
    latency_rate: Annotated[float, typer.Option(help="Fault injection: fraction of slow answers.")] = 0.0,
    reset_once: Annotated[bool, typer.Option(help="Fault injection: reset one connection.")] = False,
    seed: Annotated[int, typer.Option(help="Fault injection seed.")] = 0,
) -> None:
    """Serve the Legacy Survey cutout API (/viewer/cutout.fits, /viewer/fits-cutout, and the JPEG
    /viewer/cutout.jpg, /viewer/jpeg-cutout) on 127.0.0.1 until Ctrl-C."""
    from lensaudit.sky.server import FaultConfig
    from lensaudit.sky.server import serve as start

    if not (sky / "coadd").is_dir():
        console.print(f"[red]error:[/red] no coadd/ directory in {sky}; build one with `lensaudit sky make`")
        raise typer.Exit(3)
    srv = start(
        sky,
        port=port,
        faults=FaultConfig(
            error_rate, (429, 503, 504), truncate_rate, latency_s, latency_rate, reset_once, seed
        ),
    )
    typer.echo(f"serving {srv.url}", err=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.shutdown()


@app.command()
def check(sky: Annotated[Path, typer.Option("--sky", help="Sky directory.")]) -> None:
    """Realism report: each gate with its measured value and threshold (also written to
    SKY/sky_check.json)."""
    from lensaudit.sky.check import check_sky
    from lensaudit.utils import atomic_write_json

    def go():
        gates = check_sky(sky)
        atomic_write_json(sky / "sky_check.json", [g.to_dict() for g in gates])
        t = Table(title=f"sky check: {sky}")
        for c in ("gate", "value", "threshold", "status", "note"):
            t.add_column(c)
        for g in gates:
            thr = (
                f"[{g.lo}, {g.hi}]"
                if g.lo is not None or g.hi is not None
                else f"warn {g.warn} fail {g.fail}"
            )
            t.add_row(g.name, f"{g.value:.4g}", thr, f"[{status_colour(g.status)}]{g.status}[/]", g.message)
        console.print(t)
        if any(g.status == "fail" for g in gates):
            raise typer.Exit(4)

    guard(go)
