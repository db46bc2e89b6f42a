"""Random draws keyed by (seed, step, stream, global sample index) instead of by rank.

The MLM masks and VTM negatives of a sample must not depend on how the global batch is split over ranks
(or micro-batches), or a 2-rank step could not equal the 1-rank step on the same data. Every sample gets
its own generator seeded from its position in the global batch, so any split draws the same numbers.
"""
from __future__ import annotations

from typing import Sequence

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, step: int, stream: int, index: int) -> int:
    x = 0
    for part in (seed, step, stream, index):
        x = _splitmix64(x ^ (part & _MASK64))
    return x >> 1  # torch seeds must fit a signed 64-bit integer


def per_sample_uniform(seed: int, step: int, stream: int, indices: Sequence[int], n: int) -> torch.Tensor:
    """``[len(indices), n]`` float64 uniforms in [0, 1) on the CPU, row k drawn for global sample ``indices[k]``."""
    out = torch.empty(len(indices), n, dtype=torch.float64)
    gen = torch.Generator()
    for k, index in enumerate(indices):
        gen.manual_seed(sample_seed(seed, step, stream, int(index)))
        torch.rand(n, generator=gen, dtype=torch.float64, out=out[k])
    return out
