"""The decode backends: the same frames at the same indices from each, clamping, time bounds and fallback."""
import time
from fractions import Fraction

import av
import numpy as np
import pytest

from egovlpv2.data import video_io
from egovlpv2.data.video_io import AUTO_ORDER, FrameDecoder, SampleError, backend_chain
from egovlpv2.errors import UserError
from tests.helpers import liveness, numbered_frame, read_number, write_numbered_video

BACKENDS = ("torchcodec", "decord", "pyav")


def _write_clip(path, width: int, height: int, durations: list[int], bframes: int, gop: int,
                pix_fmt: str = "yuv420p") -> None:
    """An H.264 clip whose frame i shows i in its top rows above noise (which any misplaced or wrongly converted
    pixel changes) and lasts ``durations[i]`` ticks of 1/90000 s (unequal durations: a variable frame rate)."""
    rng = np.random.default_rng(width * height)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = Fraction(1, 90000)
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "veryfast", "crf": "18", "x264-params": f"bframes={bframes}"}
        pts = 0
        for i, duration in enumerate(durations):
            image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            image[:24, :96] = numbered_frame(i, 24, 96)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 90000)
            pts += duration
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _reference(data: bytes) -> np.ndarray:
    """Every frame, decoded in one pass and converted by libswscale, in presentation order."""
    import io

    with av.open(io.BytesIO(data)) as container:
        frames = sorted(container.decode(video=0), key=lambda f: f.pts)
        return np.stack([f.to_ndarray(format="rgb24") for f in frames])


CLIPS = {
    # B-frames (3, pyramid) in GOPs of 12: decode order differs from presentation order.
    "bframes": dict(width=112, height=64, durations=[3000] * 40, bframes=3, gop=12),
    # Neither dimension a multiple of 16 nor the row 32-byte aligned (torchcodec then converts by filtergraph).
    "odd_size": dict(width=98, height=58, durations=[3000] * 30, bframes=2, gop=8),
    "odd_size_444": dict(width=97, height=61, durations=[3000] * 20, bframes=2, gop=8, pix_fmt="yuv444p"),
    # Frames of 1/45 s and 1/10 s: the frame index cannot be derived from a timestamp and the average rate.
    "variable_rate": dict(width=112, height=64, durations=[2000, 2000, 2000, 9000] * 10, bframes=3, gop=12),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    out = {}
    for name, spec in CLIPS.items():
        _write_clip(root / f"{name}.mp4", **spec)
        out[name] = (root / f"{name}.mp4").read_bytes()
    return out


@pytest.mark.parametrize("name", list(CLIPS))
def test_every_backend_returns_the_same_frames_at_the_same_indices(clips, name):
    data = clips[name]
    reference = _reference(data)
    count = len(reference)
    assert count == len(CLIPS[name]["durations"])
    picks = [[0, 5, 11, 12, 13, count - 1],  # across GOP boundaries
             [count - 1, 0, 0, 7],           # unsorted, repeated
             list(range(count))]
    for backend in BACKENDS:
        decoder = FrameDecoder(backend)
        for wanted in picks:
            frames = decoder("mp4", data, lambda n: wanted, count)
            assert [read_number(f[:24, :96]) for f in frames] == wanted, (backend, wanted)
            # Bit-identical: every backend converts YUV to RGB with libswscale's default (no tolerance needed).
            assert np.array_equal(frames, reference[wanted]), (backend, wanted)


@pytest.mark.parametrize("backend", BACKENDS)
def test_indices_are_clamped_to_the_frames_that_decode(clips, backend):
    """A clip overhanging its video's end records more frames than its stream holds (and a short record wins)."""
    data = clips["bframes"]
    decoder = FrameDecoder(backend)
    seen = []
    frames = decoder("mp4", data, lambda n: seen.append(n) or [0, n - 1], 60)
    assert seen == [40] and [read_number(f[:24, :96]) for f in frames] == [0, 39]
    frames = decoder("mp4", data, lambda n: seen.append(n) or [n - 1], 25)
    assert seen[-1] == 25 and read_number(frames[0][:24, :96]) == 24
    with pytest.raises(SampleError) as err:
        decoder("mp4", b"\x00" * 100, lambda n: [0], 0)
    assert err.value.reason == "decode_error"


def test_a_stuck_decode_times_out_and_the_next_sample_decodes(tmp_path, monkeypatch):
    write_numbered_video(tmp_path / "v.mp4", 10, 25.0)
    data = (tmp_path / "v.mp4").read_bytes()

    bound = liveness(2)

    def stuck(*args):
        time.sleep(1.5 * bound)

    slow = FrameDecoder("decord", timeout_s=0.2)
    monkeypatch.setitem(video_io._BACKENDS, "decord", stuck)
    began = time.time()
    with pytest.raises(SampleError) as err:
        slow("mp4", data, lambda n: [0], 10)
    assert err.value.reason == "decode_timeout" and time.time() - began < bound
    monkeypatch.undo()
    assert read_number(slow("mp4", data, lambda n: [3], 10)[0]) == 3  # a fresh thread decodes the next one


def test_auto_tries_the_next_backend_for_a_sample_one_fails_on(tmp_path, monkeypatch):
    write_numbered_video(tmp_path / "v.mp4", 10, 25.0)
    data = (tmp_path / "v.mp4").read_bytes()
    order = AUTO_ORDER["few"]
    assert backend_chain("auto") == order and backend_chain("auto", 16) == AUTO_ORDER["many"]  # all are installed
    assert sorted(AUTO_ORDER["few"]) == sorted(AUTO_ORDER["many"]) == sorted(BACKENDS)
    failed = []

    def broken(name):
        def decode(*args):
            failed.append(name)
            raise RuntimeError(f"{name} failed")
        return decode

    for name in order[:-1]:
        monkeypatch.setitem(video_io._BACKENDS, name, broken(name))
    frames = FrameDecoder("auto")("mp4", data, lambda n: [2, 5], 10)
    assert [read_number(f) for f in frames] == [2, 5] and failed == list(order[:-1])
    monkeypatch.setitem(video_io._BACKENDS, order[-1], broken(order[-1]))
    with pytest.raises(SampleError) as err:
        FrameDecoder("auto")("mp4", data, lambda n: [2], 10)
    assert err.value.reason == "decode_error" and f"{order[-1]} failed" in str(err.value)


@pytest.fixture
def fresh_backends():
    video_io.backend_usable.cache_clear()
    yield
    video_io.backend_usable.cache_clear()


def test_an_unknown_or_unloadable_backend_is_a_user_error(tmp_path, monkeypatch, fresh_backends):
    with pytest.raises(UserError, match="choose auto"):
        FrameDecoder("opencv")
    write_numbered_video(tmp_path / "v.mp4", 10, 25.0)
    monkeypatch.setitem(video_io._MODULES, "torchcodec", "torchcodec_missing_here")
    with pytest.raises(UserError, match="torchcodec_missing_here cannot be imported"):  # not a skipped sample
        FrameDecoder("torchcodec")("mp4", (tmp_path / "v.mp4").read_bytes(), lambda n: [0], 10)
    assert backend_chain("auto") == tuple(name for name in AUTO_ORDER["few"] if name != "torchcodec")
