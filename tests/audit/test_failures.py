"""Failure-mode rules: measurable covariates in, documented modes out; truth only scores them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.audit.failures import (
    classify_false_positive,
    classify_missed_lens,
    missed_accuracy,
    taxonomy_accuracy,
    truth_missed_mode,
)


def _missed():
    return pd.DataFrame(
        {
            "meas_arc_snr": [0.5, 8.0, 8.0, 0.5, 6.0],
            "shape_r": [1.2, 0.4, 1.5, 1.5, 1.5],
            "psfsize_r": [1.3] * 5,
            "bad_pixel_frac": [0, 0, 0, 0.2, 0],
            "star_mask_frac": [0.0] * 5,
            "theta_e_arcsec": [1.8, 0.7, 2.0, 1.5, 2.5],
            "arc_snr": [12.0, 80.0, 90.0, 10.0, 20.0],
        }
    )


def test_missed_lens_rules_in_documented_order():
    d = _missed()
    assert classify_missed_lens(d).tolist() == [
        "faint_arc",
        "psf_blended",
        "other",
        "masked_or_edge",
        "other",
    ]


def test_missed_lens_truth_and_accuracy_are_independent_of_the_rules():
    d = _missed()
    truth = truth_missed_mode(d)
    assert truth.tolist() == ["faint_arc", "psf_blended", "other", "faint_arc", "faint_arc"]
    acc = missed_accuracy(classify_missed_lens(d), truth)
    assert acc["n"] == 4 and acc["accuracy"] == 0.75  # the masked one is not scored; the last is a miss
    assert acc["confusion"]["faint_arc"] == {"faint_arc": 1, "other": 1, "psf_blended": 0}


def test_false_positive_rules_and_truth_score():
    d = pd.DataFrame(
        {
            "shape_r": [0.3, 2.0, 2.0, 2.0],
            "psfsize_r": [1.3] * 4,
            "n2_category": ["", "ring_proxy", "", "spiral_proxy"],
            "bad_pixel_frac": [0, 0, 0, 0.3],
            "star_mask_frac": [0.0] * 4,
        }
    )
    modes = classify_false_positive(d)
    assert modes.tolist() == ["psf_blended", "confuser:ring_proxy", "other", "masked_or_edge"]
    acc = taxonomy_accuracy(modes, pd.Series(["galaxy", "ring", "lens", "spiral"]))
    assert acc["n"] == 2 and acc["accuracy"] == 0.5 and acc["unknown_lenses_among_fp"] == 1
    assert np.isnan(taxonomy_accuracy(modes, pd.Series(["galaxy"] * 4))["accuracy"])
