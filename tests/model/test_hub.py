"""Hub-format models: save_pretrained / from_pretrained through huggingface_hub, from a local directory and,
offline, from the Hub cache layout; the card; create_model(checkpoint=DIR)."""
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys

import pytest
import torch

import egovlpv2
from egovlpv2.config import ConfigError, from_dict
from egovlpv2.model import CheckpointError, ModelConfig, Provenance
from egovlpv2.model.config import resolve_model_config
from egovlpv2.model.flops import count_parameters
from tests.helpers import REPO, liveness


def trained_like(seed=0):
    """A tiny model whose every weight is non-trivial: gates and temporal embedding are 0 at init, and a
    model that ignores them would pass for one that loads them."""
    torch.manual_seed(seed)
    model = egovlpv2.create_model("egovlpv2-tiny").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def inputs(frames=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(2, frames, 3, 64, 64, generator=g)
    ids = torch.randint(3, 512, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    ids[1, 5:], mask[1, 5:] = 1, 0
    return video, ids, mask


def outputs(model, frames=4):
    video, ids, mask = inputs(frames)
    with torch.no_grad():
        return {"video": model.encode_video(video), "text": model.encode_text(ids, mask),
                "match": model.match_score(video, ids, mask)}


def card_checksums(directory):
    rows = re.findall(r"^\| (\S+) \| (\d+) \| `([0-9a-f]{64})` \|$", (directory / "README.md").read_text(), re.M)
    return {name: (int(size), digest) for name, size, digest in rows}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = trained_like()
    model.provenance = Provenance(source="a test", data="nothing", evaluation={"EgoMCQ": {"ensemble/inter": 12.5}},
                                  license="mit", recipe={"optim": {"betas": (0.9, 0.98)}})
    directory = tmp_path_factory.mktemp("hub") / "egovlpv2-tiny-test"
    model.save_pretrained(directory)
    return model, directory


def test_save_writes_config_weights_and_card(saved):
    model, directory = saved
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert from_dict(ModelConfig, json.loads((directory / "config.json").read_text())) == model.cfg
    card = (directory / "README.md").read_text()
    for part, count in count_parameters(model).items():
        assert f"| {part} | {count:,} |" in card
    assert "license: mit" in card and "| ensemble/inter | 12.50 |" in card and "- Data: nothing" in card
    assert 'egovlpv2.EgoVLPv2.from_pretrained("egovlpv2-tiny-test")' in card
    sums = card_checksums(directory)
    assert set(sums) == {"config.json", "model.safetensors"}
    for name, (size, digest) in sums.items():
        data = (directory / name).read_bytes()
        assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())


def test_the_card_is_titled_with_the_model_name(tmp_path):
    """model.name (a recipe's) names the saved model: the card's title and config.json."""
    model = egovlpv2.create_model(dataclasses.replace(resolve_model_config("egovlpv2-tiny"),
                                                      name="egovlpv2-tiny-renamed"))
    model.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "README.md").read_text().split("---\n")[2].lstrip().startswith(
        "# egovlpv2-tiny-renamed ")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["name"] == "egovlpv2-tiny-renamed"


def test_saving_again_rewrites_the_card_checksums(saved, tmp_path):
    _, directory = saved
    other = tmp_path / "again"
    trained_like(seed=5).save_pretrained(other)
    before = card_checksums(other)["model.safetensors"]
    trained_like(seed=6).save_pretrained(other)  # the mixin keeps an existing README.md; ours is rewritten
    after = card_checksums(other)["model.safetensors"]
    assert before != after
    assert after[1] == hashlib.sha256((other / "model.safetensors").read_bytes()).hexdigest()


def test_from_pretrained_round_trips_bitwise(saved):
    model, directory = saved
    loaded = egovlpv2.EgoVLPv2.from_pretrained(directory)
    assert not loaded.training
    # kept in the card's metadata (as plain YAML: a tuple comes back as a list)
    assert loaded.provenance == dataclasses.replace(model.provenance, recipe={"optim": {"betas": [0.9, 0.98]}})
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    ref, got = outputs(model), outputs(loaded)
    assert all(torch.equal(ref[k], got[k]) for k in ref)


def test_num_frames_is_interpolated_as_in_create_model(saved):
    _, directory = saved
    loaded = egovlpv2.EgoVLPv2.from_pretrained(directory, num_frames=8)
    reference = egovlpv2.create_model("egovlpv2-tiny", checkpoint=directory, num_frames=8).eval()
    assert loaded.num_frames == 8 and loaded.cfg.video.num_frames == 8
    ref, got = outputs(reference, frames=8), outputs(loaded, frames=8)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    with pytest.raises(ConfigError, match="unknown from_pretrained overrides \\['projection'\\]"):
        egovlpv2.EgoVLPv2.from_pretrained(directory, projection="mlp4096")


def test_create_model_takes_a_hub_directory_strictly(saved, tmp_path):
    model, directory = saved
    loaded = egovlpv2.create_model("egovlpv2-tiny", checkpoint=directory).eval()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        egovlpv2.create_model("egovlpv2-tiny", checkpoint=directory, projection="mlp4096")
    with pytest.raises(CheckpointError, match="without model.safetensors"):
        egovlpv2.create_model("egovlpv2-tiny", checkpoint=tmp_path)


def build_hub_cache(cache, repo_id, directory, revision="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub downloads into: blobs named by content, snapshot links, refs/main."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for path in directory.iterdir():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (root / "blobs" / digest).write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(os.path.join("..", "..", "blobs", digest))
    (root / "refs" / "main").write_text(revision)


OFFLINE_LOAD = """
import sys, torch, egovlpv2
from tests.model.test_hub import inputs, outputs
model = egovlpv2.EgoVLPv2.from_pretrained("egovlpv2-org/tiny-test")
encoder = egovlpv2.EgoVLPv2VideoEncoder.from_pretrained("egovlpv2-org/tiny-test")
with torch.no_grad():
    video = encoder.encode_video(inputs()[0])
torch.save({**outputs(model), "encoder": video}, sys.argv[1])
print("provenance:", encoder.provenance.source)
try:
    egovlpv2.EgoVLPv2.from_pretrained("egovlpv2-org/not-cached")
except Exception as exc:
    print("refused:", type(exc).__name__)
"""


def test_offline_load_from_the_hub_cache_layout(saved, tmp_path):
    model, directory = saved
    cache = tmp_path / "hub"
    build_hub_cache(cache, "egovlpv2-org/tiny-test", directory)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "home"),
               PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", OFFLINE_LOAD, str(tmp_path / "out.pt")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=liveness(120))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    ref = outputs(model)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    assert torch.equal(got["encoder"], ref["video"])
    assert "refused:" in proc.stdout  # not in the cache and offline: an error, not a download
    assert "provenance: a test" in proc.stdout
