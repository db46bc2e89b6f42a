"""Layers import one way: a module never imports a package of a higher layer (docs/architecture.md)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "egovlpv2"
# Lowest first; the packages of one layer may import each other and anything below.
LAYERS = [
    {"config", "errors", "fileio", "paths", "safe_pickle", "storage", "recipes", "rng", "model", "dist"},
    {"losses", "data", "shards"},
    {"eval"},
    {"train"},
    {"finetune"},
    {"cluster"},
    {"cli"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def top_package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "egovlpv2" and len(parts) > 1 else None


def imported_packages(path: Path) -> set[str]:
    """Every ``egovlpv2.<package>`` a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names if node.module == "egovlpv2"]
        else:
            continue
        found |= {pkg for pkg in map(top_package, names) if pkg is not None}
    return found


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "__init__.py")


def test_every_package_has_a_layer():
    packages = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in modules()}
    assert packages <= set(LEVEL), f"packages missing from the layer list: {sorted(packages - set(LEVEL))}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_of_a_higher_layer(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    upward = sorted(pkg for pkg in imported_packages(path) if pkg in LEVEL and LEVEL[pkg] > LEVEL[own])
    assert not upward, f"egovlpv2/{path.relative_to(PACKAGE)} (layer of {own}) imports higher layers: {upward}"


def test_losses_do_not_drive_deepspeed():
    """The objective is pure: engines, optimiser steps and backward strategies belong to train/."""
    for path in sorted((PACKAGE / "losses").rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        imports = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imports |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(m == "deepspeed" or m.startswith("deepspeed.") for m in imports), path
        assert ".backward(" not in text, f"{path} runs backward: that is a step strategy (train/)"


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from egovlpv2.train.loop import run_loop\n    import egovlpv2.cli\n")
    assert imported_packages(bad) == {"train", "cli"}
