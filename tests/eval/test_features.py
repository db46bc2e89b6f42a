"""Feature extraction: window frame selection, and the documented file shapes for EgoMQ and EgoNLQ."""
import json
import math

import numpy as np
import pytest
import torch

import egovlpv2
from egovlpv2.data.synthetic import write_video
from egovlpv2.eval.video_windows import WindowSpec, iter_windows
from tests.eval import synthetic_benchmarks as synth

FPS = 8.0


def _counter_video(path, frames):
    """Frame n is a flat grey of level 8 * n, so a decoded window tells which frames it took."""
    write_video(path, [np.full((64, 64, 3), 8 * n, np.uint8) for n in range(frames)], FPS, gop=1, crf=0)


def test_windows_take_the_frames_at_their_times(tmp_path):
    _counter_video(tmp_path / "v.mp4", 24)  # 3 s
    spec = WindowSpec(frames_per_window=4, windows_per_second=1.0, img_size=32, eval_resize=64)
    windows = list(iter_windows(tmp_path / "v.mp4", spec))
    assert len(windows) == 3 and all(w.shape == (4, 3, 32, 32) for w in windows)
    levels = [[round(float(f.float().mean()) / 8) for f in w] for w in windows]
    # Window k spans [k, k + 1) s; its frames sit at k + 0.125, 0.375, 0.625, 0.875 s: frames 1, 3, 5, 7 (+ 8k).
    assert levels == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19, 21, 23]]
    # A time range of the video, and windows past the end repeat the last frame.
    ranged = list(iter_windows(tmp_path / "v.mp4", spec, start=1.0, end=3.5))
    assert [[round(float(f.float().mean()) / 8) for f in w] for w in ranged][-1] == [23, 23, 23, 23]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    videos = root / "videos"
    videos.mkdir()
    write_video(videos / "clipA.mp4", synth.render(0, 1, 3.0, 0), FPS, gop=4)  # 3 s clip file
    write_video(videos / "fullvid.mp4", synth.render(2, 3, 6.0, 1), FPS, gop=4)  # a whole video
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny", num_frames=4)
    with torch.no_grad():  # open the fusion gates so the features depend on the query
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(0.5)
    torch.save(model.state_dict(), root / "tiny.pt")
    return {"root": root, "videos": videos, "ckpt": root / "tiny.pt", "tokenizer": synth.make_tokenizer(root)}


def test_egomq_features_have_documented_shapes(setup, tmp_path):
    from egovlpv2.cli.extract_features import main

    synth.run_isolated(main, ["--task", "egomq", "--checkpoint", str(setup["ckpt"]), "--videos", str(setup["videos"]),
          "--out", str(tmp_path), "--model", "egovlpv2-tiny", "--batch-size", "4"])
    for clip, seconds in (("clipA", 3.0), ("fullvid", 6.0)):
        feats = torch.load(tmp_path / f"{clip}.pt")
        meta = json.loads((tmp_path / f"{clip}.json").read_text())
        windows = math.ceil(seconds * 1.875)
        assert feats.shape == (windows, 256) and feats.dtype == torch.float32
        torch.testing.assert_close(feats.norm(dim=1), torch.ones(windows))
        assert meta["num_windows"] == windows and meta["frames_per_window"] == 16
        assert meta["window_starts_s"][1] == pytest.approx(1 / 1.875)


def test_egonlq_features_have_documented_shapes_and_depend_on_the_query(setup, tmp_path):
    from egovlpv2.cli.extract_features import main

    ann = {"videos": [{"video_uid": "fullvid", "clips": [
        {"clip_uid": "clipA", "video_start_sec": 0.0, "video_end_sec": 3.0,
         "annotations": [{"language_queries": [{"query": "lift the green ball"}, {"query": "where is the red ball"}]}]},
        {"clip_uid": "clipB", "video_start_sec": 2.0, "video_end_sec": 4.0,  # no clip file: a range of fullvid
         "annotations": [{"language_queries": [{"query": "shake"}]}]}]}]}
    (tmp_path / "nlq.json").write_text(json.dumps(ann))
    synth.run_isolated(main, ["--task", "egonlq", "--checkpoint", str(setup["ckpt"]), "--videos", str(setup["videos"]),
          "--annotations", str(tmp_path / "nlq.json"), "--tokenizer", str(setup["tokenizer"]),
          "--out", str(tmp_path / "out"), "--model", "egovlpv2-tiny", "--batch-size", "4"])
    a = torch.load(tmp_path / "out" / "clipA.pt")
    windows = math.ceil(3.0 * 1.875)
    length = a["text_mask"].shape[1]
    assert a["video"].shape == (2, windows, 64) and a["text"].shape == (2, length, 64)
    assert a["queries"] == ["lift the green ball", "where is the red ball"]
    assert not torch.allclose(a["video"][0], a["video"][1])  # conditioned on the query
    b = torch.load(tmp_path / "out" / "clipB.pt")
    meta = json.loads((tmp_path / "out" / "clipB.json").read_text())
    assert b["video"].shape == (1, math.ceil(2.0 * 1.875), 64)
    assert meta["source"].endswith("fullvid.mp4") and meta["start_s"] == 2.0 and meta["frames_per_window"] == 4
