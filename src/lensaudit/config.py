"""RunConfig: one typed, validated config with one section per stage.

Every default encodes a documented decision; the comment beside it names the decision.
Unknown keys and out-of-range values raise ``ConfigError`` naming the field and the allowed range.
Paths may contain ``{run_dir}``; it is substituted when the config is resolved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, cast, overload

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lensaudit.errors import ConfigError


class Section(BaseModel):
    """Base of every config section: frozen, rejects unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


# ----------------------------------------------------------------------------------------------
class RunSection(Section):
    """Where the run lives and how it is seeded."""

    run_dir: str = Field("runs/demo", description="Run directory: one per run; every stage writes below it.")
    seed: int = Field(
        42, ge=0, description="Master seed; every random draw derives from (seed, object id, purpose)."
    )
    name: str = Field("lensaudit", description="Human-readable run name, shown in the report.")


class EngineConfig(Section):
    """Dask cluster for catalog and image stages."""

    kind: Literal["local", "address", "slurm"] = Field(
        "local",
        description=(
            "local = distributed.LocalCluster (default, tests); address = existing scheduler; slurm "
            "= dask_jobqueue.SLURMCluster."
        ),
    )
    n_workers: int = Field(
        2, ge=1, le=4096, description="LocalCluster workers (2 = this project's reference laptop)."
    )
    threads_per_worker: int = Field(1, ge=1, le=256, description="Threads per LocalCluster worker.")
    memory_limit: str = Field("4GB", description="Memory limit per worker (dask syntax).")
    address: str | None = Field(
        None, description="Scheduler address for kind=address, e.g. tcp://10.0.0.1:8786."
    )
    slurm: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Keyword arguments for dask_jobqueue.SLURMCluster (queue, account, cores, memory, walltime, ...)."
        ),
    )
    slurm_jobs: int = Field(4, ge=1, description="Number of SLURM jobs to scale to.")
    partitions_per_file: int = Field(1, ge=1, le=1024, description="Dask partitions per sweep file.")


class DataConfig(Section):
    """Where the survey data come from: the synthetic sky or real DR10."""

    source: Literal["synthetic", "dr10"] = Field(
        "synthetic",
        description=(
            "synthetic = build/use the built-in DR10-like sky under sky_dir; dr10 = real files/URLs below."
        ),
    )
    sky_dir: str = Field(
        "{run_dir}/sky", description="Synthetic sky directory (built by the sky stage when missing)."
    )
    sweeps: str | None = Field(
        None,
        description=(
            "Sweep FITS: a directory, a glob, or an fsspec URL. Default for synthetic: {sky_dir}/sweep."
        ),
    )
    coadd_dir: str | None = Field(
        None, description="Coadd root (…/dr10/south/coadd). Default for synthetic: {sky_dir}/coadd."
    )
    cutout_url: str = Field(
        "https://www.legacysurvey.org/viewer/cutout.fits",
        description="Cutout service endpoint (the synthetic sky serves the same API on 127.0.0.1).",
    )
    layer: str = Field("ls-dr10", description="Cutout service layer.")


class SkyConfig(Section):
    """The synthetic DR10-like sky (demo and tests)."""

    n_bricks: int = Field(12, ge=1, le=2000, description="Number of real DR10 bricks rendered.")
    frac_bricks_on_lenses: float = Field(
        0.67,
        ge=0.0,
        le=1.0,
        description="Fraction of bricks chosen around real lenscat positives (Dec < 32°); the rest random.",
    )
    brick_pixels: int = Field(
        2000,
        ge=200,
        le=3600,
        description=(
            "Rendered pixels per brick side (real: 3600); smaller for speed, WCS still centred on "
            "the true brick centre."
        ),
    )
    lens_dec_max: float = Field(
        32.0, description="Bricks around positives are drawn only below this Dec (DR10 south)."
    )
    moffat_beta_range: tuple[float, float] = Field((2.5, 4.5), description="Per-brick Moffat β range.")
    theta_e_range_arcsec: tuple[float, float] = Field((0.6, 3.0), description="θE range of rendered lenses.")
    defect_frac: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Fraction of bricks with a zero-coverage strip near an edge and a NaN patch.",
    )
    lenses_per_brick: int = Field(
        14,
        ge=0,
        le=500,
        description=(
            "Catalogued lenses per brick of median galaxy density, written to lenses.csv: real "
            "lenscat positives in the area first, then simulated ones, scaled with the brick's "
            "galaxy density (demo density ≫ real, for training statistics)."
        ),
    )
    unknown_lenses_per_brick: int = Field(
        2,
        ge=0,
        le=100,
        description=(
            "Lenses not in lenses.csv (truth only): unknown lenses among the negatives, as in real data."
        ),
    )
    confusers_per_brick: int = Field(
        30,
        ge=0,
        le=5000,
        description="Lens-like confusers (rings, spirals, edge-on, mergers, blue clumpy) per brick.",
    )
    workers: int = Field(2, ge=1, le=256, description="Processes rendering bricks in parallel.")
    seed_offset: int = Field(
        0, ge=0, description="Added to the run seed for the sky (to make independent skies)."
    )
    src_mag_offset: float = Field(
        0.0,
        ge=-5.0,
        le=5.0,
        description=(
            "Magnitudes added to every lens source's unlensed r magnitude (0 = the demo sky; a second "
            "population sets it, see population.src_mag_offset)."
        ),
    )
    src_size_scale: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        description=(
            "Factor on the lensed source's component r_eff and offsets (1 = the demo sky; a second "
            "population sets it, see population.src_size_scale)."
        ),
    )


