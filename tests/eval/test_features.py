"""Feature extraction end to end: the files the VSGN / VSLNet heads read, dense features over a list of
videos, and a stopped run that continues."""
import json
import math

import numpy as np
import pytest
import torch

import egovlpv2
from egovlpv2.errors import UsageError
from egovlpv2.eval.video_windows import WindowSpec, iter_windows
from egovlpv2.shards.synthetic import write_video
from tests.eval import synthetic_benchmarks as synth

FPS = 8.0


def _video30(path, verb, noun, seconds, seed):
    """A 30 fps video of ``seconds`` (synth.render counts frames at its own 8 fps)."""
    write_video(path, synth.render(verb, noun, seconds * 30 / synth.FPS, seed), 30, gop=8)


def _counter_video(path, frames):
    """Frame n is a flat grey of level 8 * n, so a decoded window tells which frames it took."""
    write_video(path, [np.full((64, 64, 3), 8 * n, np.uint8) for n in range(frames)], FPS, gop=1, crf=0)


def test_dense_windows_take_the_frames_at_their_times(tmp_path):
    _counter_video(tmp_path / "v.mp4", 24)  # 3 s
    spec = WindowSpec(frames_per_window=4, windows_per_second=1.0)
    windows = list(iter_windows(tmp_path / "v.mp4", spec.plan(0.0, 3.0), img_size=32, resize=64))
    assert len(windows) == 3 and all(w.shape == (4, 3, 32, 32) for w in windows)
    levels = [[round(float(f.float().mean()) / 8) for f in w] for w in windows]
    # Window k spans [k, k + 1) s; its frames sit at k + 0.125, 0.375, 0.625, 0.875 s: frames 1, 3, 5, 7 (+ 8k).
    assert levels == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19, 21, 23]]
    # A time range of the video, and windows past the end repeat the last frame.
    ranged = list(iter_windows(tmp_path / "v.mp4", spec.plan(1.0, 3.5), img_size=32, resize=64))
    assert [[round(float(f.float().mean()) / 8) for f in w] for w in ranged][-1] == [23, 23, 23, 23]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    videos = root / "videos"
    videos.mkdir()
    _video30(videos / "clipA.mp4", 0, 1, 3.0, 0)  # a 3 s clip file
    _video30(videos / "fullvid.mp4", 2, 3, 6.0, 1)  # a whole video
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny", num_frames=4)
    with torch.no_grad():  # open the fusion gates so the features depend on the query
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(0.5)
    torch.save(model.state_dict(), root / "tiny.pt")
    return {"root": root, "videos": videos, "ckpt": root / "tiny.pt", "tokenizer": synth.make_tokenizer(root)}


def _run(setup, *args):
    from egovlpv2.cli.extract_features import extract_features

    return synth.run_isolated(extract_features, ["--checkpoint", str(setup["ckpt"]), "--model", "egovlpv2-tiny",
                                                 "--batch-size", "4", *args])


def _official_windows(seconds: float, frames: int) -> int:
    return int(seconds * 1.87 * frames + 1) // frames


def test_egomq_files_are_what_vsgn_loads(setup, tmp_path):
    ann = {"videos": [{"video_uid": "fullvid", "clips": [
        {"clip_uid": "clipA", "video_start_sec": 0.0, "video_end_sec": 3.0},
        {"clip_uid": "clipB", "video_start_sec": 1.5, "video_end_sec": 4.5}]}]}  # no clip file: a range of fullvid
    (tmp_path / "mq.json").write_text(json.dumps(ann))
    _run(setup, "--preset", "egomq", "--videos", str(setup["videos"]), "--annotations", str(tmp_path / "mq.json"),
         "--out", str(tmp_path / "out"))
    for clip in ("clipA", "clipB"):
        feats = torch.load(tmp_path / "out" / f"{clip}.pt")  # VSGN: torch.load, then transpose to [D, T]
        meta = json.loads((tmp_path / "out" / f"{clip}.json").read_text())
        assert feats.dtype == torch.float32 and feats.shape == (_official_windows(3.0, 16), 256)
        assert not torch.allclose(feats.norm(dim=1), torch.ones(len(feats))), "the projection, not normalised"
        assert meta["num_windows"] == len(feats) and meta["frames_per_window"] == 16
        assert meta["windows_per_second"] == 1.87 and len(meta["frame_indices"][0]) == 16
    meta_b = json.loads((tmp_path / "out" / "clipB.json").read_text())
    assert meta_b["source"].endswith("fullvid.mp4") and meta_b["frame_indices"][0][:2] == [45, 46]


