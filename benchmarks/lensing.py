"""Injection-engine throughput at equal accuracy, against lenstronomy and caustics, in ONE run.

    .venv/bin/python benchmarks/lensing.py [--n 64] [--n-ref 6] [--n-acc 8] [--threads 2]

Systems are drawn with ``sample_systems`` across the default inject prior (``InjectConfig()``), θE uniform in
0.5–3″, grz Moffat PSFs (FWHM 1.5/1.35/1.3″, β 3.5), 101×101 stamps of 0.262″.

1. Accuracy (r band, unit source flux, images before the PSF, float64 references) on ``--n-acc`` systems:
   the reference is lenstronomy at supersampling ``--ref-ss`` (25). Errors: |total flux − ref|/ref and
   max|pixel − ref|/peak(ref), the worst system. Our default mode (adaptive, ``accuracy=1e-3``) and
   lenstronomy at each supersampling of ``--ss-grid`` are measured against it; lenstronomy's *equal-accuracy*
   supersampling is the smallest whose worst flux error and worst pixel error are both ≤ ours. caustics
   (different parameter conventions) is measured against its own ``upsample_factor`` = ``--ref-ss`` image of
   the same systems (self-convergence), with the same rule.
2. Speed (grz, PSF-convolved, float32 for ours, each package's own way) on the same systems:
   - ours: ``render_arcs`` default mode (batch ``--batch``; torch.compile warmed up before timing) and fixed
     supersampling 5;
   - lenstronomy: one ``ImageModel`` per band built once and reused for every stamp (its best case: no
     per-stamp set-up), regular supersampling, pixel PSF kernel, ``supersampling_convolution=False`` (its
     fastest), at its equal-accuracy supersampling and at 5;
   - caustics 1.7.1: ``LensSource`` (SIE + ExternalShear, Sersic), ``torch.vmap`` over batches of
     ``--caustics-batch`` sizes (the best is used), upsample_factor at its equal-accuracy value, PSF sampled
     at the upsampled resolution (as its docs require), float32, 2 threads.
Ratios are stamps/s over stamps/s from this run. The machine is shared by several engineers (noted in the
JSON): both sides of every ratio run interleaved in the same process, so contention hits both.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make torch ~50× slower when the 2 cores are shared with other jobs
# (measured here: 11 s vs 0.2 s for 8 stamps); passive waiting removes that without changing the results
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lensaudit.config import InjectConfig  # noqa: E402
from lensaudit.lensing import moffat_kernel, render_arcs, sample_systems  # noqa: E402
from lensaudit.lensing.render import sersic_total  # noqa: E402
from lensaudit.selection.injection import prior  # noqa: E402

PIX = 0.262
SIZE = 101
FWHM = {"g": 1.5, "r": 1.35, "z": 1.3}
BETA = 3.5


def _e(q, phi):
    c = (1 - q) / (1 + q)
    return c * np.cos(2 * phi), c * np.sin(2 * phi)


def _kwargs(s, i):
    """lenstronomy keyword lists of system i (our conventions map 1:1, see tests/lensing)."""
    e1, e2 = _e(float(s.q[i]), float(s.phi[i]))
    se1, se2 = _e(float(s.src_q[i]), float(s.src_phi[i]))
    amp = 1.0 / float(sersic_total(s.src_reff[i : i + 1].double(), s.src_n[i : i + 1].double())[0])
    kl = [
        {"theta_E": float(s.theta_e[i]), "e1": e1, "e2": e2, "center_x": 0.0, "center_y": 0.0},
        {"gamma1": float(s.gamma1[i]), "gamma2": float(s.gamma2[i]), "ra_0": 0.0, "dec_0": 0.0},
    ]
    ks = [
        {
            "amp": amp,
            "R_sersic": float(s.src_reff[i]),
            "n_sersic": float(s.src_n[i]),
            "e1": se1,
            "e2": se2,
            "center_x": float(s.src_x[i]),
            "center_y": float(s.src_y[i]),
        }
    ]
    return kl, ks


def lenstronomy_model(ss, kernel=None):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    c = (SIZE - 1) / 2
    data = ImageData(
        image_data=np.zeros((SIZE, SIZE)),
        ra_at_xy_0=c * PIX,
        dec_at_xy_0=-c * PIX,
        transform_pix2angle=np.array([[-PIX, 0.0], [0.0, PIX]]),
    )
    psf = PSF(psf_type="NONE") if kernel is None else PSF(psf_type="PIXEL", kernel_point_source=kernel)
    return ImageModel(
        data,
        psf,
        lens_model_class=LensModel(["SIE", "SHEAR"]),
        source_model_class=LightModel(["SERSIC_ELLIPSE"]),
        kwargs_numerics={"supersampling_factor": int(ss), "supersampling_convolution": False},
    )


def caustics_sim(u, fwhm=None, dtype=torch.float32):
    """A caustics LensSource with all lens/source parameters dynamic (12 per system, see _caustics_x)."""
    import caustics

    cos = caustics.FlatLambdaCDM(name="cosmo")
    sie = caustics.SIE(name="sie", cosmology=cos, z_l=0.5, z_s=1.5, x0=0.0, y0=0.0)
    sh = caustics.ExternalShear(name="shear", cosmology=cos, z_l=0.5, z_s=1.5, x0=0.0, y0=0.0)
    lens = caustics.SinglePlane(name="lens", cosmology=cos, lenses=[sie, sh], z_l=0.5, z_s=1.5)
    psf = [[1.0]]
    if fwhm is not None:  # Moffat sampled at the upsampled pixel, unit sum (caustics: psf at upsampled res.)
        h = 20 * u
        g = torch.arange(-h, h + 1, dtype=torch.float64) * PIX / u
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        a = fwhm / (2 * np.sqrt(2 ** (1 / BETA) - 1))
        k = (1 + (xx**2 + yy**2) / a**2) ** (-BETA)
        psf = (k / k.sum()).to(dtype)
    sim = caustics.LensSource(
        lens=lens,
        source=caustics.Sersic(name="src"),
        pixelscale=PIX,
        pixels_x=SIZE,
        upsample_factor=int(u),
        psf=psf,
    )
    sim.to(dtype=dtype)
    return sim


def _caustics_x(s, dtype=torch.float32):
    """(B, 12): SIE q, φ, Rein; shear γ1, γ2; Sersic x0, y0, q, φ, n, Re, Ie (unit flux in our convention)."""
    ie = 1.0 / sersic_total(s.src_reff.double(), s.src_n.double())
    cols = [s.q, s.phi, s.theta_e, s.gamma1, s.gamma2, s.src_x, s.src_y, s.src_q, s.src_phi, s.src_n]
    cols += [s.src_reff, ie]
    return torch.stack([c.double() for c in cols], dim=1).to(dtype)


def _errors(img, ref):
    f = float(abs(img.sum() / ref.sum() - 1))
    p = float(np.abs(img - ref).max() / ref.max())
    return f, p


def accuracy(s, ss_grid, ref_ss, caustics_grid):
    """Per-method worst flux and pixel errors on systems ``s`` (r band, before the PSF)."""
    n = len(s)
    refs = []
    m_ref = lenstronomy_model(ref_ss)
    for i in range(n):
        kl, ks = _kwargs(s, i)
        refs.append(m_ref.image(kwargs_lens=kl, kwargs_source=ks))
    ours, info = render_arcs(s, SIZE, PIX, "r", convolve=False, dtype=torch.float32)
    scale = 10 ** (-0.4 * (s.src_mag["r"].numpy() - 22.5))  # our images are in nanomaggies: to unit flux
    e = [_errors(ours[i, 0].double().numpy() / scale[i], refs[i]) for i in range(n)]
    res = {
        "ours_default": {
            "flux_err_max": max(x[0] for x in e),
            "pixel_err_max": max(x[1] for x in e),
            "rays_per_pixel_mean": float(info["rays_per_pixel"].mean()),
            "supersample_max": float(info["supersample_max"].max()),
        }
    }
    lens = {}
    for ss in ss_grid:
        m = lenstronomy_model(ss)
        ee = []
        for i in range(n):
            kl, ks = _kwargs(s, i)
            ee.append(_errors(m.image(kwargs_lens=kl, kwargs_source=ks), refs[i]))
        lens[str(ss)] = {"flux_err_max": max(x[0] for x in ee), "pixel_err_max": max(x[1] for x in ee)}
    res["lenstronomy"] = lens
    cres = {}
    try:
        x = _caustics_x(s, torch.float64)
        cref = torch.stack([caustics_sim(ref_ss, dtype=torch.float64)(x[i]) for i in range(n)]).numpy()
        for u in caustics_grid:
            sim = caustics_sim(u, dtype=torch.float64)
            ci = torch.stack([sim(x[i]) for i in range(n)]).numpy()
            ee = [_errors(ci[i], cref[i]) for i in range(n)]
            cres[str(u)] = {"flux_err_max": max(v[0] for v in ee), "pixel_err_max": max(v[1] for v in ee)}
    except Exception as ex:  # noqa: BLE001 - recorded, not hidden
        cres["error"] = f"{type(ex).__name__}: {ex}"
    res["caustics"] = cres
    return res


def _equal(table, ours):
    """Smallest supersampling whose worst flux and pixel errors are both ≤ ours (None if none is)."""
    ok = [
        int(k)
        for k, v in table.items()
        if k != "error"
        and v["flux_err_max"] <= ours["flux_err_max"]
        and v["pixel_err_max"] <= ours["pixel_err_max"]
    ]
    return min(ok) if ok else None


def ours_rate(s, batch, supersample=None):
    t0 = time.perf_counter()
    for i in range(0, len(s), batch):
        render_arcs(s.subset(slice(i, i + batch)), SIZE, PIX, "grz", supersample)
    return len(s) / (time.perf_counter() - t0)


def lenstronomy_rate(s, ss, n):
    models = {
        b: lenstronomy_model(
            ss,
            moffat_kernel(torch.tensor([FWHM[b]]), torch.tensor([BETA]), PIX, 41, dtype=torch.float64)[
                0
            ].numpy(),
        )
        for b in "grz"
    }  # built once, reused for every stamp
    t0 = time.perf_counter()
    for i in range(n):
        kl, ks = _kwargs(s, i)
        for b in "grz":
            models[b].image(kwargs_lens=kl, kwargs_source=ks)
    return n / (time.perf_counter() - t0)


def caustics_rate(s, u, n, batches):
    sims = {b: caustics_sim(u, FWHM[b]) for b in "grz"}
    x = _caustics_x(s)[:n]
    best = {}
    for bs in batches:
        fns = {b: torch.vmap(sims[b]) for b in "grz"}
        for b in "grz":  # warm-up
            fns[b](x[: min(bs, n)])
        t0 = time.perf_counter()
        for i in range(0, n, bs):
            for b in "grz":
                fns[b](x[i : i + bs])
        best[str(bs)] = n / (time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="systems timed for our engine")
    ap.add_argument("--n-ref", type=int, default=6, help="systems timed for lenstronomy and caustics")
    ap.add_argument("--n-acc", type=int, default=8, help="systems in the accuracy study")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--ref-ss", type=int, default=25)
    ap.add_argument("--ss-grid", type=int, nargs="+", default=[3, 5, 7, 9, 11, 13, 15, 17, 19, 21])
    ap.add_argument("--caustics-grid", type=int, nargs="+", default=[3, 5, 7, 9, 11, 13, 15])
    ap.add_argument("--caustics-batch", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lensing_cpu.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    pr = prior(InjectConfig())
    n = max(a.n, a.n_acc, a.n_ref)
    s = sample_systems(n, rng.uniform(0.5, 3.0, n), pr, rng, FWHM, BETA)
    t0 = time.perf_counter()
    acc = accuracy(s.subset(slice(0, a.n_acc)), a.ss_grid, a.ref_ss, a.caustics_grid)
    t_acc = time.perf_counter() - t0
    ss_eq = _equal(acc["lenstronomy"], acc["ours_default"])
    u_eq = _equal(acc["caustics"], acc["ours_default"])
    print(json.dumps(acc, indent=1), "lenstronomy equal-accuracy ss:", ss_eq, "caustics:", u_eq, flush=True)
    sys_t = s.subset(slice(0, a.n))
    ours_rate(sys_t.subset(slice(0, a.batch)), a.batch)  # warm-up: kernel caches
    ours_rate(sys_t.subset(slice(0, a.batch)), a.batch, 5)
    ss_used = ss_eq if ss_eq is not None else max(a.ss_grid)
    u_used = u_eq if u_eq is not None else max(a.caustics_grid)
    # the methods are timed in interleaved rounds and the median of each is used, so that the load the other
    # jobs put on the shared cores drifts over all of them alike
    rounds: dict[str, list[float]] = {k: [] for k in ("def", "ss5", "l_eq", "l_5", "c")}
    c_rates: dict = {}
    best_bs = None
    for r in range(a.rounds):
        rounds["def"].append(ours_rate(sys_t, a.batch))
        rounds["ss5"].append(ours_rate(sys_t, a.batch, 5))
        rounds["l_eq"].append(lenstronomy_rate(s, ss_used, a.n_ref))
        rounds["l_5"].append(lenstronomy_rate(s, 5, a.n_ref))
        try:
            cr = caustics_rate(s, u_used, a.n_ref, a.caustics_batch if best_bs is None else [best_bs])
            if best_bs is None:
                c_rates = cr
                best_bs = int(max(cr, key=lambda k: cr[k]))
            rounds["c"].append(cr[str(best_bs)])
        except Exception as ex:  # noqa: BLE001 - recorded, not hidden
            c_rates = {"error": f"{type(ex).__name__}: {ex}"}
        print(f"round {r}:", {k: round(v[-1], 3) for k, v in rounds.items() if v}, flush=True)
    med = {k: float(np.median(v)) if v else None for k, v in rounds.items()}
    r_def, r_ss5, l_eq, l_5, c_best = med["def"], med["ss5"], med["l_eq"], med["l_5"], med["c"]
    res = {
        "command": "benchmarks/lensing.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, shared with other "
        "engineers' jobs during the run (load average %.1f at the end)" % os.getloadavg()[0],
        "torch_version": torch.__version__,
        "threads": a.threads,
        "stamp": "101x101x3 (grz), Moffat PSF, float32 (ours)",
        "prior": {k: list(v) if isinstance(v, tuple) else v for k, v in pr.items()},
        "accuracy": {
            "reference": f"lenstronomy supersampling {a.ref_ss}, r band, before the PSF, float64",
            "n_systems": a.n_acc,
            **acc,
            "lenstronomy_equal_accuracy_ss": ss_eq,
            "caustics_equal_accuracy_upsample": u_eq,
            "seconds": round(t_acc, 1),
        },
        "speed_stamps_per_s": {
            "ours_default": round(r_def, 2),
            "ours_fixed_ss5": round(r_ss5, 2),
            f"lenstronomy_ss{ss_used}": round(l_eq, 3),
            "lenstronomy_ss5": round(l_5, 3),
            f"caustics_upsample{u_used}_best_batch": round(c_best, 3) if c_best else None,
            "caustics_first_round_by_batch": {k: round(v, 3) for k, v in c_rates.items()}
            if "error" not in c_rates
            else c_rates,
            "rounds": {k: [round(x, 3) for x in v] for k, v in rounds.items()},
            "statistic": f"median of {a.rounds} interleaved rounds",
            "n_ours": a.n,
            "n_refs": a.n_ref,
        },
        "ratios": {
            "default_vs_lenstronomy_equal_accuracy": round(r_def / l_eq, 1),
            "default_vs_caustics_equal_accuracy": round(r_def / c_best, 1) if c_best else None,
            "fixed_ss5_vs_lenstronomy_ss5": round(r_ss5 / l_5, 1),
            "targets": {"default_vs_lenstronomy": 40, "default_vs_caustics": 10},
        },
    }
    notes = []
    if ss_eq is None:
        notes.append(
            f"lenstronomy did not reach our accuracy on its grid; timed at ss {ss_used} (favours it)"
        )
    if u_eq is None:
        notes.append(
            f"caustics did not reach our accuracy on its grid; timed at upsample {u_used} (favours it)"
        )
    if notes:
        res["ratios"]["notes"] = notes
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
