"""What the synthetic sky contains: bricks, per-band conditions and objects, all drawn from real DR10 data.

Calibration sources (the packaged ``lensaudit/data/dr10_reference``, read through ``lensaudit.data``):
- ``regions_conditions.csv``: r-band PSF FWHM, 5σ depth, E(B−V) and object density of 2,689 real regions;
- ``bricks_conditions.csv``: per-band offsets of PSF and depth relative to r (g broader, z shallower);
- ``lrg_tractor_sample.parquet``: real red-galaxy fluxes and colours (deflectors and red field galaxies);
- real cutouts: the pixel-noise MAD at a given depth (sets the noise-correlation length, see render.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from lensaudit.data import reference_file
from lensaudit.survey.bricks import Brick, brick_at
from lensaudit.utils import rng_for

PIX = 0.262
BANDS = "grz"
CONFUSER_KINDS = ("ring", "spiral", "edge_on", "merger", "blue_clumpy")


@dataclass
class Reference:
    regions: pd.DataFrame
    bricks: pd.DataFrame
    lrg: pd.DataFrame

    @classmethod
    def load(cls) -> Reference:
        with reference_file("regions_conditions.csv") as p:
            regions = pd.read_csv(p)
        regions = regions[
            (regions.median_psf_r_arcsec > 0.6) & (regions.median_psfdepth_r > 22.0)
        ].reset_index(drop=True)
        with reference_file("lrg_tractor_sample.parquet") as p:
            lrg = pd.read_parquet(p)
        lrg = lrg[
            (lrg.FLUX_G > 0) & (lrg.FLUX_R > 0) & (lrg.FLUX_Z > 0) & lrg.r_mag.between(16, 23)
        ].reset_index(drop=True)
        with reference_file("bricks_conditions.csv") as p:
            bricks = pd.read_csv(p)
        return cls(regions, bricks, lrg)

    @cached_property
    def median_density_per_deg2(self) -> float:
        """Median catalogued-galaxy density of the (filtered) real regions."""
        return float((self.regions.total_n_gal / self.regions.total_area_deg2).median())

    def band_offsets(self) -> dict[str, tuple[float, float, float, float]]:
        """Per band: (median PSF offset vs r, its scatter, median depth offset vs r, its scatter)."""
        b = self.bricks
        out = {}
        for band in BANDS:
            dpsf = b[f"psfsize_{band}"] - b.psfsize_r
            ddep = b[f"psfdepth_{band}"] - b.psfdepth_r
            out[band] = (
                float(dpsf.median()),
                float(dpsf.std() if band != "r" else 0),
                float(ddep.median()),
                float(ddep.std() if band != "r" else 0),
            )
        return out


@dataclass
class BrickConditions:
    brick: Brick
    psf_fwhm: dict[str, float]
    psfdepth_mag: dict[str, float]
    nobs: dict[str, int]
    beta: float
    ebv: float
    density_per_deg2: float
    defect: bool

    def to_rows(self) -> list[dict]:
        return [
            {
                "brickname": self.brick.brickname,
                "band": b,
                "psf_fwhm_arcsec": self.psf_fwhm[b],
                "moffat_beta": self.beta,
                "psfdepth_mag": self.psfdepth_mag[b],
                "nobs": self.nobs[b],
                "ebv": self.ebv,
                "density_per_deg2": self.density_per_deg2,
                "defect": self.defect,
            }
            for b in BANDS
        ]


def choose_bricks(
    n: int, frac_on_lenses: float, lens_dec_max: float, positives: pd.DataFrame, seed: int
) -> list[Brick]:
    """Bricks around real lenscat positives (Dec < lens_dec_max) and at random in the DR10 south footprint."""
    rng = rng_for(seed, "sky", "bricks")
    n_lens = int(round(n * frac_on_lenses))
    pos = positives[(positives.dec < lens_dec_max) & (positives.dec > -60)]
    chosen: dict[str, Brick] = {}
    order = rng.permutation(len(pos))
    for i in order:
        if len(chosen) >= n_lens:
            break
        b = brick_at(float(pos.ra.iloc[i]), float(pos.dec.iloc[i]))
        chosen.setdefault(b.brickname, b)
    while len(chosen) < n:
        ra, dec = (
            rng.uniform(0, 360),
            np.rad2deg(np.arcsin(rng.uniform(np.sin(np.deg2rad(-30)), np.sin(np.deg2rad(30))))),
        )
        b = brick_at(ra, dec)
        chosen.setdefault(b.brickname, b)
    return sorted(chosen.values(), key=lambda b: b.brickid)


def draw_conditions(
    brick: Brick, ref: Reference, beta_range: tuple[float, float], defect_frac: float, seed: int
) -> BrickConditions:
    rng = rng_for(seed, "sky", "conditions", brick.brickname)
    reg = ref.regions.iloc[int(rng.integers(len(ref.regions)))]
    off = ref.band_offsets()
    psf, depth = {}, {}
    for b in BANDS:
        dp, sp, dd, sd = off[b]
        psf[b] = float(np.clip(reg.median_psf_r_arcsec + dp + rng.normal(0, sp), 0.7, 2.6))
        depth[b] = float(np.clip(reg.median_psfdepth_r + dd + rng.normal(0, sd), 21.5, 26.5))
    nz = int(np.clip(rng.poisson(5.0), 1, 20))
    nobs = {"g": int(np.clip(rng.poisson(4.0), 1, 20)), "r": int(np.clip(rng.poisson(4.0), 1, 20)), "z": nz}
    dens = float(reg.total_n_gal / reg.total_area_deg2)
    return BrickConditions(
        brick,
        psf,
        depth,
        nobs,
        float(rng.uniform(*beta_range)),
        float(reg.median_ebv),
        dens,
        bool(rng.random() < defect_frac),
    )


@dataclass(frozen=True)
class SourceVariant:
    """How a sky's lensed sources depart from the demo sky's: ``mag_offset`` (mag) added to the unlensed r
    magnitude, ``size_scale`` multiplying every source component's r_eff and offset (defaults: unchanged).

    >>> SourceVariant().mag_offset, SourceVariant().size_scale
    (0.0, 1.0)
    """

    mag_offset: float = 0.0
    size_scale: float = 1.0


@dataclass
class SkyObject:
    """One rendered object (truth) and what Tractor would catalogue of it."""

    kind: str  # lens, ring, spiral, edge_on, merger, blue_clumpy, galaxy, star
    ra: float
    dec: float
    flux: dict[str, float]  # true total flux (nmgy) of the catalogued component
    tractor_type: str
    shape_r: float = 0.0
    e1: float = 0.0
    e2: float = 0.0
    sersic: float = 0.0
    catalogued: bool = True
    params: dict = field(default_factory=dict)  # morphology / lens parameters for the renderer


def _colour_blue(rng) -> tuple[float, float]:
    return float(rng.normal(0.45, 0.15)), float(rng.normal(0.35, 0.2))


def _fluxes(mag_r: float, g_r: float, r_z: float) -> dict[str, float]:
    fr = 10 ** (-0.4 * (mag_r - 22.5))
    return {"g": fr * 10 ** (-0.4 * g_r), "r": fr, "z": fr * 10 ** (0.4 * r_z)}


def _ellip(rng, qmin: float = 0.35) -> tuple[float, float, float]:
    q = rng.uniform(qmin, 1.0)
    e = (1 - q) / (1 + q)
    phi = rng.uniform(0, np.pi)
    return float(e * np.cos(2 * phi)), float(e * np.sin(2 * phi)), float(q)


def _lrg_row(ref: Reference, rng, mag_r_max: float = 22.5, near_mag: float | None = None) -> pd.Series:
    """A real red galaxy; with ``near_mag``, one within ±0.3 mag (colours depend on magnitude via
    redshift)."""
    lrg = ref.lrg[
        (ref.lrg.r_mag < mag_r_max) & ref.lrg.TYPE.isin(["DEV", "SER"])
    ]  # our red galaxies are DEV/SER
    if near_mag is not None:
        m = float(np.clip(near_mag, lrg.r_mag.quantile(0.02), lrg.r_mag.quantile(0.98)))
        near = lrg[(lrg.r_mag - m).abs() < 0.3]
        if len(near) >= 10:
            lrg = near
    return lrg.iloc[int(rng.integers(len(lrg)))]


def _galaxy_size(mag_r: float, rng) -> float:
    return float(np.clip(10 ** (np.log10(1.6) - 0.16 * (mag_r - 19.0) + rng.normal(0, 0.18)), 0.2, 8.0))


def draw_objects(
    cond: BrickConditions,
    npix: int,
    ref: Reference,
    seed: int,
    n_lenses: int,
    n_unknown_lenses: int,
    n_confusers: int,
    theta_e_range: tuple[float, float],
    real_lenses: pd.DataFrame,
    src: SourceVariant | None = None,
) -> list[SkyObject]:
    """All objects of one brick's rendered area; positions uniform inside a margin, real lenses at their
    positions. ``src`` changes the lensed sources (a second population); None is the demo sky's."""
    src = src or SourceVariant()
    rng = rng_for(seed, "sky", "objects", cond.brick.brickname)
    half_deg = (npix - 40) * PIX / 3600 / 2
    cosd = np.cos(np.deg2rad(cond.brick.dec))

    def pos() -> tuple[float, float]:
        return (
            float((cond.brick.ra + rng.uniform(-half_deg, half_deg) / cosd) % 360),
            float(cond.brick.dec + rng.uniform(-half_deg, half_deg)),
        )

    area = (npix * PIX / 3600) ** 2
    objs: list[SkyObject] = []
    n_total = rng.poisson(cond.density_per_deg2 * area)
    n_star = int(0.12 * n_total)
    # galaxies: Euclidean-ish counts dN/dm ∝ 10^(0.33 m), r in [15.5, 24.8]
    u = rng.random(n_total - n_star)
    a, lo, hi = 0.33 * np.log(10), 15.5, 24.8
    mags = np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a
    for m in mags:
        ra, dec = pos()
        bright = m < 21.0
        p_types = [0.33, 0.25, 0.15, 0.22, 0.05] if bright else [0.05, 0.12, 0.35, 0.25, 0.23]
        t = str(rng.choice(["DEV", "SER", "REX", "EXP", "PSF"], p=p_types))
        red = t in ("DEV", "SER") and rng.random() < 0.75
        if red:
            row = _lrg_row(ref, rng, 23.0, near_mag=float(m))
            g_r, r_z = float(row.g_mag - row.r_mag), float(row.r_minus_z)
        else:
            g_r, r_z = _colour_blue(rng)
        e1, e2, q = _ellip(rng, 0.3 if t in ("EXP", "SER") else 0.5)
        size = _galaxy_size(m, rng)
        n = {"DEV": 4.0, "EXP": 1.0, "REX": 1.0, "PSF": 0.0}.get(t, float(rng.uniform(1.5, 5.5)))
        if t == "REX":
            e1 = e2 = 0.0
            size = float(np.clip(size * 0.5, 0.15, 1.2))
        if t == "PSF":
            size, e1, e2 = 0.0, 0.0, 0.0
        objs.append(SkyObject("galaxy", ra, dec, _fluxes(float(m), g_r, r_z), t, size, e1, e2, n))
    # stars, including one or two bright saturated ones
    smags = list(rng.uniform(15.0, 23.5, n_star)) + list(rng.uniform(9.0, 12.5, int(rng.integers(1, 3))))
    for m in smags:
        ra, dec = pos()
        objs.append(
            SkyObject(
                "star",
                ra,
                dec,
                _fluxes(float(m), float(rng.normal(0.8, 0.4)), float(rng.normal(0.4, 0.3))),
                "PSF",
            )
        )
    # confusers: lens-like morphologies, catalogued with what a smooth Tractor model would measure
    for i in range(n_confusers):
        kind = CONFUSER_KINDS[i % len(CONFUSER_KINDS)]
        objs.append(_confuser(kind, pos(), rng))
    # lenses: real positives in the area, then simulated ones; plus unknown lenses (truth only)
    for r in real_lenses.itertuples():
        objs.append(
            _lens(
                (float(r.ra), float(r.dec)),
                rng,
                ref,
                theta_e_range,
                name=r.name,
                grading=r.grading,
                ref_str=r.ref,
                src=src,
            )
        )
    # simulated lenses scale with the brick's galaxy density (deeper bricks detect more galaxies): the
    # lenses then
    # follow the same depth distribution as the deflector-like negatives they are matched against, instead of
    # handing the finder a noise-level shortcut (uniform lenses per brick gave a positive/negative MAD ratio
    # 1.2)
    n_lenses = int(round(n_lenses * cond.density_per_deg2 / ref.median_density_per_deg2))
    for _ in range(max(0, n_lenses - len(real_lenses))):
        grading = "confident" if rng.random() < 0.35 else "probable"
        p = pos()
        objs.append(
            _lens(
                p,
                rng,
                ref,
                theta_e_range,
                name=f"SIM-{p[0]:08.4f}{p[1]:+08.4f}",
                grading=grading,
                ref_str="lensaudit synthetic sky",
                src=src,
            )
        )
    for _ in range(n_unknown_lenses):
        objs.append(_lens(pos(), rng, ref, theta_e_range, name="", grading="", ref_str="", src=src))
    return objs


