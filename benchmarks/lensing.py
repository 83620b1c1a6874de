"""Injection-engine throughput: stamps/s for 101×101×3, supersample 5, Moffat PSF, batch 256, against
lenstronomy rendering the same systems (SIE+SHEAR, Sersic, pixel Moffat kernel, same supersampling) in the same
run. Peak memory from tracemalloc/psutil; the batch size halves on out-of-memory.

    .venv/bin/python benchmarks/lensing.py [--n 256] [--n-ref 12] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from lensaudit.lensing import moffat_kernel, render_arcs, sample_systems

PIX = 0.262
PRIOR = {"src_mag_r": (22, 26), "magnification": (5, 30), "src_reff": (0.1, 0.5), "src_n": (0.5, 2), "src_q": (0.4, 1), "lens_q": (0.5, 1)}


def ours(systems, device, batch):
    out = 0
    t0 = time.perf_counter()
    i = 0
    while i < len(systems):
        try:
            sub = systems.subset(slice(i, i + batch))
            a, _ = render_arcs(sub, 101, PIX, "grz", 5, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            out += len(a)
            i += batch
        except torch.OutOfMemoryError:
            batch = max(1, batch // 2)
    return out / (time.perf_counter() - t0), batch


def lenstronomy_rate(systems, n):
    from lenstronomy.Data.imaging_data import ImageData
    from lenstronomy.Data.psf import PSF
    from lenstronomy.ImSim.image_model import ImageModel
    from lenstronomy.LensModel.lens_model import LensModel
    from lenstronomy.LightModel.light_model import LightModel

    c = 50
    data = ImageData(image_data=np.zeros((101, 101)), ra_at_xy_0=c * PIX, dec_at_xy_0=-c * PIX, transform_pix2angle=np.array([[-PIX, 0], [0, PIX]]))
    t0 = time.perf_counter()
    for i in range(n):
        for b in "grz":
            k = moffat_kernel(systems.psf_fwhm[b][i:i + 1], systems.psf_beta[i:i + 1], PIX, 41, dtype=torch.float64)[0].numpy()
            m = ImageModel(data, PSF(psf_type="PIXEL", kernel_point_source=k), lens_model_class=LensModel(["SIE", "SHEAR"]),
                           source_model_class=LightModel(["SERSIC_ELLIPSE"]), kwargs_numerics={"supersampling_factor": 5})
            q, phi = float(systems.q[i]), float(systems.phi[i])
            e = (1 - q) / (1 + q)
            sq, sphi = float(systems.src_q[i]), float(systems.src_phi[i])
            se = (1 - sq) / (1 + sq)
            m.image(kwargs_lens=[{"theta_E": float(systems.theta_e[i]), "e1": e * np.cos(2 * phi), "e2": e * np.sin(2 * phi), "center_x": 0, "center_y": 0},
                                 {"gamma1": float(systems.gamma1[i]), "gamma2": float(systems.gamma2[i])}],
                    kwargs_source=[{"amp": 1.0, "R_sersic": float(systems.src_reff[i]), "n_sersic": float(systems.src_n[i]),
                                    "e1": se * np.cos(2 * sphi), "e2": se * np.sin(2 * sphi), "center_x": float(systems.src_x[i]), "center_y": float(systems.src_y[i])}])
    return n / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--n-ref", type=int, default=12)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    systems = sample_systems(a.n, rng.uniform(0.5, 3.0, a.n), PRIOR, rng, {"g": 1.5, "r": 1.35, "z": 1.3}, 3.5)
    dev = torch.device(a.device)
    ours(systems.subset(slice(0, 8)), dev, 8)  # warm-up
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    rate, batch = ours(systems, dev, a.batch)
    peak = (proc.memory_info().rss - rss0) / 2 ** 20
    ref = lenstronomy_rate(systems, a.n_ref)
    res = {"device": str(dev), "threads": a.threads, "n": a.n, "batch_final": batch, "ours_stamps_per_s": round(rate, 1),
           "lenstronomy_stamps_per_s": round(ref, 2), "speedup": round(rate / ref, 1), "rss_growth_mib": round(peak, 1),
           "cuda_peak_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if dev.type == "cuda" else None,
           "cpu_count": os.cpu_count()}
    out = Path(__file__).parent / "results" / f"lensing_{dev.type}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    for k, v in res.items():
        print(f"{k:>26}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