class PositivesConfig(Section):
    """Known lenses: lenscat (+ optional extra CSVs and the DESI DR1 SL VAC)."""

    lenscat: str = Field(
        "packaged",
        description=(
            "'packaged' = the CSV shipped in the lenscat wheel (no download); or a path to a "
            "lenscat-format CSV."
        ),
    )
    extra_csv: list[str] = Field(
        default_factory=list,
        description=(
            "Extra catalogues in lenscat column format (e.g. the predecessor's desi_candidates.csv, "
            "or the synthetic sky's lenses.csv)."
        ),
    )
    desi_sl_vac: str | None = Field(
        None,
        description="Path to desi-sl-vac-v1.fits (independent validation set), if available; 'sky' = the "
        "synthetic sky's own VAC-format file (absent: no VAC).",
    )
    ref_patterns: list[str] = Field(
        default_factory=lambda: [r"Huang et al\.", r"Storfer et al\."],
        description=(
            "Regex patterns on `ref` selecting the DESI Legacy Surveys searches (decision: Huang "
            "2020/2021, Storfer 2022)."
        ),
    )
    lens_types: list[Literal["galaxy", "group", "cluster"]] = Field(
        default_factory=lambda: list[Literal["galaxy", "group", "cluster"]](["galaxy"]),
        description="Galaxy-scale lenses only (decision: clusters/groups are a different selection).",
    )
    tier_a_weight: float = Field(
        1.0, ge=0.0, le=10.0, description="Tier-A (confident) sample weight."
    )  # decision: Tier-A weight 1.0
    tier_b_weight: float = Field(
        0.5, ge=0.0, le=10.0, description="Tier-B (probable) sample weight."
    )  # decision: Tier-B weight 0.5 (label noise)
    duplicate_radius_arcsec: float = Field(
        1.0, gt=0.0, le=30.0, description="Entries closer than this are merged (best tier kept)."
    )
    footprint_dec_max: float = Field(
        32.0,
        ge=-90.0,
        le=90.0,
        description="DR10 south footprint: Dec < 32° (positives beyond are marked, not dropped).",
    )


class CatalogConfig(Section):
    """Sweeps → parent cuts → N1/N2 → lens exclusion → HEALPix split."""

    types: list[Literal["PSF", "REX", "EXP", "DEV", "SER"]] = Field(
        default_factory=lambda: list[Literal["PSF", "REX", "EXP", "DEV", "SER"]](["SER", "DEV", "REX"]),
        description="Tractor types kept (decision: SER/DEV/REX, deflector-like).",
    )
    min_nobs_gr: int = Field(1, ge=0, le=100, description="nobs_g, nobs_r ≥ this.")
    min_nobs_z: int = Field(3, ge=0, le=100, description="nobs_z ≥ this.")
    maskbits_reject: list[int] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5, 6, 7, 11, 12, 13],
        description="MASKBITS bits that reject a row (maskbits & those == 0 is kept).",
    )
    mag_r_range: tuple[float, float] = Field(
        (16.0, 22.0), description="r-band magnitude window (deflector-like galaxies)."
    )
    dec_max: float = Field(32.0, ge=-90.0, le=90.0, description="Dec < 32 (DR10 south).")
    nobs_z_edges: list[int] = Field(
        default_factory=lambda: [1, 3, 6, 11], description="Lower edges of nobs_z bins: 1–2, 3–5, 6–10, 11+."
    )
    nside: int = Field(128, description="HEALPix nside for splits (decision: 128 ≈ 0.46° cells, nest).")
    nside_analysis: int = Field(64, description="Coarser HEALPix kept for analysis.")
    split_fractions: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.70, "val": 0.15, "test": 0.15},
        description="Split allocation by HEALPix cell (decision: 70/15/15).",
    )
    split_tolerance: float = Field(
        0.05, gt=0.0, le=0.5, description="Gate: realised split fractions within ± this of target."
    )
    exclusion_radius_arcsec: float = Field(
        11.0, gt=0.0, le=120.0, description="Exclude galaxies within this of any known lens (decision: 11″)."
    )
    exclusion_catalogs: list[str] = Field(
        default_factory=lambda: ["packaged"],
        description="Catalogues whose every entry excludes neighbours ('packaged' = whole lenscat).",
    )
    n2_rules: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Overrides of N2 rule thresholds per category (see catalog/n2_rules.py).",
    )
    n2_fraction_bounds: tuple[float, float] = Field(
        (0.02, 0.60), description="Gate: N2 fraction of the pool must lie within these bounds."
    )
    match_radius_arcsec: float = Field(1.0, gt=0.0, le=10.0, description="Positive ↔ Tractor match radius.")
    match_report_radius_arcsec: float = Field(
        5.0, gt=0.0, le=60.0, description="Nearest separations reported up to this radius."
    )
    min_match_rate: float = Field(
        0.85, ge=0.0, le=1.0, description="Gate: positive match rate (predecessor: 93.8% on real DR10)."
    )

    @field_validator("nside", "nside_analysis")
    @classmethod
    def _pow2(cls, v: int) -> int:
        if v < 1 or v > 8192 or v & (v - 1):
            raise ValueError(f"must be a power of two in [1, 8192], got {v}")
        return v

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"train", "val", "test"} or abs(sum(v.values()) - 1.0) > 1e-6 or min(v.values()) <= 0:
            raise ValueError("must have keys train/val/test, each > 0, summing to 1")
        return v


