"""Every command line the README shows goes through its real parser, so the guide cannot drift from the code:
its flags exist, its sub-options exist, and the recipes and DeepSpeed configs it names resolve.

A README command may use the guide's shorthand: ``...`` (more arguments), ``[--opt value]`` (optional)
and ``a|b`` (alternatives, the first is taken).
"""
import argparse
import importlib
import re
import shlex

import pytest

from tests.helpers import REPO

SCRIPTS = {  # the checkout's scripts and the console scripts -> the module behind them
    **{f"launch/{n}.py": n for n in ("pretrain", "evaluate", "export", "finetune", "extract_features", "submit", "demo")},
    **{f"shard_tools/{n}.py": n for n in ("make_synthetic", "make_shards", "inspect_shards")},
}
CONSOLE = {f"egovlpv2-{n.replace('_', '-')}": n for n in SCRIPTS.values()}
LAUNCHERS = {"deepspeed", "torchrun", "srun"}  # their own options come before the program
SUBMIT_ENTRIES = {"pretrain": "pretrain", "finetune": "finetune", "features": "extract_features",
                  "eval": "evaluate", "shards": "make_shards", "check": None}
NOT_OURS = {"pip", "export", "tensorboard", "scancel", "sacct", "bash", "rm", "cd"}


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks, continuation lines joined, comments dropped."""
    out, pending, inside = [], "", False
    for line in (REPO / "README.md").read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            inside = stripped == "```bash" and not inside
            pending = ""
            continue
        if not inside:
            continue
        pending += " " + stripped
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        words = shlex.split(pending, comments=True)
        pending = ""
        if words:
            out.append(" ".join(shlex.quote(w) for w in words))
    return out


def _expand_shorthand(words: list[str]) -> list[str]:
    out = []
    for w in words:
        if w == "...":
            continue
        w = w.strip("[]") if (w.startswith("[") or w.endswith("]")) else w
        if "|" in w and not w.startswith("-"):
            w = w.split("|")[0]
        out.append(w)
    return out


def _program(words: list[str]) -> tuple[str | None, list[str]]:
    """The module of ours a command runs and its arguments, or (None, []) for another program."""
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # environment assignments
        words = words[1:]
    if not words or words[0] in NOT_OURS:
        return None, []
    if words[0] in CONSOLE:
        return CONSOLE[words[0]], words[1:]
    if words[0] in LAUNCHERS:
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            if rest[0] in ("--module", "-m"):
                return rest[1].rsplit(".", 1)[-1], rest[2:]
            rest = rest[2:] if "=" not in rest[0] else rest[1:]
        return _program(rest)
    if words[0] in ("python", "python3"):
        if words[1:3] == ["-m", "pytest"]:
            return None, []
        if words[1] == "-m":
            return words[2].rsplit(".", 1)[-1], words[3:]
        return SCRIPTS.get(words[1], f"unknown script {words[1]}"), words[2:]
    if words[0] in SCRIPTS:
        return SCRIPTS[words[0]], words[1:]
    return f"unknown program {words[0]}", []


class Parsed(Exception):
    def __init__(self, namespace, extras):
        super().__init__()
        self.namespace, self.extras = namespace, extras


@pytest.fixture
def parse_only(monkeypatch):
    """Make every parser stop its program right after parsing, handing back what it parsed. For a command
    that ends in ``...`` (the guide leaves out arguments) required options may be missing."""
    original = argparse.ArgumentParser.parse_known_args
    partial = {"on": False}

    def known(self, args, namespace):
        if partial["on"]:
            for action in self._actions:
                action.required = False
        return original(self, args, namespace)

    def parse_args(self, args=None, namespace=None):
        ns, extras = known(self, args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise Parsed(ns, [])

    def parse_known_args(self, args=None, namespace=None):
        raise Parsed(*known(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_args)
    return partial


def _parse(module: str, argv: list[str]) -> Parsed:
    main = importlib.import_module(f"egovlpv2.cli.{module}").main
    try:
        main(argv)
    except Parsed as parsed:
        return parsed
    except SystemExit as exc:
        pytest.fail(f"egovlpv2.cli.{module} rejected {argv}: exit {exc.code}")
    pytest.fail(f"egovlpv2.cli.{module} ran without parsing its arguments")


def _check_recipes(module: str, ns) -> None:
    """The recipe and DeepSpeed config a command names resolve, and its key=value overrides exist."""
    from egovlpv2.recipes import resolve_recipe

    ds = getattr(ns, "ds_config", None) or getattr(ns, "deepspeed", None)
    if ds:
        assert resolve_recipe("deepspeed", ds).is_file(), ds
    if module == "pretrain":
        from egovlpv2.train.config import load_pretrain_config

        load_pretrain_config(ns.config, ns.overrides)
    elif module == "finetune":
        from egovlpv2.finetune.config import load_finetune_config

        load_finetune_config(ns.config or ns.task, ns.overrides)


COMMANDS = readme_commands()
OURS = [(c, *_program(_expand_shorthand(shlex.split(c)))) for c in COMMANDS]
OURS = [(c, m, a) for c, m, a in OURS if m is not None]


def test_the_readme_shows_commands_of_every_kind():
    modules = {m for _, m, _ in OURS}
    assert {"pretrain", "submit", "evaluate", "finetune", "extract_features", "make_shards"} <= modules, modules


@pytest.mark.parametrize("command,module,argv", OURS, ids=[c[:70] for c, _, _ in OURS])
def test_readme_command_parses(parse_only, command, module, argv):
    assert module in SCRIPTS.values(), f"{command}: {module}"
    parse_only["on"] = "..." in shlex.split(command)
    parsed = _parse(module, argv)
    if module == "submit":
        entry = SUBMIT_ENTRIES[parsed.namespace.entry]
        if entry is None:
            assert not parsed.extras, f"--entry {parsed.namespace.entry} takes no arguments: {parsed.extras}"
            return
        module, parsed = entry, _parse(entry, parsed.extras)
    else:
        assert not parsed.extras, parsed.extras
    _check_recipes(module, parsed.namespace)
