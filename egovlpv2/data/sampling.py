"""Which frames of a clip to take: one per equal segment (random in training, the centre in eval)."""
from __future__ import annotations

import random


def segment_indices(num_frames: int, num_segments: int, train: bool, rng: random.Random | None = None) -> list[int]:
    """Frame indices in [0, num_frames): a random frame within each of ``num_segments`` equal segments
    (``train``) or each segment's centre. Short clips repeat frames rather than fail."""
    if num_frames <= 0:
        raise ValueError("a clip without frames")
    if train and rng is None:
        raise ValueError("training sampling needs an rng")
    step = num_frames / num_segments
    out = []
    for i in range(num_segments):
        lo = i * step
        pos = lo + (rng.random() * step if train else step / 2)
        out.append(min(num_frames - 1, max(0, int(pos))))
    return out
