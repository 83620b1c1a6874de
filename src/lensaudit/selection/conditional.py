"""The conditional selection function C(θE, PSF, depth, m) and its closure ladder.

The finder's completeness is tabulated on a 4th axis, the source brightness: ``src_mag`` (the unlensed source
r magnitude) or ``arc_mag`` (the lensed arc's r magnitude), both from the same main-prior injections
(``selection.condition_on`` picks the one written to ``selection_function.fits``; the other is kept as
``selection_function_alt.parquet``). The 3-D C(θE, PSF, depth) of any source population is the 4-D table
integrated over that population's magnitudes (:meth:`SelectionFunction.marginalise`); the 3-D table of the
injections themselves (``selection_marginal.parquet``) is what the pipeline produced before issue 15.

The closure ladder (:func:`closure_record`) judges the synthetic sky's true lenses against: (a) the 3-D
marginal under the injection prior, (b) the 4-D table at each lens's true source magnitude, (b′) at its true
arc magnitude, (c) the 4-D table of the host bracket (all N1 hosts instead of deflector-like ones) and (d)
that of the morphology bracket (the other source model: multi-clump instead of Sérsic sources, or the
reverse), and (e) the 4-D table with the injections re-weighted in source half-light radius to the lenses'
own sizes (:mod:`lensaudit.selection.sizes`). The brackets' tables are rebuilt from
``injection_scores.parquet`` wherever they are needed (:func:`with_brackets`), so the second population's
ladder has every rung too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from lensaudit.config import InjectConfig, SelectionConfig
from lensaudit.selection.closure import MAG_OF_AXIS, SIZE_COLUMN, closure_of, host_replicates, ladder
from lensaudit.selection.completeness import completeness_table, completeness_table4
from lensaudit.selection.sizes import INJECTED_SIZE, declared_size_prior, reweighted, size_weights
from lensaudit.selection.table import SelectionFunction
from lensaudit.utils import stable_seed

#: the injection columns the closure's host bootstrap needs
BOOT_COLUMNS = ("variant", "cell", "host_galaxy_id", "detected", "src_mag_r", "arc_mag_r")


def boot_columns(available: Any) -> list[str]:
    """:data:`BOOT_COLUMNS`, and where ``available`` has them ``source_model`` (the rungs' descriptions) and
    ``src_reff`` (the source-size rung, :mod:`lensaudit.selection.sizes`)."""
    extra = [c for c in ("source_model", INJECTED_SIZE) if c in set(available)]
    return [*BOOT_COLUMNS, *extra]


def with_axes(inj: pd.DataFrame) -> pd.DataFrame:
    """Scored injections with the 4th axes' columns: ``src_mag`` (= ``src_mag_r``) and ``arc_mag``
    (= ``arc_mag_r``), the names the tables are binned on."""
    return inj.assign(src_mag=inj.src_mag_r, arc_mag=inj.arc_mag_r)


#: the closure ladder's rung of each bracket's table
RUNG_OF_BRACKET = {"allhosts": "all_hosts", "morphology": "morphology"}

#: what each 4th axis means (FITS AXIS4DSC)
AXIS_DESCRIPTION = {"src_mag": "unlensed source r mag", "arc_mag": "lensed arc r mag"}
OTHER_AXIS = {"src_mag": "arc_mag", "arc_mag": "src_mag"}


@dataclass
class Tables:
    """The selection stage's tables: the 3-D marginal of the main injections, the 4-D table on each axis
    (``by_axis``), the brackets' 4-D tables on the chosen axis (``brackets``, by variant: ``allhosts``, the
    all-N1-hosts injections; ``morphology``, the other source model's), and the scored injections they were
    built from (``injections``: :data:`BOOT_COLUMNS`; None: no host bootstrap)."""

    marginal: pd.DataFrame
    by_axis: dict[str, SelectionFunction]
    brackets: dict[str, SelectionFunction]
    injections: pd.DataFrame | None = None

    @classmethod
    def read(cls, table: Path, alt: Path, marginal: Path, injections: Path | None = None) -> Tables:
        """The tables as the selection stage wrote them (the chosen and the alternative 4-D table, the 3-D
        marginal) and, for the host bootstrap, its ``injection_scores.parquet``; the brackets' tables are not
        written (:func:`with_brackets` rebuilds them)."""
        by_axis = {}
        for p in (table, alt):
            sf = SelectionFunction.load(p)
            by_axis[str(sf.mag_axis)] = sf
        inj = None
        if injections is not None:
            inj = pd.read_parquet(injections, columns=boot_columns(pq.read_schema(injections).names))
        return cls(pd.read_parquet(marginal), by_axis, {}, inj)

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
    inj = with_axes(inj)
    main = inj[inj.variant == "main"]
    by_axis = {}
    for axis in ("src_mag", "arc_mag"):
        edges = mag_edges(icfg, cfg, axis, main)
        t = completeness_table4(grid, main, axis, edges, cfg, cfg.n_min_mag_bin)
        by_axis[axis] = SelectionFunction(t, {**meta, **_axis_meta(icfg, axis, edges)})
    boot = inj[boot_columns(inj.columns)] if set(BOOT_COLUMNS) <= set(inj.columns) else None
    brackets = bracket_tables(grid, inj, icfg, cfg, meta)
    return Tables(completeness_table(grid, main, cfg), by_axis, brackets, boot)


#: the brackets with a 4-D table and a closure rung, and what sets them apart from the main injections
BRACKET_META = {"allhosts": {"HOSTS": "all N1"}, "morphology": {"SOURCES": "other model"}}


def bracket_tables(
    grid: pd.DataFrame, inj: pd.DataFrame, icfg: InjectConfig, cfg: SelectionConfig, meta: dict[str, Any]
) -> dict[str, SelectionFunction]:
    """Per bracket of :data:`BRACKET_META` that was injected, its 4-D table on the chosen axis, in magnitude
    bins widened so that its cells hold as many injections as the main table's (:func:`mag_edges`).
    ``inj``: scored injections with ``variant``, ``cell``, ``detected``, ``src_mag_r`` and ``arc_mag_r``."""
    inj = with_axes(inj)
    main, axis, out = inj[inj.variant == "main"], cfg.condition_on, {}
    for v, extra in BRACKET_META.items():
        sub = inj[inj.variant == v]
        if len(sub):
            edges = mag_edges(icfg, cfg, axis, main, float(sub.groupby("cell").size().median()))
            t = completeness_table4(grid, sub, axis, edges, cfg, cfg.n_min_mag_bin)
            out[v] = SelectionFunction(t, {**meta, **_axis_meta(icfg, axis, edges), **extra})
    return out


def with_brackets(tables: Tables, grid: pd.DataFrame, icfg: InjectConfig, cfg: SelectionConfig) -> Tables:
    """``tables`` (as :meth:`Tables.read` gives them) with their brackets' 4-D tables rebuilt from their
    scored injections (none without them), for the closure ladder's rungs (c) and (d)."""
    if tables.injections is None:
        return tables
    sf = tables.chosen(cfg)
    brackets = bracket_tables(grid, tables.injections, icfg, cfg, sf.meta)
    return Tables(tables.marginal, tables.by_axis, brackets, tables.injections)


def replicates(tables: Tables, cfg: SelectionConfig, seed: int) -> dict[str, np.ndarray | None]:
    """Per closure rung, the host-bootstrap replicates of its table (:func:`host_replicates`, with
    ``selection.closure_host_bootstrap`` resamples; all None when that is 0 or the injections are absent)."""
    rungs: dict[str, tuple[pd.DataFrame, str | None, str]] = {
        "marginal": (tables.marginal, None, "main"),
        **{a: (sf.table, a, "main") for a, sf in tables.by_axis.items()},
    }
    for v, sf in tables.brackets.items():
        rungs[RUNG_OF_BRACKET[v]] = (sf.table, cfg.condition_on, v)
    inj, n = tables.injections, cfg.closure_host_bootstrap
    if inj is None or n == 0:
        return {k: None for k in rungs}
    inj = with_axes(inj)
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
    return Tables(
        host_intervals(tables.marginal, reps["marginal"]), by_axis, tables.brackets, tables.injections
    )


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


def model_of(tables: Tables, variant: str) -> str:
    """The source model of ``variant``'s injections ("Sérsic" or "multi-clump"), from the tables' scored
    injections (``source_model``); "the other model's"/"the configured model's" without them."""
    inj = tables.injections
    if inj is None or "source_model" not in inj:
        return "the other model's" if variant != "main" else "the configured model's"
    m = inj.loc[inj.variant == variant, "source_model"]
    return (
        {"sersic": "Sérsic", "clumpy": "multi-clump"}.get(str(m.iloc[0]), str(m.iloc[0])) if len(m) else "?"
    )


def size_rung(
    tables: Tables,
    cfg: SelectionConfig,
    lenses: pd.DataFrame,
    size_range: tuple[float, float] | None,
    seed: int,
) -> tuple[SelectionFunction, np.ndarray | None] | None:
    """The chosen table re-weighted in source half-light radius to ``lenses``' own sizes
    (:func:`~lensaudit.selection.sizes.size_weights`, :func:`~lensaudit.selection.sizes.reweighted`) and its
    host-bootstrap replicates with the same weights (None when ``selection.closure_host_bootstrap`` is 0);
    None without a size range (``size_range``, else the table's declared ``PRIORRE``), without the
    injections' sizes or without finite lens sizes."""
    inj, chosen = tables.injections, tables.chosen(cfg)
    size_range = size_range or declared_size_prior(chosen.meta)
    if size_range is None or inj is None or INJECTED_SIZE not in inj or SIZE_COLUMN not in lenses:
        return None
    if not np.isfinite(lenses[SIZE_COLUMN].to_numpy(float)).any():
        return None
    axis = cfg.condition_on
    main = with_axes(inj[inj.variant == "main"])
    w = size_weights(main[INJECTED_SIZE].to_numpy(float), lenses[SIZE_COLUMN].to_numpy(float), size_range)
    sf = reweighted(chosen, main, axis, w, cfg)
    n = cfg.closure_host_bootstrap
    reps = (
        host_replicates(sf.table, main, axis, n, stable_seed(seed, "closure", "hosts", "src_size"), weights=w)
        if n
        else None
    )
    return sf, reps


def closure_record(
    tables: Tables,
    cfg: SelectionConfig,
    lenses: pd.DataFrame,
    op: float,
    where: str = "the synthetic sky",
    seed: int = 0,
    reps: dict[str, np.ndarray | None] | None = None,
    size_range: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """``closure.json``: the closure of the chosen table (its statistics at the top level), the closure
    ladder and, per rung, the full statistics (``rungs``); ``lenses`` are known-truth lenses of ``where``
    (:data:`~lensaudit.selection.closure.LENS_COLUMNS`); ``seed`` seeds the host bootstrap, unless its
    replicates are given (``reps``: :func:`replicates` of ``tables``, as the selection stage already drew
    them for the tables' intervals). ``size_range``: the injected source-size prior
    (``inject.src_reff_arcsec_range``; None: the one the chosen table declares, ``PRIORRE``), for the rung (e)
    re-weighted to the lenses' source sizes (:func:`size_rung`; without either, or without sizes, that rung
    is left out)."""
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
    rung_of = "b" if chosen == "src_mag" else "b′"
    what = {
        "allhosts": f"(c) as ({rung_of}) from injections into all N1 hosts, not only deflector-like ones "
        "(coarser magnitude bins: the bracket has fewer injections)",
        "morphology": f"(d) as ({rung_of}) from the morphology bracket: {model_of(tables, 'morphology')} "
        f"sources instead of {model_of(tables, 'main')} ones (coarser magnitude bins)",
    }
    for v, sf in tables.brackets.items():
        k = RUNG_OF_BRACKET[v]
        rungs.append((k, what[v], closure_of(sf, lenses, op, MAG_OF_AXIS[chosen], replicates=reps[k])))
    sized = size_rung(tables, cfg, lenses, size_range, seed)
    if sized is not None:
        rungs.append(
            (
                "src_size",
                f"(e) as ({rung_of}), the injections re-weighted in source half-light radius to these "
                "lenses' own distribution of it",
                closure_of(sized[0], lenses, op, MAG_OF_AXIS[chosen], replicates=sized[1]),
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
