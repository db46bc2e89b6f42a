"""Fixed-rate windows of frames over a whole video (or a time range of it), decoded in one streaming pass.

Window k covers [start + k / rate, start + (k + 1) / rate) seconds and holds `frames_per_window` frames at
the centres of equal sub-segments: 16-frame windows at 1.875 windows/s sample a 30 fps video at every
frame. Frames take the eval transform (short side 256, centre crop, resize). Only one batch of windows is
held in memory, so hour-long videos are fine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from egovlpv2.data.transforms import eval_transform


@dataclass(frozen=True)
class WindowSpec:
    frames_per_window: int
    windows_per_second: float = 1.875
    img_size: int = 224
    eval_resize: int = 256

    def frame_times(self, window: int, start: float) -> list[float]:
        span = 1.0 / self.windows_per_second
        step = span / self.frames_per_window
        return [start + window * span + (i + 0.5) * step for i in range(self.frames_per_window)]


def video_duration(path: str | Path) -> float:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1e6
    raise ValueError(f"{path}: the container reports no duration")


def count_windows(spec: WindowSpec, start: float, end: float) -> int:
    return max(1, math.ceil((end - start) * spec.windows_per_second - 1e-9))


def iter_windows(path: str | Path, spec: WindowSpec, start: float = 0.0, end: float | None = None,
                 ) -> Iterator[torch.Tensor]:
    """uint8 windows [frames_per_window, 3, S, S] in time order over [start, end) of the video at `path`.

    Each wanted time takes the last decoded frame at or before it (the first frame before the video starts);
    times past the last frame take the last frame, so every window is complete.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    end = video_duration(path) if end is None else end
    if end <= start:
        raise ValueError(f"{path}: empty time range [{start}, {end})")
    n = count_windows(spec, start, end)
    wanted = [t for k in range(n) for t in spec.frame_times(k, start)]
    buffer: list[np.ndarray] = []  # frames of the window being filled
    filled = 0  # wanted times served so far
    previous = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if start > 0:
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            image = frame.to_ndarray(format="rgb24")
            while filled < len(wanted) and t > wanted[filled]:
                buffer.append(previous if previous is not None else image)
                filled += 1
                if len(buffer) == spec.frames_per_window:
                    yield _window(buffer, spec)
                    buffer = []
            previous = image
            if filled == len(wanted):
                break
    if previous is None:
        raise ValueError(f"{path}: no frame decodes")
    while filled < len(wanted):
        buffer.append(previous)
        filled += 1
        if len(buffer) == spec.frames_per_window:
            yield _window(buffer, spec)
            buffer = []


def _window(frames: list[np.ndarray], spec: WindowSpec) -> torch.Tensor:
    return eval_transform(np.stack(frames), spec.img_size, spec.eval_resize)
