"""``train.compile`` in a training run: the compile cache in the run directory and the compile time in the log.

Compilation is paid once per process, lazily: the first training step compiles the training graphs, the
first evaluation its ``no_grad`` graphs. Inductor's caches (FX graph and AOTAutograd) live in
``<output_dir>/compile_cache`` unless ``TORCHINDUCTOR_CACHE_DIR`` is set, so a requeued SLURM job finds
the kernels its previous attempt compiled and only re-traces (see benchmarks/RESULTS.md for the saving).
"""
from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Callable

import torch
from torch._dynamo.callback import callback_handler
from torch._inductor.runtime.cache_dir_utils import default_cache_dir

log = logging.getLogger(__name__)

CACHE_SUBDIR = "compile_cache"


def use_run_compile_cache(output_dir: str | Path) -> str:
    """Point Inductor's cache at ``<output_dir>/compile_cache`` (an explicit TORCHINDUCTOR_CACHE_DIR wins).

    Inductor writes its default into the variable the first time it looks, so the default counts as unset.
    """
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str((Path(output_dir) / CACHE_SUBDIR).resolve())
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


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
