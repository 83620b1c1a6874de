"""Scoring with the frozen finder: the same rows, columns, logits and scores as the pre-refactor path, bit for
bit; the frozen-model loading paths and its hash check; hard-negative mining."""

from __future__ import annotations

import contextlib
import shutil

import numpy as np
import pandas as pd
import pytest

from lensaudit.audit.scoring import MINED_COLUMNS, SCORE_COLUMNS, mine_negatives, score_table
from lensaudit.errors import InputError
from lensaudit.stamps.store import StampStore
from lensaudit.train.infer import load_frozen


def _old_score_table(sample, stamps, store, model, splits):
    """The pre-refactor evaluate.score_table, verbatim (minus the run context)."""
    q = stamps[stamps.quality_ok].drop(
        columns=["label", "pool", "split", "psfsize_r", "psfdepth_mag_r"], errors="ignore"
    )
    df = q.merge(sample, on="galaxy_id", how="inner")
    df = df[df.split.isin(splits)].sort_values("row").reset_index(drop=True)
    logits = []
    for a in range(0, len(df), 256):
        img, _, _ = store.read(df.row.to_numpy()[a : a + 256])
        logits.append(model.logits(img))
    z = np.concatenate(logits) if logits else np.zeros(0)
    df["logit"], df["score"] = z, 1 / (1 + np.exp(-z))
    return df


@pytest.fixture(scope="module")
def frozen(audit_world):
    return load_frozen(best=audit_world["best"], card=audit_world["card"], device="cpu")


def test_score_table_is_the_old_path_bit_for_bit(audit_world, frozen):
    sample, stamps = pd.read_parquet(audit_world["sample"]), pd.read_parquet(audit_world["stamps"])
    store = StampStore.open(audit_world["store"])
    splits = ("val", "test", "train")  # > 256 quality-ok stamps: two chunks
    advanced, totals = [], []

    @contextlib.contextmanager
    def progress(total):
        totals.append(total)
        yield type("Bar", (), {"advance": staticmethod(advanced.append)})

    new = score_table(audit_world["sample"], audit_world["stamps"], store, frozen, splits, progress=progress)
    old = _old_score_table(sample, stamps, store, frozen, splits)
    assert len(new) > 256 and totals == [len(new)] and advanced == [256, len(new) - 256]
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert new.logit.to_numpy().tobytes() == old.logit.to_numpy().tobytes()
    assert new.score.to_numpy().tobytes() == old.score.to_numpy().tobytes()
    assert (new.label >= 0).all() and set(new.split) == set(splits)  # the sample's copies won
    assert set(SCORE_COLUMNS) <= set(new.columns)


def test_load_frozen_paths_directory_and_hash_check(audit_world, frozen, tmp_path):
    by_dir = load_frozen(audit_world["best"].parent, "cpu")
    assert by_dir.sha256 == frozen.sha256
    x = np.random.default_rng(0).normal(0, 0.003, (4, 3, 101, 101)).astype(np.float32)
    assert np.array_equal(by_dir.logits(x), frozen.logits(x))
    changed = tmp_path / "best.pt"
    shutil.copy(audit_world["best"], changed)
    with changed.open("ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match="changed after it was frozen"):
        load_frozen(best=changed, card=audit_world["card"], device="cpu")
    with pytest.raises(InputError, match="no frozen model"):
        load_frozen(best=tmp_path / "missing.pt", card=audit_world["card"])
    with pytest.raises(TypeError):
        load_frozen(best=audit_world["best"])


def test_mine_negatives_top_k_train_negatives():
    scored = pd.DataFrame(
        {
            "galaxy_id": [f"g{i}" for i in range(8)],
            "ra": np.arange(8.0),
            "dec": -np.arange(8.0),
            "score": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.95],
            "n2_category": ["", "ring_proxy", "", "", "", "", "", ""],
            "split": ["train"] * 7 + ["val"],
            "label": [1, 0, 0, 0, 0, 0, 0, 0],
            "logit": 0.0,
        }
    )
    mined = mine_negatives(scored, 3, "sha")
    assert list(mined.columns) == MINED_COLUMNS + ["proposed_n2_category", "model_sha256"]
    assert mined.galaxy_id.tolist() == ["g1", "g2", "g3"] and mined.score.is_monotonic_decreasing
    assert (mined.proposed_n2_category == "mined").all() and (mined.model_sha256 == "sha").all()
    assert len(mine_negatives(scored, 100, "sha")) == 6
