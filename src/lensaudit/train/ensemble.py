"""Ensembles of frozen finders (issue 20): members trained on the same data with the same seeds, combined by
their mean logit or by a logistic meta-learner fitted on the validation split.

The combined table has the columns of a single model's scored table (``logit``, ``score``), so the ensemble
is audited exactly like a single model (:func:`lensaudit.audit.evaluation.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lensaudit.train.infer import sigmoid


def mean_logit(logits: np.ndarray) -> np.ndarray:
    """The mean over members (axis 0) of an (M, N) array of logits.

    >>> mean_logit(np.array([[1.0, -2.0], [3.0, 0.0]])).tolist()
    [2.0, -1.0]
    """
    z = np.asarray(logits, float)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"expected an (M, N) array of member logits with M ≥ 1, got shape {z.shape}")
    return z.mean(axis=0)


@dataclass
class MetaLearner:
    """Logistic regression on the members' logits: ``logit = coef · z + intercept`` (L2, C = ``c``)."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, logits: np.ndarray, y: np.ndarray, c: float = 1.0) -> MetaLearner:
        """Fit on (M, N) member logits of the validation split and its labels (both classes needed)."""
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y).astype(int)
        if len(np.unique(y)) != 2:
            raise ValueError("the meta-learner needs both classes in the validation split")
        lr = LogisticRegression(C=c, solver="lbfgs", max_iter=1000)
        lr.fit(np.asarray(logits, float).T, y)
        return cls(coef=lr.coef_[0].astype(float), intercept=float(lr.intercept_[0]))

    def logit(self, logits: np.ndarray) -> np.ndarray:
        """The combined logit of (M, N) member logits."""
        return self.coef @ np.asarray(logits, float) + self.intercept

    def to_dict(self) -> dict:
        return {"coef": self.coef.tolist(), "intercept": self.intercept}


def member_matrix(scored: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows scored by every member (inner join on ``galaxy_id``; the first member's columns) and the
    (M, N) matrix of their logits, members in the order of ``scored``."""
    names = list(scored)
    if not names:
        raise ValueError("an ensemble needs at least one member")
    base = scored[names[0]].drop(columns=["logit", "score"])
    for n in names:
        base = base.merge(
            scored[n][["galaxy_id", "logit"]].rename(columns={"logit": f"logit_{n}"}),
            on="galaxy_id",
            how="inner",
            validate="one_to_one",
        )
    z = np.stack([base.pop(f"logit_{n}").to_numpy(float) for n in names])
    return base, z


def combine(
    scored: dict[str, pd.DataFrame], method: str = "mean_logit"
) -> tuple[pd.DataFrame, MetaLearner | None]:
    """The ensemble's scored table from each member's scored table (same rows, e.g. the val and test
    splits): ``method`` 'mean_logit', or 'meta' (a :class:`MetaLearner` fitted on the ``split == 'val'``
    rows and applied to all). Returns the table (``logit``, ``score`` replaced) and the meta-learner.

    >>> a = pd.DataFrame({"galaxy_id": ["x", "y"], "label": [1, 0], "split": "val", "logit": [2.0, 0.0],
    ...                   "score": 0.0})
    >>> b = a.assign(logit=[0.0, -2.0])
    >>> combine({"a": a, "b": b})[0].logit.tolist()
    [1.0, -1.0]
    """
    base, z = member_matrix(scored)
    meta = None
    if method == "meta":
        val = (base.split == "val").to_numpy()
        meta = MetaLearner.fit(z[:, val], base.label.to_numpy()[val])
    elif method != "mean_logit":
        raise ValueError(f"unknown ensemble method {method!r}: 'mean_logit' or 'meta'")
    logit = ensemble_logit(z, meta, np.result_type(*[t.logit.dtype for t in scored.values()]))
    return base.assign(logit=logit, score=sigmoid(logit)), meta


def ensemble_logit(z: np.ndarray, meta: MetaLearner | None, dtype: np.dtype | type) -> np.ndarray:
    """The ensemble's logit of (M, N) member logits: their mean, or ``meta``'s combination when given; in
    ``dtype`` (the members' precision, so that the score of a one-member mean-logit ensemble is the member's,
    bit for bit). The one combination rule of the val/test tables and of the injections.

    >>> ensemble_logit(np.array([[1.0, -2.0], [3.0, 0.0]], np.float32), None, np.float32).tolist()
    [2.0, -1.0]
    """
    logit = mean_logit(z) if meta is None else meta.logit(z)
    return np.asarray(logit).astype(dtype)


def member_files(out_dir) -> tuple:
    """(best checkpoint, model card) of a member trained by :func:`train_member` into ``out_dir``."""
    from pathlib import Path

    return Path(out_dir) / "best.pt", Path(out_dir) / "model_card.json"


def train_member(
    store, sample_path, index_path, cfg, seed: int, out_dir, on_epoch=None
) -> tuple[dict, object]:  # pragma: no cover - exercised by the ensemble and mine stages
    """Train one finder with the train stage's loop (``cfg``: a TrainConfig, e.g. with another ``arch`` or
    extra negatives) into ``out_dir`` (best.pt, last.pt, history.jsonl, model_card.json; resumable), on the
    same data and seeds as the train stage. Returns (model card, FitResult)."""
    from pathlib import Path

    from lensaudit.train.card import model_card
    from lensaudit.train.data import load_table
    from lensaudit.train.infer import pick_device
    from lensaudit.train.loop import CheckpointPaths, fit, new_model, training_data
    from lensaudit.utils import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    smp = sample_path if isinstance(sample_path, pd.DataFrame) else pd.read_parquet(sample_path)
    t = load_table(smp, pd.read_parquet(index_path))
    data = training_data(store, t, cfg, seed)
    device = pick_device(cfg.device)
    model = new_model(cfg, seed, device)
    paths = CheckpointPaths(best=out / "best.pt", last=out / "last.pt", history=out / "history.jsonl")
    res = fit(model, data.train, data.val, cfg, paths, seed, device, data.pos_weight, t.galaxy_id, t.tier,
              on_epoch=on_epoch)  # fmt: skip
    if isinstance(sample_path, pd.DataFrame):
        sample_file = out / "sample.parquet"
        smp.to_parquet(sample_file)
    else:
        sample_file = Path(sample_path)
    card = model_card(cfg, data, res, paths.best, sample_file, Path(index_path), seed, device)
    atomic_write_json(out / "model_card.json", card)
    return card, res