def test_egonlq_files_are_what_vslnet_loads(setup, tmp_path):
    ann = {"videos": [{"video_uid": "fullvid", "clips": [
        {"clip_uid": "clipA", "video_start_sec": 0.0, "video_end_sec": 3.0, "annotations": [
            {"annotation_uid": "ann1", "language_queries": [
                {"query": "Lift the green ball?", "clip_start_sec": 1.0, "clip_end_sec": 2.0},
                {"query": "", "clip_start_sec": 0.0, "clip_end_sec": 1.0},
                {"query": "where is the red ball", "clip_start_sec": 0.2, "clip_end_sec": 0.9}]}]},
        {"clip_uid": "clipB", "video_start_sec": 2.0, "video_end_sec": 4.0, "annotations": [
            {"annotation_uid": "ann2", "language_queries": [{"query": "shake", "clip_start_sec": 0.5,
                                                            "clip_end_sec": 1.5}]}]}]}]}
    (tmp_path / "nlq.json").write_text(json.dumps(ann))
    out = tmp_path / "EgoVLPv2" / "val"
    _run(setup, "--preset", "egonlq", "--videos", str(setup["videos"]), "--annotations", str(tmp_path / "nlq.json"),
         "--tokenizer", str(setup["tokenizer"]), "--out", str(out))
    assert sorted(p.name for p in out.glob("*.pt")) == ["feat_0.pt", "feat_1.pt", "feat_2.pt"]
    first, second = torch.load(out / "feat_0.pt"), torch.load(out / "feat_1.pt")
    windows = _official_windows(3.0, 4)
    # what EgoNLQ/utils/data_loader.py and runner_utils.eval_test read
    assert first["fused_video_features"].shape == (windows, 64)
    assert first["dual_text_features"][0].shape == (30, 64)
    assert first["text_token"]["attention_mask"][0].shape == (30,)
    assert first["v_len"].item() == windows and first["duration"].item() == pytest.approx(int(3.0 * 1.875) / 1.875)
    assert (first["vid"], first["annotation_uid"], int(first["query_idx"])) == ("clipA", "ann1", 0)
    assert (int(second["query_idx"]), second["query"]) == (2, "where is the red ball?")
    assert first["query"] == "lift the green ball?"
    # the span as the head's time_to_index finds it, by brute force over i <= j
    unit = first["duration"].item() / windows
    s_time, e_time = first["s_time"].item(), first["e_time"].item()

    def iou(i, j):
        inter = max(0.0, min((j + 1) * unit, e_time) - max(i * unit, s_time))
        return inter / (max((j + 1) * unit, e_time) - min(i * unit, s_time))

    best = max(((i, j) for i in range(windows) for j in range(i, windows)), key=lambda ij: (iou(*ij), -ij[0], -ij[1]))
    assert (first["s_ind"].item(), first["e_ind"].item()) == best
    assert not torch.allclose(first["fused_video_features"], second["fused_video_features"]), "query-conditioned"
    third = torch.load(out / "feat_2.pt")
    meta = json.loads((out / "clipB.json").read_text())
    assert third["fused_video_features"].shape == (_official_windows(2.0, 4), 64) and third["vid"] == "clipB"
    assert meta["source"].endswith("fullvid.mp4") and meta["start_s"] == 2.0 and meta["frames_per_window"] == 4
    # a clip is done once its json follows its query files: without it the clip is redone, the others are kept
    kept = (out / "feat_0.pt").stat()
    (out / "clipB.json").unlink()
    (out / ".feat_2.pt.k1ll3d.tmp").write_bytes(b"torn")
    again = _run(setup, "--preset", "egonlq", "--videos", str(setup["videos"]), "--annotations",
                 str(tmp_path / "nlq.json"), "--tokenizer", str(setup["tokenizer"]), "--out", str(out))
    assert [p.name for p in again.written] == ["clipB.json"] and not list(out.glob(".*.tmp"))
    assert (out / "feat_0.pt").stat().st_mtime_ns == kept.st_mtime_ns


