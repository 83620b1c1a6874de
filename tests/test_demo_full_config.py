"""configs/demo-full.yaml is the demo's config plus the issue-20 experiments (ensemble, mining): nothing else
may drift between the two."""

from __future__ import annotations

from pathlib import Path

from lensaudit.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_full_is_the_demo_plus_ensemble_and_mining():
    demo = load_config(CONFIGS / "demo.yaml").model_dump()
    full = load_config(CONFIGS / "demo-full.yaml").model_dump()
    for d in (demo, full):
        d.pop("run")
    assert full.pop("ensemble")["enabled"] and full.pop("mine")["rounds"] >= 1
    demo.pop("ensemble"), demo.pop("mine")
    assert full == demo
    d = load_config(CONFIGS / "demo.yaml")
    assert not d.ensemble.enabled and d.mine.rounds == 0  # the 15-minute demo runs neither
