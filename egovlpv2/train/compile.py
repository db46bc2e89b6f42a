"""``train.compile`` in a training run: a private compile cache and the compile time in the log.

Compilation is paid once per process, lazily: the first training step compiles the training graphs, the
first evaluation its ``no_grad`` graphs. Inductor loads its cache entries (FX graph and AOTAutograd) with
``pickle``, so the cache is trusted like code: it never lives in the run directory, which other people may
write to or hand around. It lives in a directory of this user's, ``$XDG_CACHE_HOME/egovlpv2/compile/<run>``
(``~/.cache`` without XDG_CACHE_HOME), created with mode 0700 and refused if someone else owns it or may
write to it; ``<run>`` is named after the run directory's absolute path, so a requeued SLURM job on the
same cluster finds the kernels its previous attempt compiled and only re-traces (see
benchmarks/RESULTS.md for the saving). An explicit ``TORCHINDUCTOR_CACHE_DIR`` wins.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from torch._dynamo.callback import callback_handler
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

from egovlpv2.paths import private_directory
from egovlpv2.model.compile import CompileMode

log = logging.getLogger(__name__)


def private_cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "egovlpv2" / "compile"


def run_cache_dir(output_dir: str | Path) -> Path:
    """This user's compile cache of the run in ``output_dir``: readable name plus a hash of the absolute path."""
    resolved = Path(output_dir).resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    return private_cache_root() / f"{resolved.name}-{digest}"


def use_private_compile_cache(output_dir: str | Path) -> str:
    """Point Inductor's cache at :func:`run_cache_dir` (an explicit TORCHINDUCTOR_CACHE_DIR wins).

    Inductor writes its default into the variable the first time it looks, so the default counts as unset.
    """
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        # What Inductor loads from there runs as code: the directory and its parents up to the cache root's.
        private = private_directory(run_cache_dir(output_dir), "compile cache", "remove it, or set "
                                    "TORCHINDUCTOR_CACHE_DIR to a directory of your own", private_cache_root().parent)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(private)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


def start_compile_clock(mode: CompileMode, output_dir: str | Path) -> Optional["CompileClock"]:
    """For a compiled run: the private cache set up and logged, and a clock of the compile time; else None."""
    if mode == CompileMode.OFF:
        return None
    log.info("train.compile=%s: compile cache %s", mode.value, use_private_compile_cache(output_dir))
    return CompileClock()


class CompileClock:
    """Wall time spent compiling (Dynamo tracing, AOTAutograd, Inductor, cache loads) and how many compiles,
    from torch's compile start/end callbacks. ``close()`` unregisters them."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.compiles = 0
        self._started: float | None = None
        self._reported = (0.0, 0)
        callback_handler.register_start_callback(self._start)
        callback_handler.register_end_callback(self._end)

    def _start(self, _args) -> None:
        self._started = time.perf_counter()

    def _end(self, _args) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.compiles += 1
            self._started = None

    def logged(self, fn: Callable, what: str) -> Callable:
        """``fn`` that, after each call that compiled something, logs how much and how long."""

        @functools.wraps(fn)
        def call(*args, **kwargs):
            out = fn(*args, **kwargs)
            seconds, compiles = self.seconds - self._reported[0], self.compiles - self._reported[1]
            if compiles:
                log.info("compile: %d graph compilations in %.1f s during %s (%.1f s in this process so far; "
                         "cache %s)", compiles, seconds, what, self.seconds, os.environ.get("TORCHINDUCTOR_CACHE_DIR"))
                self._reported = (self.seconds, self.compiles)
            return out
        return call

    def close(self) -> None:
        for callbacks, fn in ((callback_handler.start_callbacks, self._start),
                              (callback_handler.end_callbacks, self._end)):
            if fn in callbacks:
                callbacks.remove(fn)


def unique_graphs() -> int:
    """Dynamo's count of distinct graphs compiled in this process (a recompilation adds one)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
