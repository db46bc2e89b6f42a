"""Bad data from the fleet: a row that cannot be encoded, a sample whose metadata is mistyped."""
import io
import json
import tarfile

import av
import numpy as np

from egovlpv2.shards import writer as shard_writer
from egovlpv2.data.config import DataConfig
from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.data.pipeline import build_pretrain_loader
from egovlpv2.data.tokenizer import build_bpe_tokenizer
from egovlpv2.shards.transcode import EncodeOptions
from tests.helpers import egoclip_row, write_numbered_video


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


def _failures(tmp_path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "s" / "failures.jsonl").read_text().splitlines()]


def test_a_row_the_encoder_rejects_is_a_recorded_failure(tmp_path):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "good.mp4", 25, 25.0)
    _write_one_pixel_video(tmp_path / "v" / "tiny.mp4")
    write_egoclip(tmp_path / "e.csv", [egoclip_row(0, "good", 0.0, 0.8, dur=1.0), egoclip_row(1, "good", 0.1, 0.9, dur=1.0),
                                       egoclip_row(2, "tiny", 0.0, 0.3, dur=0.4)])
    manifest, ok = _make(tmp_path)
    assert ok and manifest["total_samples"] == 2
    failures = _failures(tmp_path)
    assert [f["id"] for f in failures] == ["tiny_2"]
    assert failures[0]["reason"] == "encode_error" and "too small" in failures[0]["detail"]
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
    assert _failures(tmp_path) == [{"id": "odd_2", "reason": "encode_error", "detail": "RuntimeError: encoder exploded"}]


MISTYPED = {  # sample index -> how its JSON is broken
    1: lambda m: {**m, "verb": "3"},
    3: lambda m: {**m, "clips": []},
    5: lambda m: {k: v for k, v in m.items() if k != "id"},
    7: lambda m: {**m, "verb": [1.5]},
    9: lambda m: {**m, "text": [m["text"]]},
}


def test_mistyped_sample_metadata_is_skipped_and_counted_never_crashes(tmp_path):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "a.mp4", 70, 10.0)
    rows = [egoclip_row(i, "a", 0.5 * i, 0.5 * i + 0.5, dur=7.0) for i in range(12)]
    write_egoclip(tmp_path / "e.csv", rows)
    manifest, ok = _make(tmp_path)
    assert ok and manifest["total_samples"] == 12
    (shard,) = (tmp_path / "s").glob("*.tar")
    with tarfile.open(shard) as tar:
        members = [(info.name, tar.extractfile(info).read()) for info in tar.getmembers()]
    keys = sorted({name.partition(".")[0] for name, _ in members}, key=lambda k: int(k.rsplit("_", 1)[1]))
    broken = {keys[i]: change for i, change in MISTYPED.items()}
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            key, _, suffix = name.partition(".")
            if suffix == "json" and key in broken:
                data = json.dumps(broken[key](json.loads(data))).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    build_bpe_tokenizer([r["clip_text"] for r in rows], tmp_path / "tok", vocab_size=300)
    cfg = DataConfig(shards=str(tmp_path / "s"), tokenizer=str(tmp_path / "tok"), num_frames=2, img_size=32,
                     batch_size=2, num_workers=0, shuffle_buffer=4)
    loader = build_pretrain_loader(cfg, 0, 1, epoch=0)
    batches = list(loader)
    assert len(batches) == len(loader)
    used = {sid for batch in batches for sid in batch["sample_id"]}
    assert used and not used & set(broken)
    assert loader.skip_counts().get("bad_meta", 0) >= len(broken)