def _confuser(kind: str, p: tuple[float, float], rng) -> SkyObject:
    m = float(rng.uniform(17.0, 21.5))
    size = _galaxy_size(m, rng) * 1.4
    if kind == "ring":
        g_r, r_z = float(rng.normal(0.75, 0.15)), float(rng.normal(0.55, 0.15))
        e1, e2, _ = _ellip(rng, 0.7)
        par = {
            "ring_radius": float(rng.uniform(1.0, 3.0)),
            "ring_width": float(rng.uniform(0.2, 0.5)),
            "bulge_frac": float(rng.uniform(0.3, 0.6)),
        }
        return SkyObject(
            kind,
            *p,
            _fluxes(m, g_r, r_z),
            "SER",
            max(size, par["ring_radius"] * 0.9),
            e1,
            e2,
            float(rng.uniform(0.3, 0.9)),
            params=par,
        )
    if kind == "spiral":
        g_r, r_z = float(rng.normal(0.55, 0.12)), float(rng.normal(0.4, 0.15))
        e1, e2, _ = _ellip(rng, 0.5)
        par = {
            "n_arms": int(rng.integers(2, 4)),
            "pitch": float(rng.uniform(0.2, 0.45)),
            "arm_frac": float(rng.uniform(0.3, 0.5)),
        }
        return SkyObject(
            kind,
            *p,
            _fluxes(m, g_r, r_z),
            str(rng.choice(["EXP", "SER"])),
            max(size, 1.2),
            e1,
            e2,
            float(rng.uniform(0.7, 1.6)),
            params=par,
        )
    if kind == "edge_on":
        g_r, r_z = float(rng.normal(0.7, 0.15)), float(rng.normal(0.5, 0.15))
        phi = rng.uniform(0, np.pi)
        q = rng.uniform(0.12, 0.28)
        e = (1 - q) / (1 + q)
        par = {
            "inclination_deg": float(rng.uniform(82, 89)),
            "scale_height_frac": float(rng.uniform(0.08, 0.15)),
            "phi": float(phi),
        }
        return SkyObject(
            kind,
            *p,
            _fluxes(m, g_r, r_z),
            str(rng.choice(["EXP", "SER"])),
            max(size, 1.0),
            float(e * np.cos(2 * phi)),
            float(e * np.sin(2 * phi)),
            1.0,
            params=par,
        )
    if kind == "merger":
        g_r, r_z = float(rng.normal(0.8, 0.2)), float(rng.normal(0.6, 0.2))
        e1, e2, _ = _ellip(rng, 0.4)
        par = {
            "sep_arcsec": float(rng.uniform(1.5, 4.0)),
            "flux_ratio": float(rng.uniform(0.3, 0.9)),
            "tail_frac": float(rng.uniform(0.1, 0.3)),
            "angle": float(rng.uniform(0, 2 * np.pi)),
        }
        return SkyObject(
            kind,
            *p,
            _fluxes(m, g_r, r_z),
            "SER",
            size * 1.3,
            e1,
            e2,
            float(rng.uniform(1.0, 2.5)),
            params=par,
        )
    # blue clumpy star-forming
    g_r, r_z = float(rng.normal(0.25, 0.1)), float(rng.normal(0.15, 0.12))
    e1, e2, _ = _ellip(rng, 0.4)
    par = {"n_knots": int(rng.integers(6, 15)), "knot_frac": float(rng.uniform(0.3, 0.6))}
    return SkyObject(
        "blue_clumpy",
        *p,
        _fluxes(m, g_r, r_z),
        str(rng.choice(["EXP", "SER"])),
        max(size, 0.8),
        e1,
        e2,
        float(rng.uniform(0.5, 1.2)),
        params=par,
    )


