"""sky: build the synthetic DR10-like sky (demo and tests) into `data.sky_dir`, then gate its realism."""
from __future__ import annotations

from lensaudit.config import SkyConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.sky.build import build_sky, plan
from lensaudit.sky.check import check_sky
from lensaudit.utils import atomic_write_json

NAME = "sky"
SECTIONS = ("sky", "data")
DEPENDS: tuple[str, ...] = ()


def run(cfg: SkyConfig, ctx: RunContext) -> Manifest:
    out = ctx.config.sky_dir
    n = len(plan(cfg, ctx.seed))
    with ctx.progress(n, "sky: rendering bricks") as bar:
        counts = build_sky(out, cfg, ctx.seed, workers=cfg.workers, on_brick=lambda _: bar.advance(1))
    gates = check_sky(out)
    atomic_write_json(out / "sky_check.json", [g.to_dict() for g in gates])
    gates.append(Gate(name="lenses_in_lenses_csv", value=counts["lenses_csv"], fail=0.5, higher_is_better=True))
    return Manifest(counts=counts, gates=gates, outputs=["sweep/", "coadd/", "survey-bricks.fits.gz", "conditions.parquet",
                                                        "truth.parquet", "lenses.csv", "sky_check.json"])
