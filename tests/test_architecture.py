"""The architecture stays as docs/architecture.md draws it: layered imports, one artifact channel, figures in
one place, and a map whose every path exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lensaudit"
DOCS = Path(__file__).resolve().parents[1] / "docs"

BASE = {"run", "config", "errors", "utils", "gates", "engine", "data", "__init__"}
DOMAIN = {
    "catalog",
    "sky",
    "survey",
    "stamps",
    "train",
    "audit",
    "lensing",
    "selection",
    "report",
    "validation",
}
LAYER = {**dict.fromkeys(BASE, 0), **dict.fromkeys(DOMAIN, 1), "stages": 2, "cli": 3}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out.append((name[: -len(".__init__")] if name.endswith(".__init__") else name, p))
    return out


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the package
                base = (
                    module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")
                )
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return [m for m in found if m == "lensaudit" or m.startswith("lensaudit.")]


def test_every_room_has_a_layer():
    rooms = {_room(m) for m, _ in _modules()}
    assert rooms <= set(LAYER), f"rooms without a layer: {rooms - set(LAYER)}"


def test_no_module_imports_from_a_higher_layer():
    bad = []
    for module, path in _modules():
        own = LAYER[_room(module)]
        for imp in _imports(path, module):
            if LAYER[_room(imp)] > own:
                bad.append(f"{module} (layer {own}) imports {imp} (layer {LAYER[_room(imp)]})")
    assert not bad, "\n".join(bad)


def test_no_dynamic_imports_and_no_hand_built_run_paths():
    bad = []
    for module, path in _modules():
        text = path.read_text()
        if "__import__" in text or "import_module" in text:
            bad.append(f"{module}: dynamic import")
        if _room(module) != "run" and re.search(r"run_dir\s*/", text):
            bad.append(f"{module}: a `run_dir /` path outside lensaudit.run")
    assert not bad, "\n".join(bad)


def test_matplotlib_backend_is_chosen_once():
    users = [m for m, p in _modules() if "matplotlib.use(" in p.read_text()]
    assert users == ["lensaudit.report.figures"], users


def test_stages_touch_files_only_through_the_contract():
    bad = []
    for module, path in _modules():
        if _room(module) != "stages":
            continue
        text = path.read_text()
        for pattern in (
            r"\.run_dir\b",
            r"stage_dir\(",
            r"\.require\(",
            r'/ "[^"]+\.(parquet|json|png|zarr|fits)"',
        ):
            if re.search(pattern, text):
                bad.append(f"{module}: {pattern}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", ["architecture.md"])
def test_every_path_in_the_docs_map_exists(doc):
    text = (DOCS / doc).read_text()
    repo = SRC.parents[1]
    paths = set(re.findall(r"`((?:src|tests|docs|configs|benchmarks)/[\w./-]+|lensaudit/[\w./-]+)`", text))
    assert paths, "the map names no paths"
    missing = []
    for p in paths:
        cand = repo / p if not p.startswith("lensaudit/") else SRC.parent / p
        if not cand.exists():
            missing.append(p)
    assert not missing, f"{doc} names paths that do not exist: {sorted(missing)}"
