"""Layers import one way: a module never imports a package of a higher layer (docs/architecture.md)."""
import ast
import re
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


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``egovlpv2.a.b`` for ``egovlpv2/a/b.py`` (``egovlpv2.a`` for ``egovlpv2/a/__init__.py``)."""
    parts = ["egovlpv2", *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# A string that names a module or a function ("egovlpv2.cli.finetune", "egovlpv2.cli.finetune:parse_args", the
# leading part of f"egovlpv2.cli.{name}") is an import made later, by importlib or a pickle: it counts as one.
STRING_TARGET = re.compile(r"egovlpv2(\.\w+)+\.?(:\w+)?")


def imported_packages(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every ``egovlpv2.<package>`` a file imports, at module level or inside functions, absolutely or
    relatively (``from ..train import loop``), or names in a string target (``"egovlpv2.cli.submit:main"``)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{alias.name}" for alias in node.names if base == "egovlpv2"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and STRING_TARGET.fullmatch(node.value):
            names = [node.value.partition(":")[0]]
        else:
            continue
        found |= {pkg for pkg in map(top_package, names) if pkg is not None}
    return found


def layer_of(path: Path) -> int:
    """The layer of a module; the top-level ``egovlpv2/__init__.py`` (imported by every ``import egovlpv2.x``)
    belongs to the bottom one."""
    first = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    return 0 if first == "__init__" else LEVEL[first]


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in modules()} - {"__init__"}
    assert packages <= set(LEVEL), f"packages missing from the layer list: {sorted(packages - set(LEVEL))}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_of_a_higher_layer(path):
    own = layer_of(path)
    upward = sorted(pkg for pkg in imported_packages(path) if pkg in LEVEL and LEVEL[pkg] > own)
    assert not upward, f"egovlpv2/{path.relative_to(PACKAGE)} (layer {own}) imports higher layers: {upward}"


BACKWARD = {"backward", "grad"}  # tensor.backward(), torch.autograd.backward / .grad: a step strategy


def engine_uses(path: Path) -> list[str]:
    """What in a file imports DeepSpeed or runs a backward pass, read from its syntax tree."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "deepspeed"]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "deepspeed":
            found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "torch.autograd":
            found += [f"torch.autograd.{a.name}" for a in node.names if a.name in BACKWARD]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "backward":
            found.append(f"line {node.lineno}: .backward()")
        elif (isinstance(node, ast.Attribute) and node.attr in BACKWARD and isinstance(node.value, ast.Attribute)
              and node.value.attr == "autograd"):
            found.append(f"line {node.lineno}: autograd.{node.attr}")
    return found


def test_losses_do_not_drive_deepspeed():
    """The objective is pure: engines, optimiser steps and backward strategies belong to train/."""
    for path in sorted((PACKAGE / "losses").rglob("*.py")):
        assert not engine_uses(path), f"{path}: {engine_uses(path)} (a step strategy belongs to train/)"


def test_the_checker_sees_upward_and_relative_imports(tmp_path):
    pkg = tmp_path / "data"
    pkg.mkdir()
    bad = pkg / "bad.py"
    bad.write_text("def f():\n    from egovlpv2.train.loop import run_loop\n    import egovlpv2.cli\n"
                   "from ..eval import metrics\nfrom .. import finetune\nfrom . import stream\n")
    assert imported_packages(bad, root=tmp_path) == {"train", "cli", "eval", "finetune", "data"}


def test_the_checker_counts_string_targets_as_imports(tmp_path):
    pkg = tmp_path / "cluster"
    pkg.mkdir()
    bad = pkg / "entries.py"
    bad.write_text('"""Calls egovlpv2.model.vit for its patches (prose, not a target)."""\n'
                   'PARSE = "egovlpv2.cli.finetune:parse_args"\nLOOP = "egovlpv2.train.loop"\n'
                   'def target(name):\n    return f"egovlpv2.finetune.{name}:main"\n')
    assert imported_packages(bad, root=tmp_path) == {"cli", "train", "finetune"}
    own = LEVEL["cluster"]  # a string naming cli is an upward import from there
    assert {pkg for pkg in imported_packages(bad, root=tmp_path) if LEVEL[pkg] > own} == {"cli"}


def test_the_checker_sees_a_backward_however_it_is_written(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom torch.autograd import grad\nimport deepspeed.comm\n"
                   "def f(loss, x):\n    torch.autograd.backward(loss)\n    (loss * 2).backward()\n")
    expected = {"torch.autograd.grad", "deepspeed.comm", "line 5: autograd.backward", "line 6: .backward()"}
    assert expected <= set(engine_uses(bad)), engine_uses(bad)
    ok = tmp_path / "ok.py"
    ok.write_text("def f(loss):\n    return 'call .backward( later'\n")
    assert engine_uses(ok) == []
