"""Passing and failing cases of the failures gates, from small taxonomy, truth and selection tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from helpers import Run

from lensaudit.audit.failure_modes import TAXONOMY_COLUMNS
from lensaudit.validation import Inputs

N = 10


def _taxonomy(root: Path, fp_mode: str, missed_mode: str, *overrides: str) -> Inputs:
    """``N`` false positives (ring confusers in truth) and ``N`` missed Tier-A lenses (θE = 2″ in 1″ seeing,
    true arc SNR 10: the truth says ``faint_arc``), with the modes the rules gave them."""
    ids = [f"g{i}" for i in range(2 * N)]
    tax = pd.DataFrame({c: np.zeros(2 * N) for c in TAXONOMY_COLUMNS})
    tax["galaxy_id"] = ids
    tax["kind_of_failure"] = ["false_positive"] * N + ["missed_tier_A"] * N
    tax["mode"] = [fp_mode] * N + [missed_mode] * N
    tax["psfsize_r"] = 1.0
    truth = pd.DataFrame(
        {
            "galaxy_id": ids,
            "objid": np.arange(2 * N),
            "kind": ["ring"] * N + ["lens"] * N,
            "theta_e_arcsec": [np.nan] * N + [2.0] * N,
            "arc_snr": [np.nan] * N + [10.0] * N,
        }
    )
    run = Run(root, *overrides).table("failures", "taxonomy", tax).table("sky", "truth", truth)
    return run.inputs()


def right_rules(root: Path) -> Inputs:
    return _taxonomy(root, "confuser:ring_proxy", "faint_arc")


def wrong_rules(root: Path) -> Inputs:
    return _taxonomy(root, "other", "psf_blended")


def real_data(root: Path) -> Inputs:
    """The right modes, but on real data: there is no truth to score them, so they are insufficient."""
    return _taxonomy(root, "confuser:ring_proxy", "faint_arc", "data.source=dr10")


def _selection(root: Path, c_mean: list[float]) -> Inputs:
    sel = pd.DataFrame({"cell": np.arange(len(c_mean)), "c_mean": c_mean, "n": 200})
    sel["insufficient"] = False
    sel.loc[0, ["insufficient", "c_mean", "n"]] = [True, 0.0, 3]  # an insufficient cell never counts
    return Run(root).table("selection", "marginal", sel).inputs()


CASES = {
    "taxonomy_accuracy_vs_truth": (right_rules, wrong_rules),
    "missed_taxonomy_accuracy_vs_truth": (right_rules, real_data),
    "collapse_cells": (
        lambda root: _selection(root, [0.0] + [0.9] * 9 + [0.1]),
        lambda root: _selection(root, [0.0] + [0.1] * 6 + [0.9] * 4),
    ),
}
