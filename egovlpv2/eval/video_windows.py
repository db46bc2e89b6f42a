"""Windows of frames over a whole video (or a time range of it), decoded in one streaming pass.

A ``WindowPlan`` lists, per window, the video times of its frames; how they are chosen is the preset's
(``feature_presets``). ``WindowSpec`` is the dense sampling: window k covers [start + k / rate,
start + (k + 1) / rate) seconds and holds ``frames_per_window`` frames at the centres of equal
sub-segments. Frames take the eval transform (short side 256, centre crop, resize). Only one batch of
windows is held in memory, so hour-long videos are fine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from egovlpv2.data.transforms import eval_transform

# A frame whose timestamp is at most this much after a wanted time still counts as "at" that time: frame
# times and wanted times are both rounded floats of the same rationals.
TIME_TOLERANCE_S = 1e-4


@dataclass(frozen=True)
class WindowPlan:
    frames_per_window: int
    frame_times: list[list[float]]  # per window, the video times (s) of its frames
    starts_s: list[float]  # per window, its start relative to the clip start
    frame_indices: Optional[list[list[int]]] = None  # per window, frame numbers on the sampling's frame grid

    @property
    def num_windows(self) -> int:
        return len(self.frame_times)


@dataclass(frozen=True)
class WindowSpec:
    frames_per_window: int
    windows_per_second: float = 1.875

    def frame_times(self, window: int, start: float) -> list[float]:
        span = 1.0 / self.windows_per_second
        step = span / self.frames_per_window
        return [start + window * span + (i + 0.5) * step for i in range(self.frames_per_window)]

    def plan(self, start: float, end: float) -> WindowPlan:
        n = count_windows(self, start, end)
        return WindowPlan(self.frames_per_window, [self.frame_times(k, start) for k in range(n)],
                          [k / self.windows_per_second for k in range(n)])


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    frame_count: int


def video_info(path: str | Path) -> VideoInfo:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            raise ValueError(f"{path}: the container reports no duration")
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        frames = stream.frames or round(duration * rate)
    return VideoInfo(duration, int(frames))


def count_windows(spec: WindowSpec, start: float, end: float) -> int:
    return max(1, math.ceil((end - start) * spec.windows_per_second - 1e-9))


def iter_windows(path: str | Path, plan: WindowPlan, img_size: int, resize: int = 256) -> Iterator[torch.Tensor]:
    """uint8 windows [frames_per_window, 3, S, S] of ``plan``, in order, from the video at ``path``.

    Each wanted time takes the last decoded frame at or before it (the first frame before the video starts);
    times past the last frame take the last frame, so every window is complete.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    wanted = [t for times in plan.frame_times for t in times]
    if not wanted:
        return
    per_window = plan.frames_per_window
    buffer: list[np.ndarray] = []  # frames of the window being filled
    filled = 0  # wanted times served so far
    previous = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = min(wanted)
        if first > 0:
            container.seek(int(first / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
            image = frame.to_ndarray(format="rgb24")
            while filled < len(wanted) and t > wanted[filled] + TIME_TOLERANCE_S:
                buffer.append(previous if previous is not None else image)
                filled += 1
                if len(buffer) == per_window:
                    yield eval_transform(np.stack(buffer), img_size, resize)
                    buffer = []
            previous = image
            if filled == len(wanted):
                break
    if previous is None:
        raise ValueError(f"{path}: no frame decodes")
    while filled < len(wanted):
        buffer.append(previous)
        filled += 1
        if len(buffer) == per_window:
            yield eval_transform(np.stack(buffer), img_size, resize)
            buffer = []
