"""The synthetic sky's independent catalogues, drawn from its truth so that the Galaxy Zoo and DESI VAC paths
run offline (issue 20): a Galaxy Zoo DECaLS volunteer catalogue and a DESI DR1 strong-lens VAC, in the real
column layouts of ``shared/docs/dr10-formats.md`` §5–6 (read back by :mod:`lensaudit.survey.galaxyzoo` and
:func:`lensaudit.survey.lenses.read_desi_sl_vac`).

Neither file changes how the sky's images or sweeps are drawn; both are pure functions of the truth and the
catalogue, with their own seeded generators.

Galaxy Zoo: every catalogued non-stellar object is classified (the real GZ DECaLS covers only r ≲ 17.8; the
synthetic one covers the whole catalogue so that the demo's small pool has labelled negatives). Volunteers
answer the DR5 decision tree with answer probabilities set by the object's true kind (:data:`P_FEATURED`,
…); the questions the sky does not model (bar, bulge size, roundness, …) get uniform answers and carry no
information. GZ DECaLS has no ring question (formats §6).

VAC: DESI's spectroscopic follow-up of lens candidates, as the sky's rendered lenses: every lens not in
``lenses.csv`` (found only by DESI) and a :data:`VAC_KNOWN_FRACTION` hash-chosen share of the catalogued
ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.utils import hash_unit_interval, rng_for, write_parquet_atomic

#: the GZ DECaLS DR5 decision tree: question → answers (formats §6)
GZ_TREE: dict[str, tuple[str, ...]] = {
    "smooth-or-featured": ("smooth", "featured-or-disk", "artifact"),
    "disk-edge-on": ("yes", "no"),
    "has-spiral-arms": ("yes", "no"),
    "bar": ("strong", "weak", "no"),
    "bulge-size": ("dominant", "large", "moderate", "small", "none"),
    "how-rounded": ("round", "in-between", "cigar-shaped"),
    "edge-on-bulge": ("boxy", "none", "rounded"),
    "spiral-winding": ("tight", "medium", "loose"),
    "spiral-arm-count": ("1", "2", "3", "4", "more-than-4", "cant-tell"),
    "merging": ("none", "minor-disturbance", "major-disturbance", "merger"),
}
#: P(featured-or-disk) per true kind (smooth otherwise, 2% artifact)
P_FEATURED = {"spiral": 0.85, "edge_on": 0.8, "ring": 0.7, "merger": 0.6, "blue_clumpy": 0.6, "lens": 0.3}
#: P(edge-on = yes | featured), P(spiral arms = yes | featured, not edge-on), per true kind
P_EDGE_ON = {"edge_on": 0.9}
P_SPIRAL = {"spiral": 0.85, "ring": 0.3}
#: P(merging answers none, minor, major, merger) per true kind
P_MERGING = {"merger": (0.05, 0.15, 0.25, 0.55), "blue_clumpy": (0.5, 0.3, 0.15, 0.05)}
P_MERGING_DEFAULT = (0.85, 0.1, 0.03, 0.02)
#: share of the catalogued (lenses.csv) lenses that DESI also observed
VAC_KNOWN_FRACTION = 0.15
GZ_FILE = "gz_decals_volunteers_5.parquet"
VAC_FILE = "desi-sl-vac-v1.fits"


def iauname(ra: np.ndarray, dec: np.ndarray) -> list[str]:
    """IAU names ``JHHMMSS.ss±DDMMSS.s``.

    >>> iauname(np.array([146.714167]), np.array([-1.041250]))
    ['J094651.40-010228.5']
    """
    out = []
    for r, d in zip(np.asarray(ra, float), np.asarray(dec, float)):
        h = r / 15.0
        hh, mm = int(h), int((h - int(h)) * 60)
        ss = (h * 3600) - hh * 3600 - mm * 60
        sign = "-" if d < 0 else "+"
        a = abs(d)
        dd, dm = int(a), int((a - int(a)) * 60)
        ds = a * 3600 - dd * 3600 - dm * 60
        out.append(f"J{hh:02d}{mm:02d}{ss:05.2f}{sign}{dd:02d}{dm:02d}{ds:04.1f}")
    return out


def _answer(rng: np.random.Generator, n: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-row multinomial counts: ``n`` (N,) volunteers, answer probabilities ``p`` (N, K)."""
    return (
        np.stack([rng.multinomial(int(k), pp) for k, pp in zip(n, p)])
        if len(n)
        else np.zeros((0, p.shape[1]))
    )