#: the grid (x, y; arcsec) on which :func:`source_half_light_radius` sums a source's components
_RHALF_XY = np.meshgrid(np.linspace(-2.5, 2.5, 251), np.linspace(-2.5, 2.5, 251))


def source_half_light_radius(components: list[dict]) -> float:
    """Circular half-light radius (arcsec) of an unlensed source made of Sérsic ``components`` (each with
    ``frac``, ``reff``, ``n``, ``dx``, ``dy``), about its light-weighted centre: the size that the
    selection function's source-size re-weighting compares with its injected sources' half-light radius
    (``src_reff``). Each component is taken circular (its R_sersic is the circularised half-light radius,
    lenstronomy's convention; the sky's component ellipticities are ≤ 0.28) and summed on a 0.02″ grid.

    >>> round(source_half_light_radius([{"frac": 1.0, "reff": 0.3, "n": 1.0, "dx": 0.0, "dy": 0.0}]), 2)
    0.3
    >>> two = [{"frac": 0.5, "reff": 0.1, "n": 1.0, "dx": s, "dy": 0.0} for s in (-0.5, 0.5)]
    >>> source_half_light_radius(two) > 0.45
    True
    """
    from scipy.special import gammaincinv

    x, y = _RHALF_XY
    img = np.zeros_like(x)
    for c in components:
        b = gammaincinv(2 * c["n"], 0.5)
        prof = np.exp(-b * (np.hypot(x - c["dx"], y - c["dy"]) / c["reff"]) ** (1 / c["n"]))
        img += c["frac"] * prof / prof.sum()
    cx, cy = (img * x).sum() / img.sum(), (img * y).sum() / img.sum()
    r = np.hypot(x - cx, y - cy).ravel()
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(img.ravel()[order]) / img.sum()
    return float(r[order][np.searchsorted(cum, 0.5)])


