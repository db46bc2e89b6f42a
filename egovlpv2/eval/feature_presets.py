"""The feature sets EgoVLPv2 released, as presets, and the frame sampling each of them used.

Every value comes from the official code (facebookresearch/EgoVLPv2); docs/features.md gives file and
line for each, and says where that code is ambiguous and what we chose.

- ``egonlq``: the EgoNLQ (VSLNet) features. 4 frames per window (EgoNLQ/configs/nlq.json), the video's
  fused CLS after the final norm, 768 wide, with each query as the text; the query's dual-mode token
  states (RoBERTa's last layer, no projection) beside it.
- ``egomq``: the EgoMQ (VSGN) features. 16 frames per window (EgoVLPv2/configs/eval/mq.json), the dual
  video embedding through the projection, not normalised: 4096 wide with EgoVLPv2.pth, 256 with the
  small projection.
- ``dense``: any video collection, ``windows_per_second`` windows of ``frames_per_window`` frames, the
  EgoMQ output.

The released sampling (``official_segments``): a clip of D seconds is cut into
N = int(D * 1.87 * F + 1) equal segments of its frame range on a 30 fps grid, the middle frame of each is
taken, and the first (N // F) * F frames form N // F windows of F consecutive frames.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional

import numpy as np

from egovlpv2.errors import UsageError
from egovlpv2.eval.video_windows import WindowPlan, WindowSpec
from egovlpv2.model.heads import PROJECTION_DIMS

# "fps = 1.87" in the official loaders: windows per second (the SlowFast features use 30 / 16 = 1.875).
OFFICIAL_WINDOWS_PER_SECOND = 1.87
# The official loaders turn seconds into frame indices with "* 30" whatever the video's rate.
OFFICIAL_FRAME_GRID_FPS = 30.0

Sampling = Literal["official_segments", "centres"]
Output = Literal["fused_cls", "dual_projection"]


@dataclass(frozen=True)
class FeaturePreset:
    name: str
    frames_per_window: int
    windows_per_second: float
    sampling: Sampling  # "official_segments" (the release) or "centres" (dense: centres of equal sub-windows)
    output: Output
    resize: int = 256  # short side, then a centre crop of resize x resize, then the model's input size
    layout: Literal["per_clip", "per_query"] = "per_clip"
    text_max_len: int = 30  # EgoNLQ: queries padded to this many tokens
    max_pos_len: int = 256  # EgoNLQ: the head's --max_pos_len, which the stored s_ind / e_ind assume

    @property
    def needs_queries(self) -> bool:
        return self.output == "fused_cls"

    def feature_dim(self, model_cfg) -> int:
        """Width of one window's feature for a model of ``model_cfg`` (768 / 4096 / 256 for the releases)."""
        return model_cfg.video.dim if self.output == "fused_cls" else PROJECTION_DIMS[model_cfg.projection]


PRESETS: dict[str, FeaturePreset] = {
    "egonlq": FeaturePreset("egonlq", 4, OFFICIAL_WINDOWS_PER_SECOND, "official_segments", "fused_cls",
                            layout="per_query"),
    "egomq": FeaturePreset("egomq", 16, OFFICIAL_WINDOWS_PER_SECOND, "official_segments", "dual_projection"),
    "dense": FeaturePreset("dense", 16, 1.875, "centres", "dual_projection"),
}


def resolve_preset(name: str, windows_per_second: Optional[float] = None,
                   frames_per_window: Optional[int] = None) -> FeaturePreset:
    """The preset ``name``; only ``dense`` takes a rate and a frame count, the released ones are fixed."""
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r}; one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    if name != "dense":
        if windows_per_second is not None or frames_per_window is not None:
            raise UsageError(f"preset {name} fixes the windows and frames of the released features; "
                             f"--windows-per-second / --frames are for --preset dense")
        return preset
    if windows_per_second is not None and windows_per_second <= 0:
        raise UsageError(f"--windows-per-second must be > 0, got {windows_per_second}")
    if frames_per_window is not None and frames_per_window < 1:
        raise UsageError(f"--frames must be >= 1, got {frames_per_window}")
    return replace(preset, windows_per_second=windows_per_second or preset.windows_per_second,
                   frames_per_window=frames_per_window or preset.frames_per_window)


def official_segments(start_s: float, end_s: float, frame_count: int, frames_per_window: int,
                      windows_per_second: float = OFFICIAL_WINDOWS_PER_SECOND,
                      grid_fps: float = OFFICIAL_FRAME_GRID_FPS) -> tuple[np.ndarray, np.ndarray]:
    """The released windows over [start_s, end_s] of a video of ``frame_count`` frames, with the same float
    operations as the official loader: (frame indices on the ``grid_fps`` grid ``[W, frames_per_window]``,
    the first frame of each window's first segment ``[W]``)."""
    segments = int((end_s - start_s) * windows_per_second * frames_per_window + 1)
    low, high = max(0, start_s * grid_fps), min(frame_count, end_s * grid_fps)
    bounds = np.linspace(start=low, stop=high, num=segments + 1).astype(int)
    # An empty segment (equal bounds b, b) takes frame b - 1; at b = 0 that is -1, which decord reads as the
    # video's last frame. We take frame 0 there (docs/features.md, "Where the official code is ambiguous").
    middles = np.maximum(0, (bounds[:-1] + bounds[1:] - 1) // 2)
    windows = len(middles) // frames_per_window
    return (middles[:windows * frames_per_window].reshape(windows, frames_per_window),
            bounds[:windows * frames_per_window:frames_per_window])


def window_plan(preset: FeaturePreset, start_s: float, end_s: float, frame_count: int) -> WindowPlan:
    """The windows ``preset`` takes over [start_s, end_s] of a video of ``frame_count`` frames."""
    if preset.sampling == "centres":
        return WindowSpec(preset.frames_per_window, preset.windows_per_second).plan(start_s, end_s)
    indices, firsts = official_segments(start_s, end_s, frame_count, preset.frames_per_window,
                                        preset.windows_per_second)
    # Frame i of the official grid is the frame shown at i / 30 s (the same frame on a 30 fps video).
    grid = OFFICIAL_FRAME_GRID_FPS
    return WindowPlan(preset.frames_per_window, [[i / grid for i in row] for row in indices.tolist()],
                      [first / grid - start_s for first in firsts.tolist()], indices.tolist())
