"""The self-contained HTML report: every figure embedded as base64 PNG, no network needed to view it."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pandas as pd

from lensaudit import __version__
from lensaudit.pipeline import Manifest
from lensaudit.stages import STAGE_ORDER

SECTIONS = [("summary", "1. Run summary"), ("gates", "2. Gate table"), ("data", "3. Data schematic"), ("training", "4. Training"),
            ("audit", "5. Audit"), ("realism", "6. Injection realism"), ("selection", "7. Selection function"),
            ("closure", "8. Closure test"), ("failures", "9. Failure modes"), ("limitations", "10. Limitations")]


def img(path: Path, alt: str) -> str:
    if not path.is_file():
        return f'<p class="missing">figure not produced: {path.name}</p>'
    b = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{alt}" src="data:image/png;base64,{b}"><figcaption>{alt}</figcaption></figure>'


def _json(p: Path) -> dict:
    return json.loads(p.read_text()) if p.is_file() else {}


def build(run_dir: Path, config_yaml: str, title: str) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    mans = {s: Manifest.load(run_dir / s / "_stage.json") for s in STAGE_ORDER if (run_dir / s / "_stage.json").is_file()}
    ev, inj, sel = _json(run_dir / "evaluate" / "metrics.json"), _json(run_dir / "inject" / "realism.json"), _json(run_dir / "selection" / "closure.json")
    fails = _json(run_dir / "failures" / "failures.json")
    limitations = _limitations(run_dir, mans, ev, inj, sel)
    banners = []
    if "evaluate" in mans and mans["evaluate"].extra.get("trustworthy") is False:
        banners.append("AUDIT NOT TRUSTWORTHY: red shortcut gates in the evaluate stage (see §5).")
    if "inject" in mans and mans["inject"].extra.get("verdict") != "GO":
        banners.append("REALISM GATES FAILED (NO-GO): the selection function below was forced and must not be used for science (see §6).")
    data_tables = _data_tables(run_dir)
    robust = pd.read_parquet(run_dir / "selection" / "robustness.parquet") if (run_dir / "selection" / "robustness.parquet").is_file() else None
    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"]))
    env.globals["img"] = lambda stage, name, alt: img(run_dir / stage / name, alt)
    return env.get_template("report.html.j2").render(
        title=title, version=__version__, sections=SECTIONS, mans=mans, banners=banners, config_yaml=config_yaml,
        ev=ev, inj=inj, closure=sel, fails=fails, limitations=limitations, data_tables=data_tables,
        robust=robust.describe().round(3).to_html(classes="tbl") if robust is not None else "",
        model_sha=mans["train"].extra.get("frozen_sha256", "") if "train" in mans else "", stage_order=STAGE_ORDER,
        fail_galleries=[g for g in fails.get("galleries", [])])


def _data_tables(run_dir: Path) -> dict:
    out = {}
    p = run_dir / "sample" / "sample.parquet"
    if p.is_file():
        s = pd.read_parquet(p)
        out["splits"] = pd.crosstab(s.split, s.pool).to_html(classes="tbl")
        out["n2"] = s[s.pool == "N2"].n2_category.value_counts().rename("N2 negatives").to_frame().to_html(classes="tbl")
        out["skymap"] = _skymap(s, run_dir)
    return out


def _skymap(s: pd.DataFrame, run_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = run_dir / "report" / "skymap.png"
    path.parent.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for split, c in (("train", "C0"), ("val", "C1"), ("test", "C2")):
        g = s[s.split == split]
        ax.scatter(g.ra, g.dec, s=3, c=c, label=f"{split} ({len(g)})")
    ax.set(xlabel="RA (deg)", ylabel="Dec (deg)", title="sample by spatial split (HEALPix cells)")
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return img(path, "sky map of the splits")


def _limitations(run_dir: Path, mans: dict, ev: dict, inj: dict, closure: dict) -> list[str]:
    out = []
    for s in STAGE_ORDER:
        if s not in mans and s not in ("report",):
            out.append(f"Stage '{s}' did not run in this run directory; its section is empty.")
    for s, m in mans.items():
        for g in m.gates:
            if g.status != "pass":
                out.append(f"{s}: gate '{g.name}' is {g.status.upper()} (value {g.value}) — {g.message}")
    if "sample" in mans and mans["sample"].counts.get("shortfall"):
        out.append(f"sample: {mans['sample'].counts['shortfall']} negatives short of the target ratio in thin strata (reported per stratum).")
    if "positives" in mans:
        c = mans["positives"].counts
        out.append(f"Label noise: {c.get('tier_B', 0)} of {c.get('positives', 0)} positives are Tier-B (probable) candidates, weighted {0.5}.")
    if "selection" in mans:
        c = mans["selection"].counts
        out.append(f"selection: {c.get('cells', 0) - c.get('cells_sufficient', 0)} of {c.get('cells', 0)} cells are insufficient (fewer than n_min injections).")
    if closure.get("available") is False:
        out.append("The closure test needs the synthetic sky's truth; it is not available on real data.")
    return out