def _lens(
    p: tuple[float, float],
    rng,
    ref: Reference,
    theta_e_range: tuple[float, float],
    name: str,
    grading: str,
    ref_str: str,
    src: SourceVariant | None = None,
) -> SkyObject:
    """An LRG deflector from the same real distribution as red field galaxies, plus a lensed clumpy source
    (``src``: its magnitude offset and size scale; None is the demo sky's sources). The random draws do not
    depend on ``src``, so a variant sky holds the same objects with changed sources."""
    src = src or SourceVariant()
    # deflector brightness follows the same number counts as the field galaxies it must be matched against
    # (dN/dm ∝ 10^(0.33 m) over 18.5 < r < 22): a brighter deflector population would hand the finder a
    # core-brightness shortcut that no real negative sample could be matched to
    a, lo, hi = 0.33 * np.log(10), 18.5, 22.0
    m = float(np.log(np.exp(a * lo) + rng.random() * (np.exp(a * hi) - np.exp(a * lo))) / a)
    row = _lrg_row(ref, rng, 23.0, near_mag=m)
    g_r, r_z = float(row.g_mag - row.r_mag), float(row.r_minus_z)
    e1, e2, q = _ellip(rng, 0.5)
    theta_e = float(rng.uniform(*theta_e_range))
    n_src = int(rng.integers(2, 5))
    # unlensed; with μ ≈ 5–30 the arcs land at r ≈ 20–24, as real candidates
    src_mag_r = float(rng.uniform(22.3, 25.3)) + src.mag_offset
    beta = float(rng.uniform(0.0, 0.35)) * theta_e
    ang = float(rng.uniform(0, 2 * np.pi))
    src_g_r, src_r_z = float(rng.normal(0.35, 0.15)), float(rng.normal(0.25, 0.15))
    comps = []
    w = rng.dirichlet(np.ones(n_src) * 2.0)
    for k in range(n_src):
        comps.append(
            {
                "frac": float(w[k]),
                "reff": float(rng.uniform(0.06, 0.3)) * src.size_scale,
                "n": float(rng.uniform(0.6, 1.5)),
                "dx": float(rng.normal(0, 0.12)) * src.size_scale,
                "dy": float(rng.normal(0, 0.12)) * src.size_scale,
                "e1": float(rng.uniform(-0.2, 0.2)),
                "e2": float(rng.uniform(-0.2, 0.2)),
            }
        )
    lens_e = 1 - rng.uniform(0.6, 1.0)
    lens_phi = rng.uniform(0, np.pi)
    par = {
        "theta_e": theta_e,
        "lens_e1": float(lens_e * np.cos(2 * lens_phi) / (2 - lens_e)),
        "lens_e2": float(lens_e * np.sin(2 * lens_phi) / (2 - lens_e)),
        "gamma1": float(rng.normal(0, 0.03)),
        "gamma2": float(rng.normal(0, 0.03)),
        "src_x": beta * np.cos(ang),
        "src_y": beta * np.sin(ang),
        "src_mag_r": src_mag_r,
        "src_flux": _fluxes(src_mag_r, src_g_r, src_r_z),
        "src_reff_arcsec": float(sum(c["frac"] * c["reff"] for c in comps)),
        "src_rhalf_arcsec": source_half_light_radius(comps),
        "components": comps,
        "name": name,
        "grading": grading,
        "ref": ref_str,
        "in_lenses_csv": bool(name),
    }
    size = _galaxy_size(m, rng)
    t = "DEV" if rng.random() < 0.6 else "SER"
    n = 4.0 if t == "DEV" else float(rng.uniform(2.5, 5.5))
    return SkyObject("lens", p[0], p[1], _fluxes(m, g_r, r_z), t, size, e1, e2, n, params=par)
