"""Hard-negative mining: mined negatives come only from the TRAIN split's negatives, never from val or test,
whatever the scores or the user's confirmations say; confirmed lenses leave the training set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lensaudit.catalog.n2_rules import MINED
from lensaudit.catalog.sampling import mining_round, read_confirmations
from lensaudit.errors import InputError


def _sample(n: int = 60) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "galaxy_id": [f"g{k:03d}" for k in i],
            "label": (i % 5 == 0).astype(int),
            "split": np.array(["train", "val", "test"])[i % 3],
            "n2_category": np.where(i % 7 == 0, "spiral_proxy", ""),
            "pool": "N1",
            "weight": 1.0,
            "tier": "",
        }
    )


def test_mined_negatives_never_come_from_val_or_test():
    s = _sample()
    # val and test negatives score highest of all, and the scored table even claims one is 'train'
    score = np.where(s.split == "train", 0.5 + 0.001 * np.arange(len(s)), 0.99)
    scored = s.assign(score=score)
    scored.loc[scored.galaxy_id == "g001", "split"] = "train"  # g001 is a val row in the sample
    conf = pd.DataFrame({"galaxy_id": ["g002", "g004"], "verdict": ["non_lens", "non_lens"]})  # test, val
    out, rep = mining_round(s, scored, top_k=5, weight=3.0, confirmations=conf)
    mined = out[out.n2_category == MINED]
    assert len(mined) == 5 and rep["mined"] == 5
    assert (mined.split == "train").all() and (mined.label == 0).all()
    assert set(mined.galaxy_id) <= set(s.galaxy_id[(s.split == "train") & (s.label == 0)])
    assert rep["confirmations_ignored"] == 2
    # the top five train negatives by score, with the mining weight; val/test rows unchanged
    expect = scored[(s.split == "train") & (s.label == 0)].nlargest(5, "score").galaxy_id
    assert sorted(mined.galaxy_id) == sorted(expect) and (mined.weight == 3.0).all()
    vt = s.split != "train"
    pd.testing.assert_frame_equal(
        out[out.split != "train"].reset_index(drop=True), s[vt].reset_index(drop=True)
    )


def test_a_second_round_mines_new_negatives_and_confirmations_are_honoured():
    s = _sample()
    scored = s.assign(score=np.linspace(0, 1, len(s)))
    out1, _ = mining_round(s, scored, 3, 2.0)
    out2, rep2 = mining_round(out1, scored.merge(out1[["galaxy_id"]]), 3, 2.0)
    assert rep2["mined"] == 3 and rep2["mined_total"] == 6
    # a confirmed lens leaves the sample; a confirmed non-lens is mined even with a low score
    tneg = s[(s.split == "train") & (s.label == 0)].galaxy_id.tolist()
    conf = pd.DataFrame({"galaxy_id": [tneg[-1], tneg[0]], "verdict": ["lens", "non_lens"]})
    out3, rep3 = mining_round(s, scored, 2, 2.0, conf)
    assert tneg[-1] not in set(out3.galaxy_id) and rep3["dropped_as_lens"] == 1
    assert out3.set_index("galaxy_id").n2_category[tneg[0]] == MINED


def test_confirmation_csv_errors_name_the_line(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("galaxy_id,verdict\ng1,non_lens\ng2,maybe\n")
    with pytest.raises(InputError, match=r"c.csv:3: verdict 'maybe'"):
        read_confirmations(p)
    p.write_text("galaxy_id\ng1\n")
    with pytest.raises(InputError, match="lacks columns"):
        read_confirmations(p)
    p.write_text("galaxy_id,verdict\ng1, Lens\n")
    assert read_confirmations(p).verdict.tolist() == ["lens"]