class SampleConfig(Section):
    """Pool → training sample: stratified negatives per positive."""

    neg_per_pos: float = Field(
        100.0,
        gt=0.0,
        le=10000.0,
        description="Negatives per positive per (nobs_z bin, TYPE) stratum (decision: 100:1).",
    )
    n1_fraction: float = Field(
        0.85,
        ge=0.0,
        le=1.0,
        description="N1 share of negatives within each stratum (decision: N1:N2 = 85:15).",
    )
    mag_r_edges: list[float] = Field(
        default_factory=lambda: [14.0, 18.0, 19.0, 20.0, 21.0, 22.0, 24.0],
        description="r-magnitude bins added to the strata (empty = strata by nobs_z bin and TYPE only).",
    )  # decision: brightness-matched negatives remove the core-brightness shortcut
    ratio_tolerance: float = Field(
        0.10,
        gt=0.0,
        le=1.0,
        description=(
            "Gate: realised ratio per stratum within this relative tolerance unless a shortfall is reported."
        ),
    )


class CutoutsConfig(Section):
    """Sample → 101×101 grz stamps with invvar and maskbits."""

    provider: Literal["service", "coadds", "npz-import"] = Field(
        "coadds", description="Cutout provider (registry name)."
    )
    size_pix: int = Field(101, ge=16, le=512, description="Stamp size (decision: 101 px).")
    pixscale_arcsec: float = Field(
        0.262, gt=0.0, le=2.0, description="Pixel scale (decision: native 0.262″/pix)."
    )
    bands: str = Field("grz", pattern="^[grizGRIZ]+$", description="Bands, in output order (decision: grz).")
    npz_dir: str | None = Field(
        None, description="npz-import: directory (or glob) of predecessor .npz files."
    )
    requests_per_second: float = Field(
        5.0,
        gt=0.0,
        le=1000.0,
        description="service: client-side rate limit (be polite to the public service).",
    )
    concurrency: int = Field(4, ge=1, le=64, description="service: concurrent requests.")
    timeout_s: float = Field(60.0, gt=0.0, le=600.0, description="service: per-request timeout.")
    max_attempts: int = Field(
        6, ge=1, le=50, description="service: attempts per stamp before a permanent failure."
    )
    backoff_base_s: float = Field(
        0.5, gt=0.0, le=60.0, description="service: exponential backoff base (with full jitter)."
    )
    shard_size: int = Field(
        256, ge=1, le=65536, description="Stamps per store shard (one worker writes one shard)."
    )
    central_nan_radius_pix: float = Field(
        8.0, ge=0.0, description="Stamps with any NaN within this radius are excluded."
    )
    max_bad_pixel_frac: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description=(
            "Stamps with more bad pixels (NaN, invvar=0 or masked) are excluded "
            "(decision: ≤ 2% for training stamps)."
        ),
    )
    min_ok_fraction: float = Field(0.9, ge=0.0, le=1.0, description="Gate: fraction of stamps OK.")
    core_ratio_bounds: tuple[float, float] = Field(
        (0.9, 1.1), description="Warn gate: positive/negative median core brightness ratio (shortcut sign)."
    )
    core_ratio_fail_bounds: tuple[float, float] = Field(
        (0.8, 1.25),
        description="Fail gate: positive/negative median core brightness ratio outside these (a shortcut).",
    )


