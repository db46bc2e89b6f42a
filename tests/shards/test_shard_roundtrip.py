"""Videos whose pixels carry the frame number -> shards -> decoded frames: the right source frames."""
import math
import random

import pytest

from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.data.pipeline import frames_member
from egovlpv2.data.sampling import segment_indices
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.data.video_io import FrameDecoder
from tests.helpers import egoclip_row, read_number, write_numbered_video


def _shard(tmp_path, rows, chunk_s=600.0, **encode):
    write_egoclip(tmp_path / "e.csv", rows)
    manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(tmp_path / "e.csv"), videos=str(tmp_path / "v"),
                                        out=str(tmp_path / "s"), workers=1, chunk_seconds=chunk_s, progress=False,
                                        encode=EncodeOptions(short_side=0, **encode)))
    assert ok and not manifest["failures"], manifest["failures"]
    samples = {}
    for shard in manifest["shards"]:
        for sample in read_tar(str(tmp_path / "s" / shard["name"])):
            samples[sample["__key__"]] = (parse_meta(sample), sample)
    return samples


def _expected(fps: float, start: float, end: float) -> list[int]:
    """Source frame numbers whose timestamps n / fps lie in [start, end)."""
    return [n for n in range(math.floor(start * fps) - 1, math.ceil(end * fps) + 1) if start <= n / fps < end]


@pytest.mark.parametrize("fps", [25.0, 30000 / 1001])
@pytest.mark.parametrize("backend", ["torchcodec", "decord", "pyav"])
def test_clip_frames_are_the_source_frames_at_their_timestamps(tmp_path, fps, backend):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "vid.mp4", 120, fps)
    samples = _shard(tmp_path, [egoclip_row(0, "vid", 1.3, 2.1, dur=4.0), egoclip_row(1, "vid", 0.0, 0.5, dur=4.0)])
    decoder = FrameDecoder(backend)
    for key, (start, end) in {"vid_0": (1.3, 2.1), "vid_1": (0.0, 0.5)}.items():
        meta, sample = samples[key]
        kind, data, count = frames_member(sample, meta)
        timing = meta["clips"]["mp4"]
        expected = _expected(fps, start, end)
        assert count == len(expected) and timing["fps"] == pytest.approx(fps)
        assert timing["t0"] == pytest.approx(expected[0] / fps, abs=1e-4)
        every = decoder(kind, data, lambda n: list(range(n)), count)
        assert [read_number(f) for f in every] == expected
        # The loader's sampling: frame i is the source frame at time t0 + i / fps.
        picks = segment_indices(count, 4, True, random.Random(0))
        got = decoder(kind, data, lambda n: segment_indices(n, 4, True, random.Random(0)), count)
        for i, frame in zip(picks, got):
            assert read_number(frame) == round((timing["t0"] + i / timing["fps"]) * fps)


def test_clip_spanning_two_chunks(tmp_path):
    fps, chunk_s = 25.0, 2.0
    (tmp_path / "v" / "vid").mkdir(parents=True)
    for k in range(3):  # chunk k holds frames 50k .. 50k + 49 of the whole video
        write_numbered_video(tmp_path / "v" / "vid" / f"{k}.mp4", 50, fps, first=50 * k)
    samples = _shard(tmp_path, [egoclip_row(0, "vid", 1.5, 2.5, dur=6.0)], chunk_s=chunk_s)
    meta, sample = samples["vid_0"]
    kind, data, count = frames_member(sample, meta)
    frames = FrameDecoder("decord")(kind, data, lambda n: list(range(n)), count)
    assert [read_number(f) for f in frames] == _expected(fps, 1.5, 2.5) == list(range(38, 63))


def test_jpeg_frames_option_records_their_timestamps(tmp_path):
    fps = 25.0
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "vid.mp4", 100, fps)
    samples = _shard(tmp_path, [egoclip_row(0, "vid", 1.0, 2.0, dur=4.0)], frame_format="jpgs", jpeg_frames=5)
    meta, sample = samples["vid_0"]
    assert set(sample) >= {"jpgs", "json"} and "mp4" not in sample
    kind, data, count = frames_member(sample, meta)
    frames = FrameDecoder()(kind, data, lambda n: list(range(n)), count)
    times = meta["clips"]["jpgs"]["frame_times"]
    assert count == 5 and len(frames) == 5
    assert [read_number(f) for f in frames] == [round(t * fps) for t in times]
    assert all(1.0 <= t < 2.0 for t in times)


def test_fps_cap_keeps_real_timestamps(tmp_path):
    fps = 30000 / 1001
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "vid.mp4", 90, fps)
    samples = _shard(tmp_path, [egoclip_row(0, "vid", 0.5, 2.5, dur=3.0)], fps_cap=10.0)
    meta, sample = samples["vid_0"]
    kind, data, count = frames_member(sample, meta)
    numbers = [read_number(f) for f in FrameDecoder()(kind, data, lambda n: list(range(n)), count)]
    assert meta["clips"]["mp4"]["fps"] == pytest.approx(10.0) and count == len(numbers) == 20
    times = [n / fps for n in numbers]
    assert all(abs(t - (times[0] + i / 10.0)) < 1 / fps for i, t in enumerate(times))


def test_consecutive_and_overlapping_clips_of_one_file(tmp_path):
    """The shard writer decodes forward across nearby clips and keeps recent frames for overlaps."""
    fps = 25.0
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "vid.mp4", 400, fps)
    spans = [(1.0, 2.0), (1.5, 2.5), (2.3, 2.9), (6.0, 6.6), (15.0, 15.5), (3.0, 3.4)]
    samples = _shard(tmp_path, [egoclip_row(i, "vid", s, e, dur=16.0) for i, (s, e) in enumerate(spans)])
    for i, (start, end) in enumerate(spans):
        meta, sample = samples[f"vid_{i}"]
        kind, data, count = frames_member(sample, meta)
        numbers = [read_number(f) for f in FrameDecoder()(kind, data, lambda n: list(range(n)), count)]
        assert numbers == _expected(fps, start, end), (start, end)
