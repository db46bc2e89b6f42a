"""The released-feature presets: windows and frames against an independent computation from docs/features.md,
window counts against the released EgoNLQ feature_shapes.json, and the dimensions of the released files."""
import math
from fractions import Fraction

import numpy as np
import pytest

from egovlpv2.errors import UsageError
from egovlpv2.eval.feature_presets import PRESETS, resolve_preset, window_plan
from egovlpv2.eval.video_windows import iter_windows, video_info
from egovlpv2.model.config import resolve_model_config
from egovlpv2.shards.synthetic import write_video

FPS = 30
FRAMES = 256  # frame n shows (16 * (n % 16) + 8, 16 * (n // 16) + 8, 128)


def _numbered_video(path):
    frames = []
    for n in range(FRAMES):
        image = np.empty((48, 48, 3), np.uint8)
        image[..., 0], image[..., 1], image[..., 2] = 16 * (n % 16) + 8, 16 * (n // 16) + 8, 128
        frames.append(image)
    write_video(path, frames, FPS, gop=1, crf=0)


def _frame_numbers(window) -> list[int]:
    red, green = (window[:, c].float().mean(dim=(1, 2)) for c in (0, 1))
    return [int(round((float(g) - 8) / 16)) * 16 + int(round((float(r) - 8) / 16)) for r, g in zip(red, green)]


def _documented_windows(start: str, end: str, frames: int, frame_count: int):
    """docs/features.md, in exact arithmetic: N = floor(D * 1.87 * F + 1) segments of [30 s0, min(n, 30 s1)],
    bounds b_j = floor(30 s0 + j (hi - lo) / N), frame max(0, (b_j + b_{j+1} - 1) // 2), windows of F consecutive
    frames (the last N mod F frames dropped); a window starts at its first bound / 30 - s0."""
    s0, s1 = Fraction(start), Fraction(end)
    segments = math.floor((s1 - s0) * Fraction("1.87") * frames + 1)
    lo, hi = 30 * s0, min(Fraction(frame_count), 30 * s1)
    bounds = [math.floor(lo + j * (hi - lo) / segments) for j in range(segments + 1)]
    picked = [max(0, (bounds[j] + bounds[j + 1] - 1) // 2) for j in range(segments)]
    count = segments // frames
    return ([picked[k * frames:(k + 1) * frames] for k in range(count)],
            [float(Fraction(bounds[k * frames], 30) - s0) for k in range(count)])


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    path = tmp_path_factory.mktemp("numbered") / "v.mp4"
    _numbered_video(path)
    return path


@pytest.mark.parametrize("name", ["egonlq", "egomq"])
@pytest.mark.parametrize("start,end", [("1.3", "6.55"), ("0", "8.5333")])  # a clip in a video; the whole video
def test_windows_and_frames_equal_the_documented_sampling(numbered, name, start, end):
    preset = PRESETS[name]
    info = video_info(numbered)
    assert info.frame_count == FRAMES
    plan = window_plan(preset, float(start), float(end), info.frame_count)
    indices, starts = _documented_windows(start, end, preset.frames_per_window, info.frame_count)
    assert plan.frame_indices == indices and len(indices) >= 8
    assert plan.starts_s == pytest.approx(starts, abs=1e-9)
    decoded = [_frame_numbers(w) for w in iter_windows(numbered, plan, img_size=32)]
    assert decoded == indices, "each window decodes the frames its indices name"


# Clips of nlq_val.json (video_start_sec, video_end_sec) and their entries in the released
# EgoNLQ/feature_shapes.json: 897 windows for an 8-minute clip, 840 for the 449.2 s one.
RELEASED_NLQ_SHAPES = [
    ("93231c7e-1cf4-4a20-b1f8-9cc9428915b2", 630.0, 1110.0366739908854, 897),
    ("93df179b-2bde-44e2-b0ea-e9c2c046dd3e", 1170.0210286, 1619.2210286, 840),
    ("9ab5fd9f-77e4-4438-a546-a4b6ed889f1a", 2609.9933333333333, 3089.9933333333333, 897),
    ("39ec61c9-8725-47dc-8a18-f00e27b8ab2c", 2159.9933333333333, 2639.9933333333333, 897),
]


@pytest.mark.parametrize("name", ["egonlq", "egomq"])
def test_window_counts_equal_the_released_feature_shapes(name):
    for clip, start, end, released in RELEASED_NLQ_SHAPES:
        plan = window_plan(PRESETS[name], start, end, frame_count=10 ** 6)
        assert plan.num_windows == released, clip
    # the SlowFast rate (30 / 16 windows per second) would not give these counts
    assert math.floor(449.2 * 1.875 * 4 + 1) // 4 != 840


def test_feature_dims_equal_the_released_files():
    base, small = resolve_model_config("egovlpv2-base"), resolve_model_config("egovlpv2-base-smallproj")
    assert PRESETS["egonlq"].feature_dim(base) == 768  # VSLNet --video_feature_dim 768
    assert PRESETS["egomq"].feature_dim(base) == 4096  # VSGN INPUT_DIM=4096
    assert PRESETS["egomq"].feature_dim(small) == 256
    assert PRESETS["egonlq"].text_max_len == 30 and PRESETS["egonlq"].max_pos_len == 256


def test_only_dense_takes_a_rate_and_a_frame_count():
    dense = resolve_preset("dense", 4.0, 8)
    assert (dense.windows_per_second, dense.frames_per_window, dense.sampling) == (4.0, 8, "centres")
    plan = window_plan(dense, 0.0, 1.0, frame_count=30)
    assert plan.num_windows == 4 and plan.starts_s == [0.0, 0.25, 0.5, 0.75]
    assert plan.frame_times[1] == pytest.approx([0.25 + (i + 0.5) / 32 for i in range(8)])
    with pytest.raises(UsageError, match="--preset dense"):
        resolve_preset("egomq", frames_per_window=4)
    with pytest.raises(UsageError, match="unknown preset"):
        resolve_preset("egovlp")