class TrainConfig(Section):
    """The lens finder."""

    arch: str = Field(
        "resnet18", description="Architecture name from the registry (decision: ResNet-18 first)."
    )
    stem: Literal["small", "standard"] = Field(
        "small",
        description="small = 3×3 stride-1 conv, no max-pool (small stamps); standard = torchvision's.",
    )
    crop_pix: int = Field(64, ge=16, le=101, description="Centre crop (decision: 64; 101 for the ablation).")
    normalization: Literal["robust", "robust_asinh"] = Field(
        "robust_asinh",
        description=(
            "Per band: subtract outer-annulus median, divide by MAD σ, then asinh (x → 4·asinh(x/4)) "
            "to compress bright deflector cores (decision: on the demo, val AUC 0.96 with asinh vs "
            "0.83 linear); 'robust' = linear."
        ),
    )
    epochs: int = Field(
        30, ge=1, le=200, description="Maximum epochs (decision: 20–40 with cosine schedule)."
    )
    min_epochs: int = Field(5, ge=1, le=200, description="No early stop before this epoch.")
    patience: int = Field(6, ge=1, le=100, description="Early stopping patience on val AUC.")
    batch_size: int = Field(256, ge=1, le=65536, description="Batch size.")
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="Peak learning rate (cosine 1e-3 → 1e-5).")
    lr_min: float = Field(1e-5, ge=0.0, le=1.0, description="Final learning rate.")
    warmup_epochs: float = Field(1.0, ge=0.0, le=50.0, description="Linear warm-up.")
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="AdamW weight decay.")
    balanced_sampler: bool = Field(
        False, description="Balanced batch sampler (otherwise imbalance is handled by loss weights)."
    )
    pos_weight: float | None = Field(
        None,
        gt=0.0,
        description="Extra weight on positives in BCE; None = n_neg/n_pos of the training split.",
    )
    tier_b_label_smoothing: float = Field(0.0, ge=0.0, le=0.5, description="Label smoothing for Tier-B only.")
    augment: bool = Field(
        True,
        description=(
            "Safe augmentations: D4, ≤5 px shifts, mild noise, mild blur. Never brightness/colour jitter."
        ),
    )
    max_shift_pix: int = Field(5, ge=0, le=10, description="Maximum translation.")
    noise_sigma_frac: float = Field(
        0.1, ge=0.0, le=0.1, description="Added noise σ as a fraction of the background σ (≤ 0.1)."
    )
    stuck_auc_epochs: int = Field(
        5,
        ge=1,
        le=100,
        description="Red flag: val AUC within 0.02 of 0.5 for this many epochs stops training.",
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N.")
    threads: int = Field(
        0,
        ge=0,
        le=512,
        description=(
            "CPU threads for torch (0 = torch's default). Pin it for bit-identical training curves "
            "across machines: CPU reductions depend on the thread count."
        ),
    )
    max_train_samples: int | None = Field(
        None, ge=1, description="Cap on training samples per epoch (demo budget)."
    )
    loader_buffer_shards: int = Field(
        4,
        ge=1,
        le=1024,
        description=(
            "Streaming loader: store shards read and shuffled together (memory ≈ this × shard_size raw "
            "stamps; docs/data.md)."
        ),
    )


class EvaluateConfig(Section):
    """The audit of the frozen finder."""

    thresholds: list[float] = Field(default_factory=lambda: [0.5], description="Fixed score thresholds.")
    fixed_fprs: list[float] = Field(
        default_factory=lambda: [1e-2, 1e-3, 1e-4], description="Operating points at fixed FPR."
    )
    operating_point: str = Field(
        "fpr=0.01", description="Threshold used downstream (selection, failures): 'score=0.5' or 'fpr=0.01'."
    )

    @field_validator("operating_point")
    @classmethod
    def _operating_point(cls, v: str) -> str:
        kind, _, num = v.partition("=")
        try:
            x = float(num)
        except ValueError:
            x = float("nan")
        if kind not in ("score", "fpr") or not 0.0 < x < 1.0:
            raise ValueError(f"expected 'score=S' or 'fpr=F' with 0 < S, F < 1 (got {v!r})")
        return f"{kind}={x:g}"

    interval: float = Field(0.68, gt=0.0, lt=1.0, description="Credible/confidence interval (decision: 68%).")
    n_bootstrap: int = Field(500, ge=10, le=100000, description="Bootstrap resamples.")
    ece_bins: int = Field(10, ge=2, le=100, description="Equal-mass bins for ECE.")
    temperature_scaling: bool = Field(
        True, description="Fit a temperature on val; report calibrated probability (ranking unchanged)."
    )
    min_bin_count: int = Field(
        10, ge=1, description="Strata with fewer members are marked insufficient (never hidden)."
    )
    shortcut_warn: float = Field(
        0.60, description="Shortcut gate: yellow when the lower CI bound of the core-only AUC exceeds this."
    )
    shortcut_fail: float = Field(0.70, description="Shortcut gate: red above this.")
    auc_warn: float = Field(
        0.90, gt=0.5, le=1.0, description="test_auc gate: warn below this test AUC (design: AUC ≥ 0.90)."
    )
    category_fpr_max: float = Field(
        0.10,
        gt=0.0,
        lt=1.0,
        description="fpr_<category> gates: largest contaminant FPR at the operating point per N2 category "
        "(design: ≤ 0.10).",
    )
    top_k: int = Field(25, ge=1, le=1000, description="Gallery size.")
    # -- issue 20: red flags, Galaxy Zoo, independence --------------------------------------------------
    train_auc_max: int = Field(
        2000,
        ge=0,
        le=10_000_000,
        description="Train-split stamps scored (hash-chosen) for the train − val AUC red flag; 0 = not "
        "measured.",
    )
    galaxy_zoo: str | None = Field(
        None,
        description="Galaxy Zoo DECaLS volunteer catalogue (CSV/parquet, real layout) for contaminant labels "
        "and FPR by morphology; 'sky' = the synthetic sky's gz_decals_volunteers_5.parquet (absent: no "
        "Galaxy Zoo check).",
    )
    gz_vote_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="Galaxy Zoo vote fraction at which a morphology is assigned."
    )
    discovery_methods: dict[str, str] = Field(
        default_factory=lambda: {
            "DESI LS ResNet search": r"Huang et al\.|Storfer et al\.",
            "other CNN / ML search": r"Jacobs et al\.|Petrillo et al\.|Canameras et al\.|Zaborowski et al\."
            r"|Rojas et al\.|Stein et al\.|Savary et al\.|Li et al\.",
            "spectroscopic": r"Talbot et al\.|Bolton et al\.|Brownstein et al\.|Shu et al\. \(2016\)"
            r"|SLACS|BELLS",
            "visual / citizen science": r"More et al\.|Sonnenfeld et al\.|Diehl et al\.|Holwerda et al\."
            r"|Space ?Warps",
            "simulated (synthetic sky)": r"lensaudit synthetic sky",
        },
        description="Independence table: discovery method → regular expression on the lens's catalogue "
        "reference (a lens counts under every method it matches).",
    )


