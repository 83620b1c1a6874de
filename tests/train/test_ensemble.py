"""The ensemble's combination rules: the mean of the members' logits, and a logistic meta-learner fitted on
the validation split only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.audit.metrics import roc_auc
from lensaudit.train.ensemble import MetaLearner, combine, mean_logit, member_matrix


def _members(n: int = 400, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Two members on the same rows: ``good`` separates the classes, ``noise`` is pure noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    split = np.where(np.arange(n) % 2 == 0, "val", "test")
    base = pd.DataFrame({"galaxy_id": [f"g{i}" for i in range(n)], "label": y, "split": split, "score": 0.0})
    good = base.assign(logit=3.0 * (y - 0.5) + rng.normal(0, 1, n))
    noise = base.assign(logit=rng.normal(0, 3, n))
    return {"good": good, "noise": noise}


def test_mean_logit_is_the_average_of_the_member_logits():
    z = np.array([[1.0, -4.0, 0.5], [3.0, 2.0, -0.5], [-1.0, 5.0, 3.0]])
    assert mean_logit(z).tolist() == pytest.approx([1.0, 1.0, 1.0])
    m = _members()
    out, meta = combine(m, "mean_logit")
    assert meta is None
    expect = (m["good"].logit.to_numpy() + m["noise"].logit.to_numpy()) / 2
    assert out.logit.to_numpy() == pytest.approx(expect)
    assert out.score.to_numpy() == pytest.approx(1 / (1 + np.exp(-expect)))


def test_members_are_joined_on_galaxy_id_not_row_order():
    m = _members(50)
    shuffled = m["noise"].sample(frac=1.0, random_state=3)
    base, z = member_matrix({"good": m["good"], "noise": shuffled})
    assert base.galaxy_id.tolist() == m["good"].galaxy_id.tolist()
    assert z[1] == pytest.approx(m["noise"].logit.to_numpy())


def test_meta_learner_weights_the_informative_member_and_uses_only_val():
    m = _members()
    out, meta = combine(m, "meta")
    assert meta is not None and meta.coef[0] > 5 * abs(meta.coef[1])
    test = out[out.split == "test"]
    assert roc_auc(test.label, test.score) > roc_auc(
        test.label, combine(m, "mean_logit")[0].loc[test.index].score
    )
    # the test labels do not enter the fit: flipping them leaves the meta-learner unchanged
    flipped = {k: v.assign(label=np.where(v.split == "test", 1 - v.label, v.label)) for k, v in m.items()}
    _, meta2 = combine(flipped, "meta")
    assert meta2 is not None and meta2.coef == pytest.approx(meta.coef) and meta2.intercept == meta.intercept


def test_meta_learner_needs_both_classes_and_known_methods():
    with pytest.raises(ValueError, match="both classes"):
        MetaLearner.fit(np.zeros((2, 5)), np.zeros(5))
    with pytest.raises(ValueError, match="unknown ensemble method"):
        combine(_members(10), "median")
    with pytest.raises(ValueError, match="at least one member"):
        combine({})
