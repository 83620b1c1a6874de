"""Recall split by how each lens was found (issue 20: circular positives).

Most positives were found by earlier CNN searches of the same Legacy Surveys images, so a CNN's recall on them
is partly circular. Each test lens's catalogue reference string (lenscat ``ref``; several references are
joined by ``|``) is matched against the regular expressions of ``evaluate.discovery_methods``; a lens counts
under every method its references name, and the row ``independent of CNN searches`` holds the lenses that no
CNN / ML reference names.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.audit.metrics import rate

#: the methods whose lenses are found by CNN / machine-learning searches (the circular ones)
CNN_METHODS = ("DESI LS ResNet search", "other CNN / ML search")
#: the label of lenses whose references match no configured method
UNKNOWN = "other / unknown"
INDEPENDENT = "independent of CNN searches"


def methods_of(refs: pd.Series, patterns: dict[str, str]) -> list[list[str]]:
    """The discovery methods named by each reference string (``[UNKNOWN]`` when none matches).

    >>> methods_of(pd.Series(["Huang et al. (2020) | Talbot et al. (2020)", "x"]),
    ...            {"cnn": "Huang et al", "spec": "Talbot et al"})
    [['cnn', 'spec'], ['other / unknown']]
    """
    comp = {m: re.compile(p) for m, p in patterns.items()}
    return [[m for m, rx in comp.items() if rx.search(str(r))] or [UNKNOWN] for r in refs]


def recall_by_method(
    pos: pd.DataFrame, threshold: float, patterns: dict[str, str], level: float
) -> list[dict[str, Any]]:
    """Rows (method, k/n, recall, interval) of the positives ``pos`` (columns ``score``, ``ref``, ``tier``)
    at ``threshold``: one per configured method with lenses, the unknown ones, and the CNN-independent set."""
    meth = methods_of(pos.ref.fillna(""), patterns)
    hit = pos.score.to_numpy(float) >= threshold
    rows = []
    for m in [*patterns, UNKNOWN]:
        sel = np.array([m in ms for ms in meth], bool)
        if sel.any():
            rows.append(
                {"method": m, "tier_A": int((pos.tier.to_numpy()[sel] == "A").sum()), **rate(hit[sel], level)}
            )
    indep = np.array([not any(x in CNN_METHODS for x in ms) for ms in meth], bool)
    rows.append(
        {
            "method": INDEPENDENT,
            "tier_A": int((pos.tier.to_numpy()[indep] == "A").sum()),
            **rate(hit[indep], level),
        }
    )
    return rows