#: the sweep-derived sample columns that inject.deflector_bins may match hosts on
DEFLECTOR_COLUMNS = ("mag_r", "mag_z", "g_r", "r_z", "shape_r", "sersic")
#: the default deflector match (inject.deflector_bins): per column, the positives' quantile bins
DEFLECTOR_MATCH: dict[str, int] = {"mag_r": 4, "g_r": 3, "r_z": 3}


class InjectConfig(Section):
    """Injection grid, source prior and realism gates."""

    theta_e_grid: tuple[float, float, float] = Field(
        (0.5, 3.0, 0.25),
        description="θE start, stop (inclusive), step in arcsec (decision: 0.5–3.0 by 0.25).",
    )
    psf_grid: tuple[float, float, float] = Field(
        (0.9, 1.8, 0.15),
        description="r-band PSF FWHM start, stop, step in arcsec (decision: 0.9–1.8 by 0.15).",
    )
    depth_grid: tuple[float, float, float] = Field(
        (22.5, 24.5, 0.5),
        description="r-band 5σ depth start, stop, step in mag (decision: 22.5–24.5 by 0.5).",
    )
    n_per_cell: int = Field(200, ge=1, le=100000, description="Injections per cell (decision: ≥ 200).")
    source_model: Literal["sersic", "clumpy"] = Field(
        "sersic", description="Source morphology; the report brackets with the other."
    )
    morphology_bracket: bool = Field(
        True,
        description=(
            "Also inject bracket_fraction × n_per_cell arcs per cell with the other source model "
            "(Sersic ↔ clumpy); selection reports the completeness shift (the morphology bracket)."
        ),
    )
    host_weighting: bool = Field(
        True,
        description=(
            "Draw deflector-like hosts weighted by the density ratio of the positives to the hosts in TYPE "
            "and the quantile bins of deflector_bins, so they follow the known lenses' deflectors "
            "(docs/selection.md)."
        ),
    )
    deflector_bins: dict[str, int] = Field(
        default_factory=lambda: dict(DEFLECTOR_MATCH),
        description=(
            "The deflector match (host_match deflector): per sweep column, the positives' 5–95% window that "
            "hosts must lie in, and the number of the positives' quantile bins in which host_weighting takes "
            "the density ratio (with TYPE); columns among mag_r, mag_z, g_r, r_z, shape_r, sersic."
        ),
    )
    exclude_candidate_hosts: bool = Field(
        True,
        description=(
            "Leave out of the host pool the negatives that the frozen finder already scores at or above the "
            "operating threshold (the evaluate stage's scores): injections into them are detected whatever "
            "the arcs, while a true lens's deflector without its arcs almost never is (docs/selection.md)."
        ),
    )
    host_bracket: bool = Field(
        True,
        description=(
            "Also inject bracket_fraction × n_per_cell arcs per cell into all N1 hosts of the host splits "
            "(not "
            "only deflector-like ones): the closure ladder's host-population term."
        ),
    )
    bracket_fraction: float = Field(
        0.25, gt=0.0, le=1.0, description="Injections per cell of each bracket, as a fraction of n_per_cell."
    )
    psf_beta: float = Field(
        3.5,
        gt=1.0,
        le=10.0,
        description=(
            "Moffat β of the injected PSF with inject.psf_shape 'fixed', and the fallback of 'stars' when no "
            "brick is measured (the FWHM per band is each host's own, from its catalogue row)."
        ),
    )
    psf_shape: Literal["stars", "fixed"] = Field(
        "stars",
        description=(
            "PSF wings of the injections: 'stars' = each host's brick's Moffat β, fitted to its isolated "
            "catalogued stars (selection/psfshape.py; bricks without enough good fits take the measured "
            "bricks' median); 'fixed' = inject.psf_beta for every injection."
        ),
    )
    psf_star_mag_r: tuple[float, float] = Field(
        (17.5, 20.0), description="r-magnitude window of the stars whose fits give a brick's PSF β."
    )
    psf_star_isolation_arcsec: float = Field(
        8.0, gt=0.0, description="A PSF star has no other catalogued source within this radius."
    )
    psf_stars_per_brick: int = Field(8, ge=1, description="Brightest stars fitted per host brick.")
    psf_star_min: int = Field(
        3, ge=1, description="Good star fits a brick needs for its own β (else the measured bricks' median)."
    )
    psf_beta_bracket: tuple[float, ...] = Field(
        (2.5, 4.5),
        description=(
            "Moffat β values of the paired PSF-wing bracket (real DR10 PSFs vary from brick to brick): the "
            "same injections re-rendered at each β; selection reports ΔC per cell and θE. Empty: off."
        ),
    )
    inner_image_ablation: bool = Field(
        True,
        description=(
            "Also re-render paired injections with the counter-image inside 0.5 θE suppressed; selection "
            "reports ΔC per θE (how much of the detection the inner image carries)."
        ),
    )
    paired_fraction: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description=(
            "Fraction of each cell's main injections that every paired variant (PSF β bracket, inner-image "
            "ablation) re-renders with the same host, lens and source."
        ),
    )
    stress_n: int = Field(
        400,
        ge=0,
        le=1000000,
        description=(
            "Injections of the SLACS/BELLS-like stress set (θE 0.6–1.8″, bright compact sources, the most "
            "massive red hosts; selection.injection.STRESS_PRIOR), reported as recall beside the grid. "
            "0: off."
        ),
    )
    host_splits: tuple[Literal["val", "test"], ...] = Field(
        ("val", "test"),
        min_length=1,
        description=(
            "Splits whose N1 negatives host the injections. Never train: the finder must not have seen a "
            "host. Validation hosts double the deflector-like pool; val only chose the epoch and temperature."
        ),
    )
    src_mag_r_range: tuple[float, float] = Field(
        (20.0, 27.0),
        description=(
            "Unlensed source r magnitude prior (uniform). Broad on purpose: it spans sources every finder "
            "detects and sources none does, and the selection function is conditioned on it (its 4th axis), "
            "so the prior sets coverage, not the answer; it is not taken from any sky."
        ),
    )
    magnification_range: tuple[float, float] = Field((5.0, 30.0), description="Target magnification prior.")
    src_reff_arcsec_range: tuple[float, float] = Field(
        (0.1, 0.5), description="Source half-light radius prior."
    )
    src_n_range: tuple[float, float] = Field((0.5, 2.0), description="Source Sersic index prior.")
    src_q_range: tuple[float, float] = Field((0.4, 1.0), description="Source axis ratio prior.")
    lens_q_range: tuple[float, float] = Field((0.5, 1.0), description="Lens axis ratio prior.")
    shear_max: float = Field(0.05, ge=0.0, le=0.3, description="External shear |γ| prior upper bound.")
    supersample: int | None = Field(
        None,
        ge=1,
        le=25,
        description="Fixed supersampling (k×k rays per pixel); unset: adaptive to inject.accuracy.",
    )
    accuracy: float = Field(
        1e-3,
        gt=0.0,
        le=0.1,
        description=(
            "Adaptive supersampling target (the default mode): per system, summed pixel-integration error ≤ "
            "accuracy/2 × lensed flux and each pixel's ≤ accuracy × the peak pixel (docs/lensing.md)."
        ),
    )
    noise_model: Literal["invvar", "mad"] = Field(
        "invvar", description="Arc noise from host invvar, or from the outer-annulus MAD."
    )
    host_match: Literal["deflector", "all"] = Field(
        "deflector",
        description=(
            "Hosts: N1 negatives of host_splits like the positives' deflectors (TYPE, and the columns of "
            "deflector_bins inside the positives' 5–95% window), or all of them."
        ),
    )
    allow_degradation: bool = Field(
        True,
        description="Fill empty cells by degrading better-seeing hosts (Moffat-difference kernel + noise).",
    )
    psf_match_tol_arcsec: float = Field(0.075, gt=0.0, description="Host matches a PSF cell within ± this.")
    depth_match_tol_mag: float = Field(0.25, gt=0.0, description="Host matches a depth cell within ± this.")
    batch_size: int = Field(256, ge=1, le=65536, description="Injection batch size (adaptive on OOM).")
    threads: int = Field(
        2,
        ge=1,
        le=512,
        description=(
            "CPU threads for torch while rendering, pinned (CPU reductions depend on the thread count), so a "
            "resumed, distributed or standalone inject stage writes the same bytes as one after training in "
            "the same process. Raise it on a larger machine; the bytes then change with it."
        ),
    )
    distributed: bool = Field(
        False,
        description=(
            "Render the injection batches on the configured Dask engine (engine.*: a LocalCluster, a "
            "scheduler address or SLURM) instead of in this process; the bytes are the same (workers render "
            "on inject.threads torch threads). Off by default: on a laptop one process is as fast."
        ),
    )
    probe_warn: float = Field(0.70, description="Realism: discriminator AUC warn threshold.")
    probe_fail: float = Field(0.85, description="Realism: discriminator AUC fail threshold.")
    snr_ratio_bounds: tuple[float, float] = Field(
        (0.5, 2.0), description="Realism: injected/real arc SNR percentiles ratio bounds."
    )
    colour_tol_mag: float = Field(0.2, gt=0.0, description="Realism: median arc colour tolerance.")
    noise_sigma_tol: tuple[float, float] = Field(
        (0.05, 0.15),
        description=(
            "Realism: the added noise's measured/predicted σ ratio (injected − real host stamp, high-passed) "
            "passes within 1 ± the first value, warns within 1 ± the second, fails beyond."
        ),
    )

    @field_validator("psf_beta_bracket")
    @classmethod
    def _betas_valid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 1.0 < b <= 10.0 for b in v) or len(set(v)) != len(v):
            raise ValueError(f"psf_beta_bracket values must be distinct Moffat β in (1, 10], got {v}")
        return v

    @field_validator("deflector_bins")
    @classmethod
    def _bins_valid(cls, v: dict[str, int]) -> dict[str, int]:
        if not v or any(not 1 <= n <= 10 for n in v.values()) or not set(v) <= set(DEFLECTOR_COLUMNS):
            raise ValueError(
                f"deflector_bins needs at least one of the columns {', '.join(DEFLECTOR_COLUMNS)}, each with "
                f"1–10 bins, got {v}"
            )
        return v

    @field_validator("noise_sigma_tol")
    @classmethod
    def _noise_tol_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1] < 1:
            raise ValueError(f"noise_sigma_tol must satisfy 0 < pass ≤ fail < 1, got {v}")
        return v


