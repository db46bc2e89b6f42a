"""Bad data from the fleet: a row that cannot be encoded, a sample whose metadata is mistyped."""
import av
import numpy as np

from egovlpv2.data import shard_writer
from egovlpv2.data.egoclip import write_egoclip
from egovlpv2.data.shard_tasks import ShardRun, make_shards
from egovlpv2.data.transcode import EncodeOptions
from tests.data.data_helpers import egoclip_row, write_numbered_video


def _write_one_pixel_video(path, num_frames: int = 10) -> None:
    """A 1x1-pixel video (yuv444p: yuv420p cannot hold an odd size, but the source may be anything)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 1
        stream.pix_fmt = "yuv444p"
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.zeros((1, 1, 3), np.uint8), format="rgb24").reformat(format="yuv444p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


def _make(tmp_path, **kw):
    return make_shards(ShardRun(task="egoclip", csv=str(tmp_path / "e.csv"), videos=str(tmp_path / "v"),
                                out=str(tmp_path / "s"), workers=1, progress=False, max_failure_fraction=0.5,
                                encode=EncodeOptions(short_side=0), **kw))


def test_a_row_the_encoder_rejects_is_a_recorded_failure(tmp_path):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "good.mp4", 25, 25.0)
    _write_one_pixel_video(tmp_path / "v" / "tiny.mp4")
    write_egoclip(tmp_path / "e.csv", [egoclip_row(0, "good", 0.0, 0.8, dur=1.0), egoclip_row(1, "good", 0.1, 0.9, dur=1.0),
                                       egoclip_row(2, "tiny", 0.0, 0.3, dur=0.4)])
    manifest, ok = _make(tmp_path)
    assert ok and manifest["total_samples"] == 2
    assert [f["id"] for f in manifest["failures"]] == ["tiny_2"]
    assert "too small" in manifest["failures"][0]["reason"]
    assert not list((tmp_path / "s").glob("*.tmp"))


def test_any_error_while_cutting_a_row_fails_that_row_only(tmp_path, monkeypatch):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "good.mp4", 25, 25.0)
    write_numbered_video(tmp_path / "v" / "odd.mp4", 25, 25.0)
    write_egoclip(tmp_path / "e.csv", [egoclip_row(0, "good", 0.0, 0.8, dur=1.0), egoclip_row(1, "good", 0.1, 0.9, dur=1.0),
                                       egoclip_row(2, "odd", 0.0, 0.8, dur=1.0)])
    real_cut = shard_writer.cut_clip

    def cut_clip(segments, *args, **kwargs):
        if segments[0].path.endswith("odd.mp4"):
            raise RuntimeError("encoder exploded")
        return real_cut(segments, *args, **kwargs)

    monkeypatch.setattr(shard_writer, "cut_clip", cut_clip)
    manifest, ok = _make(tmp_path)
    assert ok and manifest["total_samples"] == 2
    assert manifest["failures"] == [{"id": "odd_2", "reason": "RuntimeError: encoder exploded"}]
