"""The conditional selection function C(θE, PSF, depth, m) and its closure ladder.

The finder's completeness is tabulated on a 4th axis, the source brightness: ``src_mag`` (the unlensed source
r magnitude) or ``arc_mag`` (the lensed arc's r magnitude), both from the same main-prior injections
(``selection.condition_on`` picks the one written to ``selection_function.fits``; the other is kept as
``selection_function_alt.parquet``). The 3-D C(θE, PSF, depth) of any source population is the 4-D table
integrated over that population's magnitudes (:meth:`SelectionFunction.marginalise`); the 3-D table of the
injections themselves (``selection_marginal.parquet``) is what the pipeline produced before issue 15.

The closure ladder (:func:`closure_record`) judges the synthetic sky's true lenses against: (a) the 3-D
marginal under the injection prior, (b) the 4-D table at each lens's true source magnitude, (b′) at its true
arc magnitude, and (c) the 4-D table of the host bracket (all N1 hosts instead of deflector-like ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection.closure import MAG_OF_AXIS, closure_of, host_replicates, ladder
from lensaudit.selection.completeness import completeness_table, completeness_table4
from lensaudit.selection.table import SelectionFunction
from lensaudit.utils import stable_seed

#: the injection columns the closure's host bootstrap needs
BOOT_COLUMNS = ("variant", "cell", "host_galaxy_id", "detected", "src_mag_r", "arc_mag_r")

#: what each 4th axis means (FITS AXIS4DSC)
AXIS_DESCRIPTION = {"src_mag": "unlensed source r mag", "arc_mag": "lensed arc r mag"}
OTHER_AXIS = {"src_mag": "arc_mag", "arc_mag": "src_mag"}


@dataclass
class Tables:
    """The selection stage's tables: the 3-D marginal of the main injections, the 4-D table on each axis
    (``by_axis``), with the host bracket the 4-D table of the all-N1-hosts injections (``hosts``), and the
    scored injections they were built from (``injections``: :data:`BOOT_COLUMNS`; None: no host bootstrap)."""

    marginal: pd.DataFrame
    by_axis: dict[str, SelectionFunction]
    hosts: SelectionFunction | None
    injections: pd.DataFrame | None = None

    @classmethod
    def read(cls, table: Path, alt: Path, marginal: Path, injections: Path | None = None) -> Tables:
        """The tables as the selection stage wrote them (the chosen and the alternative 4-D table, the 3-D
        marginal) and, for the host bootstrap, its ``injection_scores.parquet``; the host bracket's table is
        not written."""
        by_axis = {}
        for p in (table, alt):
            sf = SelectionFunction.load(p)
            by_axis[str(sf.mag_axis)] = sf
        inj = pd.read_parquet(injections, columns=list(BOOT_COLUMNS)) if injections is not None else None
        return cls(pd.read_parquet(marginal), by_axis, None, inj)

    def chosen(self, cfg: SelectionConfig) -> SelectionFunction:
        return self.by_axis[cfg.condition_on]

    def alternative(self, cfg: SelectionConfig) -> SelectionFunction:
        return self.by_axis[OTHER_AXIS[cfg.condition_on]]


def mag_edges(
    icfg: InjectConfig, cfg: SelectionConfig, axis: str, inj: pd.DataFrame, per_cell: float | None = None
) -> np.ndarray:
    """Bin edges of the 4th axis: the injection prior's range in ``mag_bin_width`` steps for ``src_mag``; for
    ``arc_mag`` (no declared prior: it follows from the source and magnification priors) the injected arc
    magnitudes' range rounded out to steps twice as wide (arc magnitudes spread over ~9 mag, not stratified).
    ``per_cell`` (a bracket's injections per cell) widens the steps by n_per_cell / per_cell, so a bracket's
    cells hold as many injections as the main table's."""
    w = cfg.mag_bin_width * (icfg.n_per_cell / per_cell if per_cell else 1.0)
    if axis == "arc_mag":
        w *= 2
    if axis == "src_mag":
        lo, hi = icfg.src_mag_r_range
    else:
        m = inj.arc_mag_r.to_numpy(float)
        m = m[np.isfinite(m)]
        lo, hi = (np.floor(m.min() / w) * w, np.ceil(m.max() / w) * w) if len(m) else (0.0, w)
    n = max(1, int(np.ceil((hi - lo) / w - 1e-9)))
    return np.asarray(np.round(np.r_[lo + w * np.arange(n), hi], 6), dtype=np.float64)


def _axis_meta(icfg: InjectConfig, axis: str, edges: np.ndarray) -> dict[str, Any]:
    lo, hi = icfg.src_mag_r_range
    prior = f"uniform({lo:g},{hi:g})" if axis == "src_mag" else "none (from src_mag and mu priors)"
    return {
        "AXIS4": axis,
        "AXIS4DSC": AXIS_DESCRIPTION[axis],
        "GRIDMAG": f"{[float(e) for e in edges]}"[:68],
        "PRIORM": prior,
    }


def build_tables(
    grid: pd.DataFrame, inj: pd.DataFrame, icfg: InjectConfig, cfg: SelectionConfig, meta: dict[str, Any]
) -> Tables:
    """Tabulate the scored injections (``detected``, ``src_mag_r``, ``arc_mag_r``, ``variant``); ``meta`` is
    the provenance header shared by every table (:func:`~lensaudit.selection.completeness.provenance`)."""
    inj = inj.assign(src_mag=inj.src_mag_r, arc_mag=inj.arc_mag_r)
    main = inj[inj.variant == "main"]
    by_axis = {}
    for axis in ("src_mag", "arc_mag"):
        edges = mag_edges(icfg, cfg, axis, main)
        t = completeness_table4(grid, main, axis, edges, cfg, cfg.n_min_mag_bin)
        by_axis[axis] = SelectionFunction(t, {**meta, **_axis_meta(icfg, axis, edges)})
    hosts = None
    sub = inj[inj.variant == "allhosts"]
    if len(sub):
        axis = cfg.condition_on
        edges = mag_edges(icfg, cfg, axis, main, float(sub.groupby("cell").size().median()))
        t = completeness_table4(grid, sub, axis, edges, cfg, cfg.n_min_mag_bin)
        hosts = SelectionFunction(t, {**meta, **_axis_meta(icfg, axis, edges), "HOSTS": "all N1"})
    boot = inj[list(BOOT_COLUMNS)] if set(BOOT_COLUMNS) <= set(inj.columns) else None
    return Tables(completeness_table(grid, main, cfg), by_axis, hosts, boot)


def replicates(tables: Tables, cfg: SelectionConfig, seed: int) -> dict[str, np.ndarray | None]:
    """Per closure rung, the host-bootstrap replicates of its table (:func:`host_replicates`, with
    ``selection.closure_host_bootstrap`` resamples; all None when that is 0 or the injections are absent)."""
    rungs: dict[str, tuple[pd.DataFrame, str | None, str]] = {
        "marginal": (tables.marginal, None, "main"),
        **{a: (sf.table, a, "main") for a, sf in tables.by_axis.items()},
    }
    if tables.hosts is not None:
        rungs["all_hosts"] = (tables.hosts.table, cfg.condition_on, "allhosts")
    inj, n = tables.injections, cfg.closure_host_bootstrap
    if inj is None or n == 0:
        return {k: None for k in rungs}
    inj = inj.assign(src_mag=inj.src_mag_r, arc_mag=inj.arc_mag_r)
    return {
        k: host_replicates(t, inj[inj.variant == v], a, n, stable_seed(seed, "closure", "hosts", k))
        for k, (t, a, v) in rungs.items()
    }


def host_intervals(t: pd.DataFrame, reps: np.ndarray | None) -> pd.DataFrame:
    """Table ``t`` with the host bootstrap's 68% interval per row (``c_lo68_hosts``, ``c_hi68_hosts``: the
    replicate fractions' 16th and 84th percentiles, NaN where a row is insufficient); unchanged without
    replicates ``reps`` (:func:`replicates`)."""
    if reps is None:
        return t
    lo, hi = np.full(len(t), np.nan), np.full(len(t), np.nan)
    ok = np.isfinite(reps).all(axis=0) & ~t.insufficient.to_numpy(bool)
    if ok.any():
        lo[ok], hi[ok] = np.percentile(reps[:, ok], [16, 84], axis=0)
    return t.assign(c_lo68_hosts=lo, c_hi68_hosts=hi)


def with_host_intervals(tables: Tables, reps: dict[str, np.ndarray | None]) -> Tables:
    """The tables with :func:`host_intervals` from their :func:`replicates` ``reps``: the interval of a cell
    whose injections share hosts, beside its Beta posterior's."""
    by_axis = {
        a: SelectionFunction(host_intervals(sf.table, reps[a]), sf.meta) for a, sf in tables.by_axis.items()
    }
    return Tables(host_intervals(tables.marginal, reps["marginal"]), by_axis, tables.hosts, tables.injections)


def bootstrap_summary(tables: Tables, reps: np.ndarray | None, cfg: SelectionConfig) -> dict[str, Any]:
    """How much the host bootstrap widens the 3-D marginal's 68% intervals (median over its sufficient
    cells): the Beta posterior's width against :func:`host_intervals`'."""
    t = tables.marginal
    ok = ~t.insufficient.to_numpy(bool)
    out: dict[str, Any] = {
        "n_boot": cfg.closure_host_bootstrap,
        "median_ci68_width_beta": float(np.median((t.c_hi68 - t.c_lo68).to_numpy()[ok]))
        if ok.any()
        else None,
        "median_ci68_width_hosts": None,
    }
    if reps is not None and ok.any():
        h = host_intervals(t, reps)
        out["median_ci68_width_hosts"] = float(np.median((h.c_hi68_hosts - h.c_lo68_hosts).to_numpy()[ok]))
        inj = tables.injections
        out["n_hosts"] = int(inj[inj.variant == "main"].host_galaxy_id.nunique()) if inj is not None else 0
    return out


def closure_record(
    tables: Tables,
    cfg: SelectionConfig,
    lenses: pd.DataFrame,
    op: float,
    where: str = "the synthetic sky",
    seed: int = 0,
    reps: dict[str, np.ndarray | None] | None = None,
) -> dict[str, Any]:
    """``closure.json``: the closure of the chosen table (its statistics at the top level), the closure
    ladder and, per rung, the full statistics (``rungs``); ``lenses`` are known-truth lenses of ``where``
    (:data:`~lensaudit.selection.closure.LENS_COLUMNS`); ``seed`` seeds the host bootstrap, unless its
    replicates are given (``reps``: :func:`replicates` of ``tables``, as the selection stage already drew
    them for the tables' intervals)."""
    chosen = cfg.condition_on
    reps = replicates(tables, cfg, seed) if reps is None else reps
    rungs: list[tuple[str, str, dict[str, Any]]] = [
        (
            "marginal",
            "(a) C(θE, PSF, depth) marginal under the injection prior (the method before issue 15)",
            closure_of(SelectionFunction(tables.marginal), lenses, op, None, replicates=reps["marginal"]),
        ),
        (
            "src_mag",
            "(b) C(θE, PSF, depth, m_src) at each lens's true unlensed source r magnitude",
            closure_of(
                tables.by_axis["src_mag"], lenses, op, MAG_OF_AXIS["src_mag"], replicates=reps["src_mag"]
            ),
        ),
        (
            "arc_mag",
            "(b′) C(θE, PSF, depth, m_arc) at each lens's true lensed arc r magnitude",
            closure_of(
                tables.by_axis["arc_mag"], lenses, op, MAG_OF_AXIS["arc_mag"], replicates=reps["arc_mag"]
            ),
        ),
    ]
    if tables.hosts is not None:
        rungs.append(
            (
                "all_hosts",
                f"(c) as ({'b' if chosen == 'src_mag' else 'b′'}) from injections into all N1 hosts, "
                "not only deflector-like ones (coarser magnitude bins: the host bracket has fewer "
                "injections)",
                closure_of(tables.hosts, lenses, op, MAG_OF_AXIS[chosen], replicates=reps["all_hosts"]),
            )
        )
    main = next(c for k, _, c in rungs if k == chosen)
    return {
        **main,
        "condition_on": chosen,
        "ladder": ladder(rungs),
        "rungs": {k: c for k, _, c in rungs},
        "host_bootstrap": bootstrap_summary(tables, reps["marginal"], cfg),
        "where": where,
        "note": f"true lenses of {where}, rendered by the sky's own renderer from its own source population; "
        "the selection function comes from our injections with a broad prior",
    }