class SelectionConfig(Section):
    """Completeness per cell with Bayesian binomial intervals."""

    prior: Literal["jeffreys", "uniform"] = Field(
        "jeffreys", description="Beta prior (decision: Jeffreys Beta(½,½))."
    )
    interval: float = Field(
        0.68, gt=0.0, lt=1.0, description="Central credible interval (decision: 68%; 95% in an extra column)."
    )
    n_min: int = Field(20, ge=1, description="Cells with fewer injections are 'insufficient'.")
    smoothing: Literal["none"] = Field("none", description="No smoothing (documented decision).")
    condition_on: Literal["src_mag", "arc_mag"] = Field(
        "src_mag",
        description=(
            "The selection function's 4th axis: the unlensed source r magnitude (src_mag) or the lensed "
            "arc's "
            "r magnitude (arc_mag). Both are tabulated from the same injections and both enter the closure "
            "ladder; this one is written to selection_function.fits (docs/selection.md says why)."
        ),
    )
    mag_bin_width: float = Field(
        0.5,
        gt=0.0,
        le=5.0,
        description=(
            "Width (mag) of the magnitude bins of the 4th axis. 0.5: with 1-mag bins, linear interpolation "
            "across a finder's 0.5-mag-wide completeness transition biased a closure test to χ² p = 0.002 "
            "(tests/selection/test_closure.py)."
        ),
    )
    n_min_mag_bin: int = Field(
        5,
        ge=1,
        description="4-D cells (θE, PSF, depth, magnitude bin) with fewer injections are insufficient.",
    )
    closure_host_bootstrap: int = Field(
        2000,
        ge=0,
        le=10000,
        description=(
            "Host-bootstrap resamples for the table's part of the closure σ (0: the cells' Beta posterior "
            "variances instead). The injections share a few dozen hosts, so the Beta posterior, which "
            "treats them as independent, understates the table's uncertainty (docs/selection.md). "
            "The σ of n resamples is uncertain by ~1/√(2n): at 200 (5%) the demo's count of bins within "
            "1σ changed with the bootstrap seed, at 2000 (1.6%) it does not."
        ),
    )
    max_ci68_width: float = Field(
        0.15,
        gt=0.0,
        lt=1.0,
        description=(
            "ci68_width gate: the largest median 68% interval width of the main 3-D grid (issue 15: a "
            "closure "
            "must not pass through wide intervals)."
        ),
    )
    force: bool = Field(
        False, description="Run even on a NO-GO realism verdict (figures stamped 'realism gates failed')."
    )


