"""make_shards: failures end in the manifest, output is deterministic, reruns keep finished shards."""
import json
from collections import defaultdict

from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.shards.transcode import EncodeOptions
from tests.helpers import egoclip_row, write_numbered_video


def _run(tmp_path, out="s", **kw):
    kw.setdefault("max_failure_fraction", 0.05)
    return make_shards(ShardRun(task="egoclip", csv=str(tmp_path / "e.csv"), videos=str(tmp_path / "v"),
                                out=str(tmp_path / out), workers=1, progress=False,
                                encode=EncodeOptions(short_side=0), **kw))


def test_bad_videos_and_rows_are_recorded_with_reasons(tmp_path):
    v = tmp_path / "v"
    v.mkdir()
    write_numbered_video(v / "good.mp4", 50, 25.0)
    write_numbered_video(v / "whole.mp4", 100, 25.0)
    (v / "corrupt.mp4").write_bytes(b"\x00\x01 this is not a video" * 100)
    data = (v / "whole.mp4").read_bytes()
    (v / "truncated.mp4").write_bytes(data[: len(data) // 2])
    rows = [egoclip_row(0, "good", 0.2, 1.0, dur=2.0), egoclip_row(1, "good", 1.0, 1.8, dur=2.0),
            egoclip_row(2, "missing", 0.0, 1.0), egoclip_row(3, "corrupt", 0.0, 1.0),
            egoclip_row(4, "truncated", 0.0, 1.0, dur=4.0),
            egoclip_row(5, "good", 30.0, 31.0, dur=60.0),   # the csv says 60 s; the file lasts 2 s
            egoclip_row(6, "good", 1.0, 0.5, dur=2.0), egoclip_row(7, "good", 0.0, 1.0, text=""),
            egoclip_row(8, "good", 0.0, 1.0, noun="[1,"), egoclip_row(1, "good", 0.0, 1.0, dur=2.0)]
    write_egoclip(tmp_path / "e.csv", rows)
    manifest, ok = _run(tmp_path)
    assert not ok  # 8 failures of 10 rows exceed 5 %
    lines = (tmp_path / "s" / "failures.jsonl").read_text().splitlines()
    failures = {f["id"]: f for f in map(json.loads, lines)}
    assert manifest["total_samples"] == 2 and manifest["rows_planned"] == 10 and manifest["rows_failed"] == 8
    assert failures["missing_2"]["reason"] == "missing_video" and failures["missing_2"]["detail"] == "missing.mp4"
    assert failures["corrupt_3"]["reason"] == "corrupt_video"
    assert "truncated_4" in failures  # moov atom cut off or frames stop early: either way recorded
    assert failures["good_5"]["reason"] == "clip_outside_video"
    assert "non-positive length" in failures["6"]["detail"] and "empty text" in failures["7"]["detail"]
    assert "malformed tags" in failures["8"]["detail"] and failures["good_1"]["reason"] == "duplicate_id"
    assert len(failures) == 8 and str(tmp_path) not in "\n".join(lines)  # paths relative to --videos
    assert sum(manifest["failures"].values()) == 8 and manifest["failures"]["bad_row"] == 3
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["videos_referenced"] == 4 and summary["videos_found"] == 3
    assert (tmp_path / "s" / "missing_videos.txt").read_text() == "missing\n"
    manifest, ok = _run(tmp_path, max_failure_fraction=0.9)
    assert ok


def test_same_inputs_same_bytes_and_reruns_keep_finished_shards(tmp_path):
    v = tmp_path / "v"
    v.mkdir()
    rows = []
    for i in range(3):
        write_numbered_video(v / f"vid{i}.mp4", 75, 25.0)
        rows += [egoclip_row(f"{i}.{k}", f"vid{i}", 0.5 * k, 0.5 * k + 0.4, dur=3.0) for k in range(5)]
    write_egoclip(tmp_path / "e.csv", rows)
    first, _ = _run(tmp_path, "a", samples_per_shard=4)
    second, _ = _run(tmp_path, "b", samples_per_shard=4)
    names = [s["name"] for s in first["shards"]]
    assert names == [s["name"] for s in second["shards"]] and len(names) == 3  # whole windows of 5
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    stamps = {n: (tmp_path / "a" / n).stat().st_mtime_ns for n in names}
    (tmp_path / "a" / names[1]).unlink()
    third, _ = _run(tmp_path, "a", samples_per_shard=4)
    assert (tmp_path / "a" / names[0]).stat().st_mtime_ns == stamps[names[0]]
    assert (tmp_path / "a" / names[1]).read_bytes() == (tmp_path / "b" / names[1]).read_bytes()
    assert third["total_samples"] == 15
    # Keys lost their dots (webdataset splits at the first one); windows are whole and contiguous.
    seen = defaultdict(list)
    for shard, name in enumerate(names):
        for pos, sample in enumerate(read_tar(str(tmp_path / "a" / name))):
            assert "." not in sample["__key__"] and set(sample) >= {"mp4", "json"}
            meta = parse_meta(sample)
            seen[meta["group"]].append((shard, pos))
            assert meta["video_uid"] == meta["group"].split(":")[0] and meta["clip_end"] > meta["clip_start"]
    for places in seen.values():
        assert len({s for s, _ in places}) == 1
        positions = sorted(p for _, p in places)
        assert positions == list(range(positions[0], positions[0] + len(positions)))


def test_limit_and_manifest_totals(tmp_path):
    v = tmp_path / "v"
    v.mkdir()
    write_numbered_video(v / "vid.mp4", 75, 25.0)
    write_egoclip(tmp_path / "e.csv", [egoclip_row(k, "vid", 0.5 * k, 0.5 * k + 0.4, dur=3.0) for k in range(5)])
    manifest, ok = _run(tmp_path, limit=2)
    on_disk = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert ok and on_disk["total_samples"] == 2 == sum(s["samples"] for s in on_disk["shards"])
    assert on_disk["total_bytes"] == sum((tmp_path / "s" / s["name"]).stat().st_size for s in on_disk["shards"])
    assert on_disk["source_seconds"] > 0.7


def test_plan_only_summarises_a_partial_download_without_writing(tmp_path):
    v = tmp_path / "v"
    v.mkdir()
    write_numbered_video(v / "here.mp4", 75, 25.0)
    rows = [egoclip_row(k, uid, 0.5 * k, 0.5 * k + 0.4, dur=3.0) for uid in ("here", "gone1", "gone2") for k in range(3)]
    write_egoclip(tmp_path / "e.csv", rows + [egoclip_row(9, "here", 1.0, 0.5)])
    manifest, ok = _run(tmp_path, plan_only=True)
    assert manifest is None and not list((tmp_path / "s").glob("*.tar"))
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["rows_planned"] == 10 and summary["rows_to_write"] == 3 and summary["rows_failed"] == 7
    assert summary["failed_by_reason"] == {"bad_row": 1, "missing_video": 6}
    assert (summary["videos_referenced"], summary["videos_found"], summary["videos_missing"]) == (3, 1, 2)
    assert summary["source_hours_referenced"] == round(9.0 / 3600, 3)  # three videos of 3 s each
    assert summary["source_hours_found"] == round(3.0 / 3600, 3)
    assert sorted((tmp_path / "s" / "missing_videos.txt").read_text().split()) == ["gone1", "gone2"]
