"""The selection-function lookup table: FITS (astronomers) and Parquet, and its query API.

    sf = SelectionFunction.load("selection/selection_function.fits")
    c = sf.completeness(theta_e, psf_fwhm, depth, src_mag)   # vectorised multilinear interpolation
    lo, hi = sf.interval(theta_e, psf_fwhm, depth, src_mag)  # 68% credible interval (interpolated bounds)
    c3 = sf.marginalise("normal(24.5,0.6)")                  # the 3-D table of another source population

The table is 3-D, C(θE, PSF, depth), or 4-D with a magnitude axis (``src_mag``: the unlensed source r
magnitude, or ``arc_mag``: the lensed arc's r magnitude; any column ``m`` with ``m_lo``/``m_hi`` bin edges).
On a 4-D table ``src_mag=None`` queries the marginal under the table's injection prior (FITS ``PRIORM``).
Points outside the grid raise ValueError (no extrapolation). Insufficient cells are NaN and propagate only to
the points whose interpolation uses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse, stats

from lensaudit.selection.binomial import PRIORS

#: the 3-D axes (table column, FITS unit)
AXES3 = (("theta_e", "arcsec"), ("psf_fwhm", "arcsec"), ("depth", "mag"))
#: the table columns written to FITS after the axes, with their units
COLUMNS = {
    "theta_e": "arcsec",
    "psf_fwhm": "arcsec",
    "depth": "mag",
    "n": "",
    "k": "",
    "c_mean": "",
    "c_lo68": "",
    "c_hi68": "",
    "c_lo95": "",
    "c_hi95": "",
    "insufficient": "",
}
#: the columns that place a row on the grid (written last)
INDEX_COLUMNS = ("cell", "i_theta_e", "i_psf", "i_depth", "i_mag")
#: Monte Carlo draws of a marginal's credible intervals (seed 0: deterministic)
N_DRAWS = 4000
#: more prior mass than this outside the magnitude range is an error
MAX_OUTSIDE = 0.01
#: the Parquet schema-metadata key that holds the header as JSON
PARQUET_META_KEY = b"lensaudit.selection.meta"
_NAMED = re.compile(r"^\s*(uniform|normal)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$", re.IGNORECASE)
_FITS_STRUCTURAL = re.compile(
    r"^(XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTNAME|EXTVER|THEAP|COMMENT|HISTORY|LONGSTRN|"
    r"T(TYPE|FORM|UNIT|NULL|DIM|SCAL|ZERO|DISP)\d+|)$"
)


def named_prior(spec: str) -> Any:
    """The frozen scipy distribution of ``"uniform(a,b)"`` or ``"normal(mu,sigma)"`` (None if ``spec`` is not
    one).

    >>> float(named_prior("uniform(20,27)").cdf(23.5))
    0.5
    >>> named_prior("none (from src_mag and mu priors)") is None
    True
    """
    m = _NAMED.match(spec)
    if m is None:
        return None
    try:
        a, b = float(m.group(2)), float(m.group(3))
    except ValueError:
        return None
    if m.group(1).lower() == "uniform":
        if not b > a:
            raise ValueError(f"{spec}: a uniform prior needs a < b")
        return stats.uniform(loc=a, scale=b - a)
    if not b > 0:
        raise ValueError(f"{spec}: a normal prior needs sigma > 0")
    return stats.norm(loc=a, scale=b)


def _beta_ab(k: np.ndarray, n: np.ndarray, prior: str) -> tuple[np.ndarray, np.ndarray]:
    a0, b0 = PRIORS[prior]
    return k + a0, n - k + b0


def beta_variance(k, n, prior: str = "jeffreys") -> np.ndarray:
    """Variance of the Beta posterior of k detections out of n (arrays broadcast)."""
    a, b = _beta_ab(np.asarray(k, float), np.asarray(n, float), prior)
    return a * b / ((a + b) ** 2 * (a + b + 1))


@dataclass
class SelectionFunction:
    """A completeness table (rows: grid cells, or grid cells × magnitude bins) and its header ``meta``."""

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- the grid --------------------------------------------------------------------------------------------
    @property
    def mag_axis(self) -> str | None:
        """The 4th axis column (``src_mag``/``arc_mag``/…), or None for a 3-D table."""
        cols = set(self.table.columns)
        declared = self.meta.get("AXIS4")
        if isinstance(declared, str) and {declared, f"{declared}_lo", f"{declared}_hi"} <= cols:
            return declared
        for c in self.table.columns:
            if c not in COLUMNS and {f"{c}_lo", f"{c}_hi"} <= cols:
                return str(c)
        return None

    def _require_mag(self) -> str:
        m = self.mag_axis
        if m is None:
            raise ValueError("this table has no magnitude axis")
        return m

    @property
    def axes(self) -> tuple[np.ndarray, ...]:
        """Sorted unique centres of θE, PSF, depth (and the magnitude axis of a 4-D table)."""
        names = [c for c, _ in AXES3] + ([self.mag_axis] if self.mag_axis else [])
        return tuple(np.sort(self.table[c].unique()) for c in names)

    @property
    def mag_edges(self) -> np.ndarray:
        """Bin edges of the magnitude axis (bins are [lo, hi), the last one closed)."""
        m = self._require_mag()
        bins = self.table[[m, f"{m}_lo", f"{m}_hi"]].drop_duplicates(m).sort_values(m)
        return np.r_[bins[f"{m}_lo"].to_numpy(float), bins[f"{m}_hi"].to_numpy(float)[-1:]]

    @property
    def mag_range(self) -> tuple[float, float]:
        """(first low edge, last high edge) of the magnitude axis."""
        e = self.mag_edges
        return float(e[0]), float(e[-1])

    def _positions(self) -> tuple[np.ndarray, ...]:
        """Per row: its index on each axis."""
        names = [c for c, _ in AXES3] + ([self.mag_axis] if self.mag_axis else [])
        return tuple(np.searchsorted(ax, self.table[c].to_numpy(float)) for c, ax in zip(names, self.axes))

    def _row_cube(self) -> np.ndarray:
        """The row number of each grid node (−1 where the table has no row)."""
        cube = np.full(tuple(len(a) for a in self.axes), -1, dtype=np.int64)
        cube[self._positions()] = np.arange(len(self.table))
        return cube

    def _values(self, col: str) -> np.ndarray:
        """``col`` per row with insufficient rows NaN, and a trailing NaN for missing nodes (row −1)."""
        v = self.table[col].to_numpy(float).copy()
        v[self.table["insufficient"].to_numpy(bool)] = np.nan
        return np.r_[v, np.nan]

    # -- interpolation ---------------------------------------------------------------------------------------
    def _corners(self, theta_e, psf_fwhm, depth, src_mag) -> tuple[np.ndarray, np.ndarray]:
        """Multilinear interpolation onto the table's rows: (rows, weights), each (n_points, 2^n_axes); a row
        of −1 is a grid node without a table row; a point with a NaN coordinate has NaN weights."""
        mag = self.mag_axis
        if src_mag is not None and mag is None:
            raise ValueError("this table has no magnitude axis")
        args = [theta_e, psf_fwhm, depth] + ([src_mag] if src_mag is not None else [])
        pts = np.column_stack(
            [np.atleast_1d(np.asarray(a, float)).ravel() for a in np.broadcast_arrays(*args)]
        )
        axes = self.axes
        names = [c for c, _ in AXES3] + ([mag] if src_mag is not None and mag else [])
        lo_idx, frac = [], []
        for d, name in enumerate(names):
            ax, x = axes[d], pts[:, d]
            lo, hi = (ax[0], ax[-1]) if d < 3 else self.mag_range
            bad = (x < lo - 1e-9) | (x > hi + 1e-9)
            if bad.any():
                raise ValueError(f"{name}={x[bad][0]:g} is outside the grid [{lo:g}, {hi:g}]")
            if d == 3:  # between an end edge and the end centre: the end bin's value
                x = np.clip(x, ax[0], ax[-1])
            if len(ax) == 1:
                lo_idx.append(np.zeros(len(pts), int))
                frac.append(np.zeros(len(pts)))
                continue
            i = np.clip(np.searchsorted(ax, x, side="right") - 1, 0, len(ax) - 2)
            lo_idx.append(i)
            frac.append(np.clip((x - ax[i]) / (ax[i + 1] - ax[i]), 0.0, 1.0))
        cube = self._row_cube()
        if len(names) == 3 and cube.ndim == 4:
            raise ValueError("a 4-D table is interpolated in 3-D only through its marginal")
        rows, weights = [], []
        for corner in np.ndindex(*(2,) * len(names)):
            w = np.ones(len(pts))
            idx = []
            for d, c in enumerate(corner):
                w = w * (frac[d] if c else 1 - frac[d])
                idx.append(np.minimum(lo_idx[d] + c, cube.shape[d] - 1))
            rows.append(cube[tuple(idx)])
            weights.append(w)
        w_all = np.column_stack(weights)
        w_all[np.isnan(pts).any(axis=1)] = np.nan
        return np.column_stack(rows), w_all

    def _interp(self, col: str, theta_e, psf_fwhm, depth, src_mag=None) -> np.ndarray:
        """Multilinear interpolation of ``col``; corners with zero weight are ignored, so an insufficient
        (NaN) cell only affects points that actually use it."""
        if src_mag is None and self.mag_axis is not None:
            return self._injection_marginal()._interp(col, theta_e, psf_fwhm, depth)
        rows, w = self._corners(theta_e, psf_fwhm, depth, src_mag)
        v = self._values(col)[rows]
        out = np.where(w > 0, w * v, 0.0).sum(axis=1)
        return np.where(np.isnan(w).any(axis=1), np.nan, out)

    def completeness(self, theta_e, psf_fwhm, depth, src_mag=None) -> np.ndarray:
        """Posterior-mean completeness at the given conditions (arrays broadcast). ``src_mag``: the magnitude
        on a 4-D table's 4th axis (None: the marginal under the injection prior)."""
        return self._interp("c_mean", theta_e, psf_fwhm, depth, src_mag)

    def interval(
        self, theta_e, psf_fwhm, depth, src_mag=None, level: int = 68
    ) -> tuple[np.ndarray, np.ndarray]:
        """Central credible interval (``level`` 68 or 95; interpolated bounds)."""
        return (
            self._interp(f"c_lo{level}", theta_e, psf_fwhm, depth, src_mag),
            self._interp(f"c_hi{level}", theta_e, psf_fwhm, depth, src_mag),
        )

    def design_matrix(self, theta_e, psf_fwhm, depth, src_mag=None) -> sparse.csr_matrix:
        """The interpolation weights onto the table's rows, shape (n_points, len(table)): ``completeness(...)
        == W @ c_mean`` wherever the cells used are sufficient (a point with a NaN coordinate: an empty
        row). On a 4-D table with ``src_mag=None`` the
        weights go onto the 4-D rows through the injection-prior weights of each magnitude bin."""
        if src_mag is None and self.mag_axis is not None:
            marg = self._injection_marginal()
            w3 = marg.design_matrix(theta_e, psf_fwhm, depth)
            return (w3 @ self._spread(marg, self._cache["injection_weights"])).tocsr()
        rows, w = self._corners(theta_e, psf_fwhm, depth, src_mag)
        if (rows[w > 0] < 0).any():
            raise ValueError("the table has no row for a grid node that a point needs")
        keep = w > 0
        pt = np.broadcast_to(np.arange(len(rows))[:, None], rows.shape)
        return sparse.csr_matrix((w[keep], (pt[keep], rows[keep])), shape=(len(rows), len(self.table)))

    def _spread(self, marg: SelectionFunction, weights: np.ndarray) -> sparse.csr_matrix:
        """(len(marginal), len(self)): marginal row → the 4-D rows of its cell, with the bin weights."""
        pos = self._positions()
        shape = tuple(len(a) for a in self.axes[:3])
        code = np.ravel_multi_index(pos[:3], shape)
        mpos = marg._positions()
        mcode = np.ravel_multi_index(mpos, shape)
        lookup = pd.Series(np.arange(len(mcode)), index=mcode)
        r = lookup.reindex(code).to_numpy()
        return sparse.csr_matrix(
            (weights[pos[3]], (r, np.arange(len(self.table)))), shape=(len(marg.table), len(self.table))
        )

    # -- marginals -------------------------------------------------------------------------------------------
    def prior_weights(self, prior: str | np.ndarray | list[float]) -> np.ndarray:
        """Weights per magnitude bin (summing to 1) of ``prior``: ``"injection"``, ``"uniform(a,b)"``,
        ``"normal(mu,sigma)"`` or non-negative weights per bin.

        ``"injection"`` is the table's declared injection prior (``PRIORM``): uniform over the bins' full
        range when none is declared, the injections' own distribution over the bins (Σ n per bin) when the
        declared one is not a named distribution (``arc_mag``: it follows from the source and magnification
        priors)."""
        self._require_mag()
        edges = self.mag_edges
        if isinstance(prior, str):
            if prior == "injection":
                declared = self.meta.get("PRIORM")
                if declared is None:
                    w = np.diff(edges)
                    return w / w.sum()
                if named_prior(str(declared)) is None:
                    m = self._require_mag()
                    n = self.table.groupby(m)["n"].sum().reindex(self.axes[3]).fillna(0).to_numpy(float)
                    if not n.sum() > 0:
                        raise ValueError(f"injection prior {declared!r}: the table has no injections")
                    return n / n.sum()
                prior = str(declared)
            dist = named_prior(prior)
            if dist is None:
                raise ValueError(
                    f"unknown prior {prior!r}: use 'injection', 'uniform(a,b)', 'normal(mu,sigma)' or weights"
                )
            cdf = dist.cdf(edges)
            mass = np.diff(cdf)
            outside = 1.0 - float(cdf[-1] - cdf[0])
            if outside > MAX_OUTSIDE:
                raise ValueError(
                    f"{outside:.1%} of the prior {prior} lies outside the table's magnitude range "
                    f"[{edges[0]:g}, {edges[-1]:g}] (at most {MAX_OUTSIDE:.0%} allowed)"
                )
            return mass / mass.sum()
        w = np.asarray(prior, float).ravel()
        if len(w) != len(edges) - 1:
            raise ValueError(f"{len(w)} weights for {len(edges) - 1} magnitude bins")
        if not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        return w / w.sum()

    def _injection_marginal(self) -> SelectionFunction:
        if "injection" not in self._cache:
            self._cache["injection"] = self.marginalise("injection")
            self._cache["injection_weights"] = self.prior_weights("injection")
        return self._cache["injection"]

    def marginalise(self, prior: str | np.ndarray | list[float]) -> SelectionFunction:
        """The 3-D table C3(cell) = Σ_j w_j C4(cell, j) under a magnitude prior (:meth:`prior_weights`).

        Mean Σ w_j k_j/n_j (unbiased: the posterior means' pull towards ½ would add up over many small
        bins); variance Σ w_j² var_j (independent Beta posteriors); credible intervals from :data:`N_DRAWS`
        Monte Carlo draws of those posteriors (seed 0), moved by Σ w_j (k_j/n_j − mean_j); n, k summed over
        the bins with
        w_j > 0. A cell is insufficient when its n < ``NMIN`` (default 20) or a bin with w_j > 0 has no
        injections. The prior is recorded in ``MARGPRIO`` (FITS keys have 8 characters), the axis in
        ``MARGAXIS``."""
        mag = self._require_mag()
        w = self.prior_weights(prior)
        t = self.table
        pos = self._positions()
        shape3 = tuple(len(a) for a in self.axes[:3])
        code = np.ravel_multi_index(pos[:3], shape3)
        uniq, first, inv = np.unique(code, return_index=True, return_inverse=True)
        nb = len(w)
        bprior = str(self.meta.get("BPRIOR", "jeffreys"))

        def per_bin(values: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((len(uniq), nb), fill)
            out[inv, pos[3]] = values
            return out

        n = per_bin(t["n"].to_numpy(float), 0.0)
        k = per_bin(t["k"].to_numpy(float), 0.0)
        a, b = _beta_ab(k, n, bprior)
        mean = per_bin(t["c_mean"].to_numpy(float), np.nan)
        mean = np.where(np.isnan(mean), a / (a + b), mean)
        var = beta_variance(k, n, bprior)
        if "c_var" in t:
            tab_var = per_bin(t["c_var"].to_numpy(float), np.nan)
            var = np.where(np.isnan(tab_var), var, tab_var)
        used = w > 0
        base = [
            c for c in ("cell", "i_theta_e", "i_psf", "i_depth", "theta_e", "psf_fwhm", "depth") if c in t
        ]
        out = t.iloc[first][base].reset_index(drop=True)
        if "cell" not in out:
            out.insert(0, "cell", np.arange(len(out)))
        for c, d in (("i_theta_e", 0), ("i_psf", 1), ("i_depth", 2)):
            if c not in out:
                out[c] = pos[d][first]
        out["n"] = n[:, used].sum(axis=1).astype(int)
        out["k"] = k[:, used].sum(axis=1).astype(int)
        # the marginal's point estimate sums the bins' detected fractions k/n: summed over many bins of a few
        # injections, the posterior means' pull towards ½ (7 injections: 0 → 0.06, 1 → 0.94) adds up to a
        # bias; the Monte Carlo intervals of the posteriors are moved by the same difference
        khat = np.where(n > 0, k / np.where(n > 0, n, 1.0), mean)
        out["c_mean"] = khat[:, used] @ w[used]
        shift = (khat[:, used] - mean[:, used]) @ w[used]
        level = float(self.meta.get("INTERVAL", 0.68))
        qs = np.array([(1 - level) / 2, (1 + level) / 2, 0.025, 0.975])
        bounds = np.clip(self._mc_quantiles(a[:, used], b[:, used], w[used], qs) + shift, 0.0, 1.0)
        out["c_lo68"], out["c_hi68"], out["c_lo95"], out["c_hi95"] = bounds
        out["c_var"] = var[:, used] @ (w[used] ** 2)
        nmin = int(self.meta.get("NMIN", 20))
        out["insufficient"] = (out["n"].to_numpy() < nmin) | (n[:, used] == 0).any(axis=1)
        meta = {k_: v_ for k_, v_ in self.meta.items() if k_ not in ("AXIS4", "AXIS4DSC")}
        meta["MARGAXIS"] = mag
        meta["MARGPRIO"] = _describe(prior, w, self.meta.get("PRIORM"))
        return SelectionFunction(out, meta)

    @staticmethod
    def _mc_quantiles(a: np.ndarray, b: np.ndarray, w: np.ndarray, qs: np.ndarray) -> np.ndarray:
        """Quantiles ``qs`` of Σ_j w_j C_j with C_j ~ Beta(a_j, b_j) independent, per row: (len(qs), rows)."""
        rng = np.random.default_rng(0)
        out = np.empty((len(qs), len(a)))
        chunk = max(1, 4_000_000 // (N_DRAWS * max(1, a.shape[1])))
        for s in range(0, len(a), chunk):
            draws = rng.beta(a[s : s + chunk], b[s : s + chunk], size=(N_DRAWS, *a[s : s + chunk].shape))
            out[:, s : s + chunk] = np.quantile(draws @ w, qs, axis=0)
        return out

    # -- I/O -------------------------------------------------------------------------------------------------
    def _fits_columns(self) -> dict[str, str]:
        cols = {c: u for c, u in AXES3}
        mag = self.mag_axis
        if mag:
            cols.update({mag: "mag", f"{mag}_lo": "mag", f"{mag}_hi": "mag"})
        cols.update({c: u for c, u in COLUMNS.items() if c not in cols})
        extra = [c for c in ("c_var", "c_lo68_hosts", "c_hi68_hosts") if c in self.table]
        if extra:
            cols = {
                **{c: u for c, u in cols.items() if c != "insufficient"},
                **{c: "" for c in extra},
                "insufficient": "",
            }
        cols.update({c: "" for c in INDEX_COLUMNS if c in self.table})
        return cols

    def _header(self) -> dict[str, Any]:
        meta = dict(self.meta)
        if self.mag_axis:
            meta.setdefault("AXIS4", self.mag_axis)
        return {k[:8].upper(): v for k, v in meta.items()}

    def write(self, fits_path: str | Path, parquet_path: str | Path | None = None) -> None:
        """The FITS table (extension ``SELECTION``, TUNITs, the header from ``meta``) and, optionally, the
        Parquet table with the header as JSON schema metadata."""
        from astropy.io import fits
        from astropy.table import Table

        cols = self._fits_columns()
        t = Table.from_pandas(self.table[list(cols)].reset_index(drop=True))
        for c, u in cols.items():
            if u:
                t[c].unit = u
        hdu = fits.table_to_hdu(t)
        hdu.name = "SELECTION"
        for k, v in self._header().items():
            hdu.header[k] = v
        p = Path(fits_path)
        tmp = p.with_name(f".{p.name}.tmp")
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
        tmp.replace(p)
        if parquet_path is not None:
            self.write_parquet(parquet_path)

    def write_parquet(self, path: str | Path) -> None:
        """The whole table as Parquet (atomic), the header in the schema metadata as JSON."""
        from lensaudit.utils import write_parquet_atomic

        meta = {PARQUET_META_KEY: json.dumps(_jsonable(self._header()))}
        write_parquet_atomic(self.table, path, meta)

    @classmethod
    def load(cls, path: str | Path) -> SelectionFunction:
        """A table written by :meth:`write` (FITS) or :meth:`write_parquet`, with its header."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no selection function at {p}")
        if p.suffix == ".parquet":
            import pyarrow.parquet as pq

            raw = (pq.read_schema(p).metadata or {}).get(PARQUET_META_KEY)
            tab = pd.read_parquet(p)
            return cls(tab, json.loads(raw) if raw else {})
        from astropy.io import fits
        from astropy.table import Table

        with fits.open(p) as h:
            header = h["SELECTION"].header
            meta = {k: header[k] for k in header if not _FITS_STRUCTURAL.match(k)}
            tab = Table.read(h["SELECTION"]).to_pandas()
        tab["insufficient"] = tab["insufficient"].astype(bool)
        return cls(tab, meta)


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, (str, int, float, bool)) or v is None else str(v)
    return out


def _describe(prior: str | np.ndarray | list[float], w: np.ndarray, declared: Any) -> str:
    """The MARGPRIO header value (≤ 68 characters)."""
    if isinstance(prior, str):
        text = f"injection: {declared}" if prior == "injection" and declared is not None else prior
        if prior == "injection" and declared is None:
            text = "injection: uniform over the table's range"
    else:
        text = "weights " + ",".join(f"{x:.3g}" for x in w)
    return text if len(text) <= 68 else text[:65] + "..."


__all__ = ["SelectionFunction", "named_prior", "beta_variance", "COLUMNS", "AXES3"]