class EnsembleConfig(Section):
    """The ensemble (issue 20): members trained on the same data and seeds, combined by mean logit and by a
    logistic meta-learner fitted on val; audited like the single finder. Off in the demo (budget):
    configs/demo-full.yaml turns it on."""

    enabled: bool = Field(
        False, description="Run the ensemble stage (trains the members other than train's)."
    )
    members: list[str] = Field(
        default_factory=lambda: ["resnet18", "efficientnet_b0"],
        description="Architectures of the members; the train stage's own model is reused for its arch.",
    )
    meta_learner: bool = Field(True, description="Also fit a logistic meta-learner on the val logits.")
    crop_ablation: list[int] = Field(
        default_factory=list,
        description="Optional experiment: the train stage's architecture retrained at each of these centre "
        "crops (px; the design's ablation is 64 vs 101), audited alike, reported in a table (not combined).",
    )


class MineConfig(Section):
    """The hard-negative mining loop (issue 20): round k's finder scores the TRAIN-split negatives; the top
    ones join N2 as 'mined'; round k+1 retrains on the result. Off in the demo (budget)."""

    rounds: int = Field(
        0, ge=0, le=10, description="Mining rounds after round 0 (0 = the stage does not run)."
    )
    top_k: int = Field(50, ge=1, le=1_000_000, description="Train negatives mined per round.")
    weight: float = Field(
        3.0, gt=0.0, le=100.0, description="Training weight of a mined negative (other negatives weigh 1)."
    )
    confirmed_csv: str | None = Field(
        None,
        description="CSV with galaxy_id and verdict ('non_lens': a visually confirmed non-lens, always "
        "mined; "
        "'lens': a lens among the negatives, dropped from training).",
    )


