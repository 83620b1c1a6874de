"""Helpers shared by the benchmarks: peak memory and result files."""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path

import psutil

RESULTS = Path(__file__).parent / "results"


class PeakRSS:
    """Peak resident memory (MiB) of this process and its children, sampled every 50 ms."""

    def __enter__(self):
        self.peak = 0.0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        p = psutil.Process()
        while not self._stop:
            try:
                rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            except psutil.Error:
                rss = 0
            self.peak = max(self.peak, rss / 2**20)
            time.sleep(0.05)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()


def save(name: str, result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    for k, v in result.items():
        print(f"{k:>34}: {v}")


def run_args(argv: list[str]) -> tuple[Path, list]:
    """``RUN [N [OUT]]`` of a diagnostic benchmark: the run directory and ``main``'s optional arguments (N an
    int, OUT a path)."""
    return Path(argv[1]), [*([int(argv[2])] if len(argv) > 2 else []), *[Path(a) for a in argv[3:4]]]


def write_result(out: Path, res: dict, t0: float) -> dict:
    """``res`` with ``wall_s`` since ``t0`` (``time.perf_counter``), written to ``out`` as JSON."""
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def closure_summary(c: dict) -> dict:
    """The total, the criteria's statistics and the θE pulls of a ``selection.closure.closure_of`` record,
    rounded for a results file."""
    t = c["total"]
    return {
        "expected": round(t["expected"], 2),
        "observed": t["observed"],
        "pull": round(t["pull"], 3),
        "chi2_pvalue": round(c["chi2_pvalue"], 4),
        "fraction_within_1sigma": round(c["fraction_within_1sigma"], 3),
        "theta_pulls": [round(b["pull"], 2) for b in c["theta_bins"]],
    }
