"""sample: pool → negatives per (nobs_z bin, TYPE) stratum at the configured ratio to the positives, N1:N2
within each stratum, hash-deterministic and order-free (two passes over the pool on Dask)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.catalog.cuts import nobs_z_bin, parent_mask, type_bin
from lensaudit.catalog.pool import TRACTOR_FOR_POSITIVES, pool_parts
from lensaudit.catalog.sampling import STRATUM, add_mag_bin, candidate_filter, quotas, select
from lensaudit.config import SampleConfig
from lensaudit.gates import Gate
from lensaudit.pipeline import Manifest, RunContext
from lensaudit.utils import write_parquet_atomic

NAME = "sample"
SECTIONS = ("sample", "catalog", "positives")
DEPENDS = ("catalog", "positives")
CONDITIONS = ["type", "nobs_g", "nobs_r", "nobs_z", "psfsize_g", "psfsize_r", "psfsize_z", "psfdepth_g", "psfdepth_r",
              "psfdepth_z", "psfdepth_mag_g", "psfdepth_mag_r", "psfdepth_mag_z", "galdepth_g", "galdepth_r", "galdepth_z",
              "ebv", "flux_g", "flux_r", "flux_z", "flux_w1", "mag_g", "mag_r", "mag_z", "shape_r", "shape_e1", "shape_e2",
              "sersic", "maskbits", "g_r", "r_z", "ellipticity", "rchisq_r", "brickname", "brickid", "objid", "release"]
COLUMNS = (["galaxy_id", "ra", "dec", "label", "tier", "weight", "pool", "n2_category", "split", "positive_id",
            "nobs_z_bin", "type_bin", "mag_bin", "healpix_128", "healpix_64"] + CONDITIONS)


def _counts(path: str, edges: list[float]) -> pd.DataFrame:
    df = add_mag_bin(pd.read_parquet(path, columns=["nobs_z_bin", "type_bin", "mag_r", "pool"]), edges)
    return df[STRATUM + ["pool"]].value_counts().rename("n").reset_index()


def _candidates(path: str, q: pd.DataFrame, seed: int, edges: list[float]) -> pd.DataFrame:
    return candidate_filter(add_mag_bin(pd.read_parquet(path), edges), q, seed)


def run(cfg: SampleConfig, ctx: RunContext) -> Manifest:
    cat_cfg = ctx.config.catalog
    pos = pd.read_parquet(ctx.run_dir / "catalog" / "positives_matched.parquet")
    pos = pos[pos.matched].copy()
    # positives face the same parent cuts as negatives (except the magnitude window: deflectors of known lenses
    # are kept at any brightness), so that every positive stratum can have negatives
    keep = parent_mask(pos.assign(mag_r=np.clip(pos.mag_r, *cat_cfg.mag_r_range)), cat_cfg).to_numpy()
    n_cut = int((~keep).sum())
    pos = pos[keep].copy()
    pos["nobs_z_bin"] = nobs_z_bin(pos.nobs_z.astype(int), cat_cfg.nobs_z_edges)
    pos["type_bin"] = type_bin(pos.type)
    pos = add_mag_bin(pos, cfg.mag_r_edges)
    parts = [str(p) for p in pool_parts(ctx.run_dir / "catalog" / "pool")]
    client = ctx.dask_client()
    with ctx.progress(2 * len(parts), "sample: two passes over the pool") as bar:
        counts = []
        for f in client.map(_counts, parts, edges=cfg.mag_r_edges, pure=False):
            counts.append(f.result())
            bar.advance(1)
        pool_counts = pd.concat(counts).groupby(STRATUM + ["pool"], as_index=False).n.sum()
        q = quotas(pos.groupby(STRATUM).size(), pool_counts, cfg.neg_per_pos, cfg.n1_fraction)
        cands = []
        for f in client.map(_candidates, parts, q=q, seed=ctx.seed, edges=cfg.mag_r_edges, pure=False):
            cands.append(f.result())
            bar.advance(1)
    neg = select(pd.concat(cands, ignore_index=True), q)
    neg = neg.assign(label=0, tier="", weight=1.0, positive_id="")
    p = pos.assign(label=1, pool="positive", n2_category="")
    p["ra"], p["dec"] = p.tractor_ra, p.tractor_dec
    sample = pd.concat([p[COLUMNS], neg[COLUMNS]], ignore_index=True)
    sample = sample.sort_values("galaxy_id", kind="stable").reset_index(drop=True)
    for c in ("label", "nobs_g", "nobs_r", "nobs_z", "objid", "brickid", "release", "maskbits"):
        sample[c] = sample[c].astype(np.int64)
    out = ctx.stage_dir(NAME)
    write_parquet_atomic(sample, out / "sample.parquet")
    write_parquet_atomic(q, out / "strata.parquet")
    counts = {**_summary(sample, q), "positives_failing_parent_cuts": n_cut}
    return Manifest(counts=counts, gates=_gates(sample, q, cfg), outputs=["sample.parquet", "strata.parquet"],
                    extra={"strata": q.to_dict(orient="records")})


def _summary(sample: pd.DataFrame, q: pd.DataFrame) -> dict:
    c = {"rows": len(sample), "positives": int(sample.label.sum()), "tier_A": int((sample.tier == "A").sum()),
         "tier_B": int((sample.tier == "B").sum()), "N1": int((sample.pool == "N1").sum()), "N2": int((sample.pool == "N2").sum()),
         "shortfall": int(q.shortfall.sum())}
    for s in ("train", "val", "test"):
        c[f"{s}_pos"] = int(((sample.split == s) & (sample.label == 1)).sum())
        c[f"{s}_neg"] = int(((sample.split == s) & (sample.label == 0)).sum())
    return c


def _gates(sample: pd.DataFrame, q: pd.DataFrame, cfg: SampleConfig) -> list[Gate]:
    gates = []
    by = q.groupby(STRATUM).agg(n_pos=("n_pos", "first"), wanted=("wanted", "sum"), taken=("taken", "sum"), shortfall=("shortfall", "sum"))
    realised = by.taken / by.n_pos.clip(lower=1)
    ok_strata = by[by.shortfall == 0]
    worst_dev = float((ok_strata.taken / ok_strata.wanted.clip(lower=1) - 1).abs().max()) if len(ok_strata) else 0.0
    gates.append(Gate(name="ratio_per_stratum_max_rel_dev", value=worst_dev, warn=cfg.ratio_tolerance, fail=3 * cfg.ratio_tolerance,
                      detail={"|".join(k): round(float(v), 2) for k, v in realised.items()},
                      message="strata without shortfall; realised neg/pos per stratum in detail"))
    short = by[by.shortfall > 0]
    gates.append(Gate.check("strata_shortfall", short.empty, value=int(by.shortfall.sum()), warn_only=True,
                            message="; ".join(f"{'|'.join(k)}: short {int(r.shortfall)}" for k, r in short.iterrows())))
    n1n2 = q.pivot_table(index=STRATUM, columns="pool", values="taken", aggfunc="sum").fillna(0)
    frac_n1 = float(n1n2.get("N1", 0).sum() / max(n1n2.values.sum(), 1))
    gates.append(Gate(name="n1_fraction", value=frac_n1, lo=cfg.n1_fraction - 0.1, hi=cfg.n1_fraction + 0.1, soft=True,
                      message=f"target {cfg.n1_fraction}"))
    pos_ids = set(sample.galaxy_id[sample.label == 1])
    neg_ids = set(sample.galaxy_id[sample.label == 0])
    gates.append(Gate.check("no_positive_negative_overlap", not (pos_ids & neg_ids), value=len(pos_ids & neg_ids)))
    gates.append(Gate.check("no_cell_in_two_splits", bool((sample.groupby("healpix_128").split.nunique() <= 1).all())))
    gates.append(Gate.check("unique_galaxy_id", not sample.galaxy_id.duplicated().any()))
    gates.append(Gate(name="positives_in_sample", value=int(sample.label.sum()), fail=0.5, higher_is_better=True))
    return gates
