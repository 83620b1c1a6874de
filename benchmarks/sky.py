"""Demo-sky build time and peak memory (target: under 3 minutes on 2 cores).

.venv/bin/python benchmarks/sky.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PeakRSS, save  # noqa: E402
from lensaudit.config import load_config  # noqa: E402
from lensaudit.sky.build import build_sky  # noqa: E402

if __name__ == "__main__":
    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
    out = Path(tempfile.mkdtemp())
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        counts = build_sky(out / "sky", cfg.sky, cfg.run.seed, workers=cfg.sky.workers)
        wall = time.perf_counter() - t0
    shutil.rmtree(out)
    save("sky", {"wall_s": round(wall, 1), "peak_rss_mib": round(mem.peak), "target_s": 180, **counts})
