"""Where the realism gate's arc-colour difference comes from: the arcs, or the light under them.

The ``arc_colour_r_z_diff`` gate compares the median r−z of the injections' annulus residual (stamp minus
its azimuthal-median host model, unclipped) with the real positives', matched in PSF, depth and measured arc
SNR (:func:`lensaudit.selection.realism.compare`). That residual holds the arcs *and* whatever of the galaxy
under them an azimuthal median does not remove (ellipticity, neighbours, the arcs' own share of the median).
This benchmark takes the gate's own comparison (same seed, same real positives, same injections) and splits
each set's measured colour in two, on the synthetic sky, where both parts are known:

- real positives: the stamp as the gate sees it (T), and its arcs alone: T − D, with D the deflector without
  any lens's arcs (``closure_oracle.deflector_stamps``: the brick's arcs re-rendered with the sky's
  lenstronomy renderer and subtracted from the coadds; the sky adds no source Poisson noise);
- injections: the stamp (I), and its arcs alone: I − H, with H the host stamp it was injected into (the arc
  plus its Poisson noise; degraded hosts are left out);
- the swap: each positive's arcs in a randomly paired compared injection's host (H + A), and that injection's
  arcs in the positive's true deflector (D + J): whether the host term follows the arcs or the galaxy.

The gate's stamps of the real positives are the cutout server's, centred on their *catalogued* positions;
T and D are cut from the coadds at the lenses' *true* positions (``from_the_coadd`` measures T the same way).

Each is measured with the gate's own ``measured_arc`` (unclipped): the colour of the arcs alone, and the
"host term" (gate colour − arcs-alone colour). If the gate's difference is in the arcs' colours, the
arcs-alone colours differ by as much; if it is in the hosts, the host terms do, and the swap says which.
``ring_share``: how much of the arcs' annulus flux the azimuthal median absorbs (:func:`ring_share`).

    python benchmarks/realism_colour.py RUN [OUT]  → OUT (default results/realism_colour.json)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from closure_oracle import deflector_stamps
from closure_twins import attach_objects, sky_lens_objects
from lensaudit.config import load_config
from lensaudit.run import RunContext
from lensaudit.selection.realism import annulus_mask, compare, measured_arc, smooth_host
from lensaudit.stamps.store import StampStore

OUT = Path(__file__).parent / "results" / "realism_colour.json"


def finite_median(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if len(v) else None


def summary(arc: dict[str, np.ndarray], alone: dict[str, np.ndarray]) -> dict:
    """Median colours of the gate's measurement (``arc``) and of the arcs alone, and the median per-object
    host term, each over the objects where both are defined."""
    out: dict = {"n": int(len(arc["snr"])), "median_snr": finite_median(arc["snr"])}
    for c in ("g_r", "r_z"):
        both = np.isfinite(arc[c]) & np.isfinite(alone[c])
        out[c] = {
            "gate": finite_median(arc[c]),
            "arcs_alone": finite_median(alone[c]),
            "n_both": int(both.sum()),
            "gate_where_both": finite_median(arc[c][both]),
            "arcs_alone_where_both": finite_median(alone[c][both]),
            "host_term_median": finite_median(arc[c][both] - alone[c][both]),
        }
    return out


def ring_share(arcs: np.ndarray) -> dict[str, float | None]:
    """Per band, the median share of the arcs' annulus flux that the gate's azimuthal-median host model
    absorbs when it is run on the arcs alone (1: a complete, even ring, of which the residual keeps nothing;
    0: a compact arc, occupying under half of each ring)."""
    x = np.nan_to_num(arcs)
    h = smooth_host(x)
    ann = annulus_mask(x.shape[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            b: finite_median(h[:, k][:, ann].sum(-1) / x[:, k][:, ann].sum(-1)) for k, b in enumerate("grz")
        }


def main(run: Path, out: Path = OUT) -> dict:
    t0 = time.time()
    cfg = load_config(run / "config.yaml", [])
    ctx = RunContext.from_run_dir(run)
    sample = pd.read_parquet(ctx.path("sample", "sample"))
    index = pd.read_parquet(ctx.path("cutouts", "index"))
    inj = pd.read_parquet(ctx.path("inject", "injections"))
    hosts = StampStore.open(ctx.path("cutouts", "stamps"))
    store = StampStore.open(ctx.path("inject", "stamps"))
    c = compare(sample, index, inj, hosts, store, int(cfg.run.seed))  # the gate's own comparison

    # real positives: their arcs alone, T − D, from the sky's own renderer
    truth = pd.read_parquet(run / "sky" / "truth.parquet")
    cond = pd.read_parquet(run / "sky" / "conditions.parquet")
    objs = sky_lens_objects(cfg.sky, cfg.run.seed, cond)
    pos = c.pos.reset_index(drop=True).assign(_i=lambda d: np.arange(len(d)))
    tr = truth[truth.kind == "lens"][["galaxy_id", "theta_e_arcsec", "src_mag_r"]]
    lenses = attach_objects(pos[["galaxy_id", "_i"]].merge(tr, on="galaxy_id"), truth, objs)
    size = c.real_img.shape[-1]
    T, D, _ = deflector_stamps(lenses, objs, run / "sky", cfg.sky, cfg.run.seed, size)
    real_img = c.real_img[lenses._i.to_numpy()]
    ok = np.isfinite(T).all(axis=(1, 2, 3)) & np.isfinite(D).all(axis=(1, 2, 3))
    same = float(np.nanmax(np.abs(T[ok] - real_img[ok]))) if ok.any() else float("nan")
    A = (T - D)[ok]  # the positives' arcs alone (noise-free)
    arcs_A = measured_arc(A, clip=False)
    real = summary(measured_arc(real_img[ok], clip=False), arcs_A)
    real_T = summary(measured_arc(T[ok], clip=False), arcs_A)

    # injections: their arcs alone, I − H, H the (undegraded) host stamp
    plan = inj.set_index("row").loc[c.pick]
    keep = ~plan.degraded.to_numpy(bool)
    h_img = hosts.read(plan.host_row.to_numpy()[keep])[0]
    i_img = c.inj_img[keep]
    J = i_img - h_img  # the injections' arcs alone (with their Poisson noise)
    injected = summary(measured_arc(i_img, clip=False), measured_arc(J, clip=False))

    # the swap: each positive's arcs into a random compared injection's host, and that injection's arcs into
    # the positive's true deflector: does the host term follow the arcs or the galaxy under them?
    rng = np.random.default_rng(0)
    j = rng.integers(0, len(J), len(A))
    swap = {
        "sky_arcs_in_our_hosts": summary(measured_arc(h_img[j] + A, clip=False), arcs_A),
        "our_arcs_in_true_deflectors": summary(
            measured_arc(D[ok] + J[j], clip=False), measured_arc(J[j], clip=False)
        ),
    }

    diff = {
        col: {
            "gate": _sub(injected[col]["gate"], real[col]["gate"]),
            "arcs_alone": _sub(injected[col]["arcs_alone"], real[col]["arcs_alone"]),
            "host_term": _sub(injected[col]["host_term_median"], real[col]["host_term_median"]),
        }
        for col in ("g_r", "r_z")
    }
    res = {
        "run": str(run),
        "what": "the realism gate's arc colours split into the arcs alone and the host term (docstring)",
        "real_positives": {
            **real,
            "n_positives": int(len(c.pos)),
            "n_with_objects": int(len(lenses)),
            "n_on_brick": int(ok.sum()),
            "max_abs_T_minus_cutout": same,
            "from_the_coadd": real_T,
            "ring_share": ring_share(A),
        },
        "swap": swap,
        "injections": {
            **injected,
            "n_compared": int(len(c.pick)),
            "n_degraded_left_out": int((~keep).sum()),
            "ring_share": ring_share(J),
        },
        "injected_minus_real": diff,
        "wall_s": round(time.time() - t0, 1),
    }
    out.write_text(json.dumps(res, indent=1) + "\n")
    return res


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python benchmarks/realism_colour.py RUN [OUT]")
    r = main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
    print(
        f"{'':28s} {'g−r gate':>9s} {'alone':>7s} {'host':>7s}   {'r−z gate':>9s} {'alone':>7s} {'host':>7s}"
    )
    rows = {
        "real_positives": r["real_positives"],
        "real (coadd, true centre)": r["real_positives"]["from_the_coadd"],
        "injections": r["injections"],
        **r["swap"],
    }
    for k, s in rows.items():
        print(
            f"{k:28s} "
            + "   ".join(
                f"{s[c]['gate']:9.3f} {s[c]['arcs_alone']:7.3f} {s[c]['host_term_median']:7.3f}"
                for c in ("g_r", "r_z")
            )
        )
    d = r["injected_minus_real"]
    print("injected − real: " + json.dumps(d))
    share = (r["real_positives"]["ring_share"]["r"], r["injections"]["ring_share"]["r"])
    print(f"ring share (r): real arcs {share[0]:.3f}, injected arcs {share[1]:.3f}")
    print(f"{r['wall_s']} s")
