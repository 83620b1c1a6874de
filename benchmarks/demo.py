"""Wall time of the whole demo (`lensaudit demo`) on this machine, per stage, excluding the pip install.

Runs the demo in a fresh run directory, then a second time to show that an up-to-date run is a fast no-op.
Writes benchmarks/results/demo.json and prints a table. Budget: ≤ 15 minutes on 2 CPU cores.

    .venv/bin/python benchmarks/demo.py [--run-dir runs/bench-demo] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run-dir", default=str(REPO / "runs" / "bench-demo"))
    ap.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    ap.add_argument("--keep", action="store_true", help="keep the run directory afterwards")
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    exe = Path(sys.executable).parent / "lensaudit"
    cmd = [str(exe), "demo", args.config, "--run-dir", str(run_dir)]
    t0 = time.perf_counter()
    first = subprocess.run(cmd, cwd=REPO)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    t_second = time.perf_counter() - t0
    stages = {}
    for m in sorted(run_dir.glob("*/_stage.json")):
        d = json.loads(m.read_text())
        stages[d["stage"]] = {
            "wall_s": d["wall_s"],
            "gate_status": d.get("gate_status"),
            "status": d["status"],
        }
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "first_run_s": round(t_first, 1),
        "first_rc": first.returncode,
        "second_run_s": round(t_second, 1),
        "second_rc": second.returncode,
        "budget_s": 900,
        "within_budget": t_first <= 900,
        "stages": stages,
    }
    out = REPO / "benchmarks" / "results" / "demo.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'stage':<12}{'wall s':>9}  gates")
    for name, s in stages.items():
        print(f"{name:<12}{s['wall_s']:>9.1f}  {s['gate_status']}")
    print(
        f"demo first run: {t_first:.1f} s (budget 900 s, rc={first.returncode}); "
        f"second run (no-op): {t_second:.1f} s"
    )
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if first.returncode == 0 and second.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
