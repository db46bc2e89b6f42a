"""Command-line entry points: ``python -m egovlpv2.cli.<name>``; the scripts in ``launch/`` and
``shard_tools/`` are thin wrappers over these modules.

This is the top layer: it may import any other part of the package, and nothing imports it.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from egovlpv2.errors import UserError


def run_cli(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Run ``main(argv)``; a :class:`UserError` becomes one ``error: ...`` line on stderr and exit status 2."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
