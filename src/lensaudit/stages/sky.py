"""sky: build the synthetic DR10-like sky (demo and tests) into `data.sky_dir`, then gate its realism."""

from __future__ import annotations

from lensaudit import validation
from lensaudit.config import SkyConfig
from lensaudit.run import Manifest, StageContext
from lensaudit.sky.build import build_sky, plan
from lensaudit.sky.check import is_realism
from lensaudit.utils import atomic_write_json

NAME = "sky"
SECTIONS = ("sky", "data")
READS: tuple[str, ...] = ()
WRITES = (
    "sweeps",
    "coadds",
    "survey_bricks",
    "conditions",
    "truth",
    "lenses",
    "check",
    "galaxy_zoo",
    "desi_sl_vac",
)


def run(cfg: SkyConfig, ctx: StageContext) -> Manifest:
    """Render the planned bricks (resumable), write the sweeps and tables, compare them with real DR10."""
    check = ctx.output("check")
    root = check.parent  # the sky directory (data.sky_dir): every sky artifact lives under it
    with ctx.progress(len(plan(cfg, ctx.seed)), "sky: rendering bricks") as bar:
        counts = build_sky(root, cfg, ctx.seed, workers=cfg.workers, on_brick=lambda _: bar.advance(1))
    gates = validation.evaluate(NAME, validation.stage_inputs(ctx))
    atomic_write_json(check, [g.to_dict() for g in gates if is_realism(g.name)])
    return Manifest(counts=counts, gates=gates)