def test_dense_features_of_a_video_list_one_file_each_with_metadata(setup, tmp_path):
    (tmp_path / "more").mkdir()
    _video30(tmp_path / "more" / "kitchen.mp4", 1, 0, 2.0, 5)
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{setup['videos'] / 'clipA.mp4'}\n# a comment\nmore/kitchen.mp4\n")
    _run(setup, "--preset", "dense", "--windows-per-second", "2", "--frames", "4", "--videos", str(listing),
         "--out", str(tmp_path / "out"))
    for name, seconds in (("clipA", 3.0), ("kitchen", 2.0)):
        feats = torch.load(tmp_path / "out" / f"{name}.pt")
        meta = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert feats.shape == (math.ceil(seconds * 2), 256)
        assert meta["window_starts_s"] == [k / 2 for k in range(len(feats))] and meta["frames_per_window"] == 4
        assert meta["preset"] == "dense" and meta["output"] == "dual_projection"
    listing.write_text(f"{setup['videos'] / 'clipA.mp4'}\nother/clipA.mp4\n")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "clipA.mp4").write_bytes(b"")
    with pytest.raises(UsageError, match="same clipA.pt"):
        _run(setup, "--preset", "dense", "--videos", str(listing), "--out", str(tmp_path / "out2"))
    with pytest.raises(UsageError, match="--preset dense"):
        _run(setup, "--preset", "egomq", "--frames", "4", "--videos", str(setup["videos"]), "--out", str(tmp_path))
    with pytest.raises(UsageError, match="needs --tokenizer"):
        _run(setup, "--preset", "egonlq", "--videos", str(setup["videos"]), "--out", str(tmp_path))


@pytest.mark.slow
def test_a_stopped_run_continues_without_rewriting_or_trusting_partial_writes(setup, tmp_path):
    from egovlpv2.cli.extract_features import extract_features

    out = tmp_path / "out"
    argv = ["--preset", "dense", "--checkpoint", str(setup["ckpt"]), "--videos", str(setup["videos"]), "--out", str(out),
            "--model", "egovlpv2-tiny", "--frames", "4", "--batch-size", "8"]
    first = synth.run_isolated(lambda a: extract_features(a, should_stop=lambda: any(out.glob("*.pt"))), argv)
    assert first.stopped and first.left == 1 and [p.name for p in first.written] == ["clipA.pt"]
    done = (out / "clipA.pt").stat()
    # a write killed mid-way leaves only a temporary file: the clip is not done, and the file goes
    (out / ".fullvid.pt.k1ll3d.tmp").write_bytes(b"torn")
    second = synth.run_isolated(extract_features, argv)
    assert not second.stopped and second.left == 0 and [p.name for p in second.written] == ["fullvid.pt"]
    assert (out / "clipA.pt").stat().st_ino == done.st_ino and (out / "clipA.pt").stat().st_mtime_ns == done.st_mtime_ns
    assert sorted(p.name for p in out.iterdir()) == ["clipA.json", "clipA.pt", "fullvid.json", "fullvid.pt"]
    assert torch.load(out / "fullvid.pt").shape == (math.ceil(6.0 * 1.875), 256)
