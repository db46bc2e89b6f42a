"""A regular install works away from the checkout: build a wheel, install it into a temporary target and,
from a directory outside the repository, use the shipped recipes and run the command lines."""
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from tests.helpers import REPO, liveness


# Runs in the installed package only; prints what the test checks.
PROBE = textwrap.dedent("""
    import json, sys
    from importlib.metadata import entry_points
    import torch
    import egovlpv2
    from egovlpv2.finetune.config import load_finetune_config
    from egovlpv2.recipes import recipe_names
    from egovlpv2.train.config import load_pretrain_config
    from egovlpv2.train.engine import load_ds_config

    report = {"package": egovlpv2.__file__, "recipes": {k: recipe_names(k) for k in
              ("model", "pretrain", "finetune", "deepspeed")}, "models": {}}
    with torch.device("meta"):  # the full structure of every recipe, without allocating the weights
        for name in report["recipes"]["model"]:
            report["models"][name] = sum(p.numel() for p in egovlpv2.create_model(name).parameters())
    report["pretrain"] = {n: load_pretrain_config(n).model.name for n in report["recipes"]["pretrain"]}
    report["finetune"] = {n: load_finetune_config(n).task for n in report["recipes"]["finetune"]}
    report["deepspeed"] = {n: load_ds_config(n)["zero_optimization"]["stage"] for n in report["recipes"]["deepspeed"]}
    report["scripts"] = {e.name: callable(e.load()) for e in entry_points(group="console_scripts")
                         if e.name.startswith("egovlpv2-")}
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(site folder holding only the installed wheel, its bin folder, an environment that sees only it)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy of what the build reads: a build leaves build/ behind, and never in the checkout
    shutil.copytree(REPO / "egovlpv2", source / "egovlpv2", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(REPO / name, source / name)
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=liveness(300), cwd=root)
    (wheel,) = wheels.glob("egovlpv2-*.whl")
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=liveness(300), cwd=root)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    outside = root / "elsewhere"
    outside.mkdir()
    return {"wheel": wheel, "site": site, "bin": site / "bin", "env": env, "cwd": outside}


def run(installed, *cmd, timeout=300):
    return subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=liveness(timeout),
                          cwd=installed["cwd"], env=installed["env"])


@pytest.mark.slow
def test_the_wheel_ships_every_recipe(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    shipped = {str(p.relative_to(REPO)) for p in (REPO / "egovlpv2" / "recipes").rglob("*") if p.suffix in (".yaml", ".json")}
    assert shipped and shipped <= names, sorted(shipped - names)


@pytest.mark.slow
def test_recipes_resolve_from_the_installed_package(installed):
    import json

    proc = run(installed, sys.executable, "-c", PROBE)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert Path(report["package"]).is_relative_to(installed["site"]), "the checkout was imported, not the install"
    assert set(report["models"]) == {"egovlpv2-base", "egovlpv2-base-smallproj", "egovlpv2-tiny"}
    assert report["models"]["egovlpv2-base"] > report["models"]["egovlpv2-base-smallproj"] > report["models"]["egovlpv2-tiny"]
    assert report["pretrain"] == {"demo": "egovlpv2-tiny", "egoclip": "egovlpv2-base"}
    assert report["finetune"] == {"charades_ego": "charades_ego", "epic_mir": "epic_mir"}
    assert report["deepspeed"] == {"zero2": 2, "zero2_offload": 2, "zero3": 3}
    assert set(report["scripts"]) >= {"egovlpv2-pretrain", "egovlpv2-evaluate", "egovlpv2-make-shards",
                                      "egovlpv2-submit", "egovlpv2-finetune", "egovlpv2-export"}
    assert all(report["scripts"].values())


@pytest.mark.slow
def test_command_lines_run_from_the_installed_package(installed):
    python = sys.executable
    for cmd, expected in (([installed["bin"] / "egovlpv2-pretrain", "--help"], "--deepspeed"),
                          ([python, "-m", "egovlpv2.cli.evaluate", "--help"], "--checkpoint"),
                          ([installed["bin"] / "egovlpv2-make-shards", "--help"], "--samples-per-shard")):
        proc = run(installed, *cmd)
        assert proc.returncode == 0 and expected in proc.stdout, (cmd, proc.stderr)
    # A real call: the shipped demo recipe resolves, and a bad key in it is one error line, exit status 2.
    proc = run(installed, installed["bin"] / "egovlpv2-pretrain", "--config", "demo", "train.no_such_key=1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "no_such_key" in proc.stderr and "Traceback" not in proc.stderr