class PopulationConfig(Section):
    """A second synthetic lens population (synthetic data only): a second sky like the run's `sky` section
    but with fainter, larger lens sources, whose catalogued lenses the frozen finder scores."""

    enabled: bool = Field(
        False,
        description=(
            "Render a second synthetic sky whose lens sources differ and judge the selection function on it "
            "(closure on a second population); synthetic data only."
        ),
    )
    src_mag_offset: float = Field(
        0.7,
        ge=-5.0,
        le=5.0,
        description="Magnitudes added to the second sky's unlensed source r magnitudes (sky.src_mag_offset).",
    )
    src_size_scale: float = Field(
        1.5,
        gt=0.0,
        le=10.0,
        description="Factor on the second sky's source sizes and component offsets (sky.src_size_scale).",
    )
    n_bricks: int = Field(6, ge=1, le=2000, description="Bricks of the second sky.")
    seed_offset: int = Field(
        1000,
        ge=1,
        description=(
            "Added to sky.seed_offset for the second sky, so that its bricks and objects are drawn "
            "independently of the run's sky; every other sky setting is the run's."
        ),
    )


class FailuresConfig(Section):
    """Failure-mode taxonomy."""

    collapse_threshold: float = Field(
        0.2, ge=0.0, le=1.0, description="Cells with completeness below this are 'collapse' cells."
    )
    gallery_size: int = Field(16, ge=1, le=256, description="Stamps per failure-mode gallery.")


class ReportConfig(Section):
    """The HTML report."""

    title: str = Field("lensaudit report", description="Report title.")
    threshold_overrides: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Config keys that set a gate threshold away from the design's default → the reason "
            "(the config's own comment); the report repeats them."
        ),
    )


class RunConfig(Section):
    """The whole run: one section per stage."""

    run: RunSection = Field(default_factory=RunSection)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    sky: SkyConfig = Field(default_factory=SkyConfig)
    positives: PositivesConfig = Field(default_factory=PositivesConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    cutouts: CutoutsConfig = Field(default_factory=CutoutsConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    inject: InjectConfig = Field(default_factory=InjectConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    ensemble: EnsembleConfig = Field(default_factory=EnsembleConfig)
    mine: MineConfig = Field(default_factory=MineConfig)
    failures: FailuresConfig = Field(default_factory=FailuresConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @model_validator(mode="after")
    def _cross_checks(self) -> RunConfig:
        if self.train.min_epochs > self.train.epochs:
            raise ValueError(
                f"train.min_epochs ({self.train.min_epochs}) must be ≤ train.epochs ({self.train.epochs})"
            )
        return self

    # -- resolved paths ------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.run.run_dir)

    @overload
    def resolve_path(self, value: str) -> Path: ...
    @overload
    def resolve_path(self, value: None) -> None: ...
    @overload
    def resolve_path(self, value: str | None) -> Path | None: ...
    def resolve_path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        return Path(value.replace("{run_dir}", str(self.run.run_dir)))

    @property
    def sky_dir(self) -> Path:
        return self.resolve_path(self.data.sky_dir)

    @property
    def sweeps_location(self) -> str:
        if self.data.sweeps:
            return str(self.resolve_path(self.data.sweeps))
        return str(self.sky_dir / "sweep")

    @property
    def coadd_dir(self) -> Path:
        if self.data.coadd_dir:
            return self.resolve_path(self.data.coadd_dir)
        return self.sky_dir / "coadd"

    def section_dict(self, name: str) -> dict[str, Any]:
        return getattr(self, name).model_dump(mode="json")


# ----------------------------------------------------------------------------------------------
def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<config>"
        ctx = e.get("ctx") or {}
        rng = []
        for k, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            if k in ctx:
                rng.append(f"{sym} {ctx[k]}")
        allowed = f" (allowed: {', '.join(rng)})" if rng else ""
        if e["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key")
        elif e["type"] == "literal_error" and "expected" in ctx:
            lines.append(f"{loc}: {e['msg']} (got {e.get('input')!r})")
        else:
            lines.append(f"{loc}: {e['msg']}{allowed} (got {e.get('input')!r})")
    return "invalid config: " + "; ".join(lines)


def _set_dotted(d: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    cur[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``section.key=value``; the value is read as YAML, so numbers, lists and booleans are typed."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if "." not in key:
        raise ConfigError(f"override {item!r}: key must be section.key (e.g. train.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return key, value


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    run_dir: str | Path | None = None,
) -> RunConfig:
    """Load YAML into a validated RunConfig, apply ``--set`` overrides and ``--run-dir``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p} must contain a mapping of sections")
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(data, key, value)
    if run_dir is not None:
        _set_dotted(data, "run.run_dir", str(run_dir))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        msg = _format_validation_error(err)
        if path is not None:
            msg = msg.replace("invalid config:", f"invalid config {path}:", 1)
        raise ConfigError(msg) from None


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML (what `lensaudit config show` prints)."""
    return yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False)


def config_reference_markdown() -> str:
    """The config reference, generated from the pydantic models so it cannot drift."""
    out = ["# Config reference", "", "Generated from `lensaudit.config` (`lensaudit config reference`).", ""]
    for name, field in RunConfig.model_fields.items():
        model = cast(type[BaseModel], field.annotation)  # every RunConfig field is a section model
        out += [
            f"## `{name}`",
            "",
            (model.__doc__ or "").strip(),
            "",
            "| key | default | description |",
            "|---|---|---|",
        ]
        for key, f in model.model_fields.items():
            default = f.get_default(call_default_factory=True)
            out.append(f"| `{key}` | `{json.dumps(default, default=str)}` | {f.description or ''} |")
        out.append("")
    return "\n".join(out)