def gz_votes(truth: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A GZ DECaLS volunteer table (``iauname, ra, dec, redshift`` and, per question, ``{q}_{a}``,
    ``{q}_{a}_fraction``, ``{q}_total-votes``) for the catalogued non-stellar objects of ``truth``."""
    t = (
        truth[(truth.galaxy_id != "") & (truth.kind != "star")]
        .sort_values("galaxy_id")
        .reset_index(drop=True)
    )
    rng = rng_for(seed, "sky", "galaxy-zoo")
    kind = t.kind.to_numpy()
    n_total = 5 + rng.poisson(35, len(t))
    pf = np.array([P_FEATURED.get(k, 0.45 if s < 2.0 else 0.15) for k, s in zip(kind, t.sersic_true)])
    sof = _answer(rng, n_total, np.column_stack([0.98 * (1 - pf), 0.98 * pf, np.full(len(t), 0.02)]))
    feat = sof[:, 1]
    pe = np.array([P_EDGE_ON.get(k, 0.08) for k in kind])
    edge = _answer(rng, feat, np.column_stack([pe, 1 - pe]))
    ps = np.array([P_SPIRAL.get(k, 0.15) for k in kind])
    not_edge = edge[:, 1]
    counts = {
        "smooth-or-featured": sof,
        "disk-edge-on": edge,
        "has-spiral-arms": _answer(rng, not_edge, np.column_stack([ps, 1 - ps])),
        "merging": _answer(rng, n_total, np.array([P_MERGING.get(k, P_MERGING_DEFAULT) for k in kind])),
    }
    asked = {"bar": not_edge, "bulge-size": not_edge, "how-rounded": sof[:, 0], "edge-on-bulge": edge[:, 0]}
    spiral = counts["has-spiral-arms"][:, 0]
    asked.update({"spiral-winding": spiral, "spiral-arm-count": spiral})
    for q, n in asked.items():
        k = len(GZ_TREE[q])
        counts[q] = _answer(rng, n, np.full((len(t), k), 1.0 / k))
    out = {"iauname": iauname(t.ra, t.dec), "ra": t.ra.to_numpy(), "dec": t.dec.to_numpy()}
    out["redshift"] = np.full(len(t), np.nan)  # the synthetic sky has no galaxy redshifts
    for q, answers in GZ_TREE.items():
        c = counts[q]
        tot = c.sum(axis=1)
        for j, a in enumerate(answers):
            out[f"{q}_{a}"] = c[:, j].astype(np.int64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[f"{q}_{a}_fraction"] = np.where(tot > 0, c[:, j] / np.maximum(tot, 1), np.nan)
        out[f"{q}_total-votes"] = tot.astype(np.int64)
    return pd.DataFrame(out)


def vac_rows(truth: pd.DataFrame, cat: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The sky's VAC systems: catalogued lenses not in lenses.csv, and a hash-chosen
    :data:`VAC_KNOWN_FRACTION` of those in it, with their sweep fluxes."""
    lens = truth[truth.is_lens & (truth.galaxy_id != "")]
    pick = ~lens.in_lenses_csv.to_numpy(bool) | (
        hash_unit_interval(lens.galaxy_id, seed) < VAC_KNOWN_FRACTION
    )
    lens = lens[pick].sort_values("galaxy_id")
    gid = cat.BRICKNAME.astype(str) + "_" + cat.OBJID.astype(str)
    fl = cat.assign(galaxy_id=gid).set_index("galaxy_id")
    return lens.join(fl[["FLUX_G", "FLUX_R", "FLUX_Z", "TYPE"]], on="galaxy_id").reset_index(drop=True)


def write_desi_sl_vac(lenses: pd.DataFrame, path: Path, seed: int) -> None:
    """Write ``lenses`` (``ra``, ``dec``, ``brickname``, ``FLUX_*``) as the DESI DR1 strong-lens VAC: HDU1
    ``DESI_SL_CATALOG`` with the documented columns (formats §5) and TARGET_DEC, BRICKNAME, MORPHTYPE and
    FLUX_G/R/Z (read from the real file by a third party)."""
    from astropy.io import fits

    from lensaudit.catalog.spatial import healpix_nest

    n, rng = len(lenses), rng_for(seed, "sky", "desi-sl-vac")
    ra, dec = lenses.ra.to_numpy(float), lenses.dec.to_numpy(float)
    hpx = healpix_nest(ra, dec, 64).astype(np.int32) if n else np.zeros(0, np.int32)
    z = rng.uniform(0.2, 0.8, n)
    f = lambda c: lenses[c].to_numpy(np.float32) if c in lenses else np.zeros(n, np.float32)  # noqa: E731
    cols = [
        fits.Column("TARGETID", "K", array=39627000000000000 + np.arange(n, dtype=np.int64) * 7919),
        fits.Column("SURVEY", "7A", array=np.array(["main"] * n)),
        fits.Column("PROGRAM", "6A", array=np.array(["dark"] * n)),
        fits.Column("HEALPIX", "J", array=hpx),
        fits.Column("SPGRPVAL", "J", array=hpx),
        fits.Column("Z", "D", array=z),
        fits.Column("ZERR", "D", array=np.full(n, 5e-5)),
        fits.Column("ZWARN", "K", array=np.zeros(n, np.int64)),
        fits.Column("CHI2", "D", array=rng.uniform(7000, 9000, n)),
        fits.Column("COEFF", "10D", array=np.zeros((n, 10))),
        fits.Column("NPIXELS", "K", array=np.full(n, 7781, np.int64)),
        fits.Column("SPECTYPE", "6A", array=np.array(["GALAXY"] * n)),
        fits.Column("SUBTYPE", "20A", array=np.array([""] * n)),
        fits.Column("NCOEFF", "K", array=np.full(n, 10, np.int64)),
        fits.Column("DELTACHI2", "D", array=rng.uniform(100, 5000, n)),
        fits.Column("COADD_FIBERSTATUS", "J", array=np.zeros(n, np.int32)),
        fits.Column("TARGET_RA", "D", array=ra),
        fits.Column("TARGET_DEC", "D", array=dec),
        fits.Column("BRICKNAME", "8A", array=np.array(lenses.brickname.astype(str).tolist(), dtype="U8")),
        fits.Column("MORPHTYPE", "4A", array=np.array([""] * n)),
        fits.Column("FLUX_G", "E", array=f("FLUX_G")),
        fits.Column("FLUX_R", "E", array=f("FLUX_R")),
        fits.Column("FLUX_Z", "E", array=f("FLUX_Z")),
    ]
    tmp = path.with_name(".tmp-" + path.name)
    hdu = fits.BinTableHDU.from_columns(cols, name="DESI_SL_CATALOG")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
    tmp.replace(path)


def write_catalogues(out: Path, truth: pd.DataFrame, cat: pd.DataFrame, seed: int) -> dict[str, int]:
    """Write the GZ DECaLS catalogue and the DESI SL VAC under the sky directory ``out``; their row counts."""
    gz = gz_votes(truth, seed)
    write_parquet_atomic(gz, out / GZ_FILE)
    vac = vac_rows(truth, cat, seed)
    write_desi_sl_vac(vac, out / VAC_FILE, seed)
    return {"galaxy_zoo": len(gz), "desi_sl_vac": len(vac)}
