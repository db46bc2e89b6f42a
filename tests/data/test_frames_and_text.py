"""Frame sampling, augmentation, normalisation, bounded decoding and the tokenizer."""
import random
import time

import numpy as np
import pytest
import torch

from egovlpv2.data import video_io
from egovlpv2.data.sampling import segment_indices
from egovlpv2.data.tokenizer import build_bpe_tokenizer, load_tokenizer
from egovlpv2.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, normalize_video, train_transform
from egovlpv2.data.video_io import FrameDecoder, SampleError, pack_jpegs, unpack_jpegs
from tests.helpers import liveness, read_number, write_numbered_video


def test_segment_sampling():
    assert segment_indices(40, 4, train=False) == [5, 15, 25, 35]
    rng = random.Random(0)
    for _ in range(50):
        picks = segment_indices(40, 4, True, rng)
        assert all(10 * i <= p < 10 * (i + 1) for i, p in enumerate(picks))
    assert segment_indices(2, 4, train=False) == [0, 0, 1, 1]  # short clips repeat frames
    with pytest.raises(ValueError):
        segment_indices(0, 4, train=False)


def test_normalize_video_uses_imagenet_statistics():
    video = torch.full((2, 4, 3, 8, 8), 255, dtype=torch.uint8)
    out = normalize_video(video)
    assert out.dtype == torch.float32 and out.shape == video.shape
    for c in range(3):
        assert torch.allclose(out[:, :, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))
    with pytest.raises(TypeError):
        normalize_video(video.float())


def test_train_crop_is_shared_by_all_frames_and_eval_is_centred():
    frames = np.repeat(np.random.default_rng(0).integers(0, 255, (1, 60, 80, 3), dtype=np.uint8), 4, axis=0)
    out = train_transform(frames, 32, (0.5, 1.0), True, random.Random(1))
    assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8
    assert all(torch.equal(out[0], out[t]) for t in range(4))
    marked = np.zeros((2, 100, 200, 3), np.uint8)
    marked[:, :, :50] = 255  # the left quarter is white: the centre crop must cut it off
    out = eval_transform(marked, 16, resize=64)
    assert out.shape == (2, 3, 16, 16) and out.max() == 0


def test_decoder_clamps_indices_and_bounds_decode_time(tmp_path, monkeypatch):
    write_numbered_video(tmp_path / "v.mp4", 10, 25.0)
    data = (tmp_path / "v.mp4").read_bytes()
    decoder = FrameDecoder("decord")
    # The shard says 30 frames, the stream holds 10: indices are clamped to what decodes.
    frames = decoder("mp4", data, lambda n: [0, n - 1], 30)
    assert [read_number(f) for f in frames] == [0, 9]
    assert [read_number(f) for f in FrameDecoder("pyav")("mp4", data, lambda n: [0, n - 1], 30)] == [0, 9]
    with pytest.raises(SampleError) as err:
        decoder("mp4", b"\x00" * 100, lambda n: [0], 0)
    assert err.value.reason == "decode_error"

    bound = liveness(2)

    def stuck(*args):
        time.sleep(1.5 * bound)

    slow = FrameDecoder("decord", timeout_s=0.2)
    monkeypatch.setattr(video_io, "_decode_decord", stuck)
    began = time.time()
    with pytest.raises(SampleError) as err:
        slow("mp4", data, lambda n: [0], 10)
    assert err.value.reason == "decode_timeout" and time.time() - began < bound
    monkeypatch.undo()
    assert read_number(slow("mp4", data, lambda n: [3], 10)[0]) == 3  # a fresh thread decodes the next one


def test_auto_backend_falls_back_to_pyav(tmp_path, monkeypatch):
    write_numbered_video(tmp_path / "v.mp4", 10, 25.0)

    def broken(*args):
        raise RuntimeError("decord failed")

    monkeypatch.setattr(video_io, "_decode_decord", broken)
    frames = FrameDecoder("auto")("mp4", (tmp_path / "v.mp4").read_bytes(), lambda n: [2, 5], 10)
    assert [read_number(f) for f in frames] == [2, 5]


def test_packed_jpegs_round_trip_and_truncation():
    parts = [b"\xff\xd8one", b"\xff\xd8second"]
    assert unpack_jpegs(pack_jpegs(parts)) == parts
    with pytest.raises(SampleError):
        unpack_jpegs(pack_jpegs(parts)[:-2])


def test_bpe_tokenizer_is_roberta_compatible(tmp_path):
    texts = ["#C C lifts the red ball", "#C C lowers the blue cup", "#C C shakes the green box"] * 20
    build_bpe_tokenizer(texts, tmp_path / "tok", vocab_size=300)
    tok = load_tokenizer(tmp_path / "tok")
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    assert len(tok) <= 300
    enc = tok(["#C C lifts the red ball", "#C C holds a knife"], padding="max_length", truncation=True,
              max_length=15, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == (2, 15) and ids[0, 0] == 0 and (ids[mask == 0] == 1).all()
    assert tok.decode(ids[0], skip_special_tokens=True) == "#C C lifts the red ball"
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")
