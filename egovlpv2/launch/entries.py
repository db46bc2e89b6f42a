"""What ``launch/submit.py`` can run: each entry names the function every task calls and how its
arguments give the run directory and the resolved config (printed by ``--dry-run``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Prepared:
    argv: list[str]  # the arguments every task passes to the entry point
    output_dir: Path  # the run directory
    resolved_config: str  # YAML of what will run ("" when the entry has no config)


@dataclass(frozen=True)
class Entry:
    target: str  # "package.module:function", called as function(argv) on every task
    prepare: Callable[[list[str], "Path | None"], Prepared]
    help: str


def _prepare_plain(argv: list[str], output_dir: Path | None) -> Prepared:
    """Entries without a recipe: the arguments go through unchanged; the run directory holds the logs."""
    if output_dir is None:
        raise ValueError("this entry needs --output-dir (where the job's logs and code snapshot go)")
    return Prepared(argv=list(argv), output_dir=Path(output_dir).absolute(), resolved_config="")


ENTRIES: dict[str, Entry] = {
    "check": Entry("egovlpv2.launch.check:main", _prepare_plain, "all-reduce across every task, then exit"),
    "eval": Entry("launch/evaluate.py:main", _prepare_plain, "launch/evaluate.py on every task"),
}
