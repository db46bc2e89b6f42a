"""The pre-training loader on the synthetic shards: batch contract, order, resume, bad samples."""
import dataclasses
import io
import json
import shutil
import tarfile

import pytest
import torch

from egovlpv2.data import batches_per_epoch, build_pretrain_loader
from egovlpv2.data.pipeline import pretrain_manifest
from egovlpv2.data.stream import epoch_order, parse_meta, read_tar, worker_shard
from egovlpv2.shards.synthetic import NOUNS, VERBS


def _ids(loader):
    return [b["sample_id"] for b in loader]


def _metas(shard_dir):
    out = {}
    for path in sorted(shard_dir.glob("*.tar")):
        for sample in read_tar(str(path)):
            meta = parse_meta(sample)
            out[meta["id"]] = meta
    return out


def test_batch_contract_anchors_partners_and_tags(data_cfg, egoclip_shards):
    metas = _metas(egoclip_shards)
    loader = build_pretrain_loader(data_cfg, rank=0, world_size=1, epoch=0)
    assert len(loader) == batches_per_epoch(pretrain_manifest(data_cfg), data_cfg, 1) == 48 // 4
    batches = list(loader)
    assert len(batches) == 12
    b, n = data_cfg.batch_size, 2 * data_cfg.batch_size
    for batch in batches:
        assert set(batch) == {"video", "input_ids", "attention_mask", "verb", "noun", "sample_id"}
        assert batch["video"].shape == (n, 4, 3, 32, 32) and batch["video"].dtype == torch.uint8
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (n, 15)
        assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.long
        assert batch["verb"].shape == (n, 118) and batch["noun"].shape == (n, 582)
        assert len(batch["sample_id"]) == n
        for i in range(b):
            anchor, partner = metas[batch["sample_id"][i]], metas[batch["sample_id"][b + i]]
            assert anchor["group"] == partner["group"]  # scene-aware: same video, same 60 s window
            window = sum(m["group"] == anchor["group"] for m in metas.values())
            assert (anchor["id"] != partner["id"]) == (window > 1)
        for row, sid in enumerate(batch["sample_id"]):
            text = metas[sid]["text"]
            (verb,) = batch["verb"][row].nonzero().flatten().tolist()
            (noun,) = batch["noun"][row].nonzero().flatten().tolist()
            assert VERBS[verb][0] in text and f"{NOUNS[noun][0]} {NOUNS[noun][1]}" in text
    anchors = [sid for batch in batches for sid in batch["sample_id"][:b]]
    assert sorted(anchors) == sorted(metas)  # every clip once as an anchor in the epoch (48 = 12 x 4)


def test_order_is_fixed_by_seed_and_epoch(data_cfg):
    first = _ids(build_pretrain_loader(data_cfg, 0, 1, epoch=0))
    assert first == _ids(build_pretrain_loader(data_cfg, 0, 1, epoch=0))
    assert first != _ids(build_pretrain_loader(data_cfg, 0, 1, epoch=1))
    assert first != _ids(build_pretrain_loader(dataclasses.replace(data_cfg, seed=1), 0, 1, epoch=0))


def test_shard_order_is_shuffled_before_the_split():
    names = [f"s{i}" for i in range(7)]
    assert epoch_order(names, 0, 0) != epoch_order(names, 0, 1)
    for workers in (1, 2, 3, 4, 9):  # each epoch's shards are dealt out once over all workers
        dealt = [worker_shard(names, 0, 5, w, workers, k) for k in range(14) for w in range(workers)]
        assert dealt[:7] == epoch_order(names, 0, 5) and dealt[7:14] == epoch_order(names, 0, 6)[:7]


def _assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["sample_id"] == b["sample_id"]
        for key in ("video", "input_ids", "attention_mask", "verb", "noun"):
            assert torch.equal(a[key], b[key]), key


def _stop_after(loader, k):
    """The first ``k`` batches, then the state a checkpoint stores (through JSON)."""
    taken = []
    for batch in loader:
        taken.append(batch)
        if len(taken) == k:
            break
    return taken, json.loads(json.dumps(loader.state_dict()))


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_yields_exactly_the_uninterrupted_batches(data_cfg, workers):
    cfg = dataclasses.replace(data_cfg, num_workers=workers)
    rng_before = torch.get_rng_state()
    straight = list(build_pretrain_loader(cfg, 0, 1, epoch=0))
    # A resumed run restores the global torch RNG mid-epoch: the loader must not draw from it (dropout would drift).
    assert torch.equal(torch.get_rng_state(), rng_before)
    # Stop after 5 batches (an odd count: worker 1 is due next), resume, stop again after 3, resume again.
    first, state = _stop_after(build_pretrain_loader(cfg, 0, 1, epoch=0), 5)
    assert state["batches_done"] == 5
    second, state = _stop_after(build_pretrain_loader(cfg, 0, 1, epoch=0, resume_state=state), 3)
    assert state["batches_done"] == 8
    resumed = build_pretrain_loader(cfg, 0, 1, epoch=0, resume_state=state)
    rest = list(resumed)
    _assert_same_batches(first + second + rest, straight)
    assert resumed.state_dict()["batches_done"] == 12 and list(resumed) == []  # the epoch is over
    with pytest.raises(ValueError, match="does not fit"):
        build_pretrain_loader(dataclasses.replace(cfg, seed=5), 0, 1, epoch=0, resume_state=state)


def _rewrite_shard(path, change):
    members = []
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            members.append((info.name, tar.extractfile(info).read()))
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            data = change(name, data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bad_samples_are_skipped_and_counted(data_cfg, egoclip_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(egoclip_shards, shards)
    first = sorted(shards.glob("*.tar"))[0]
    keys = [s["__key__"] for s in read_tar(str(first))]
    broken, bad_tag = keys[0], keys[1]

    def change(name, data):
        if name == f"{broken}.mp4":
            return b"\x00" * 64 + data[len(data) // 2:]
        if name == f"{bad_tag}.json":
            return json.dumps({**json.loads(data), "noun": [9999]}).encode()
        return data

    _rewrite_shard(first, change)
    second = sorted(shards.glob("*.tar"))[1]
    second.write_bytes(second.read_bytes()[:20000])  # a truncated shard: its readable part is still used
    cfg = dataclasses.replace(data_cfg, shards=str(shards))
    loader = build_pretrain_loader(cfg, 0, 1, epoch=0)
    straight = list(loader)
    anchors = [sid for batch in straight for sid in batch["sample_id"][:4]]
    counts = loader.skip_counts()
    assert counts.get("decode_error", 0) >= 1 and counts.get("tag_out_of_range", 0) >= 1
    assert counts.get("shard_read_error", 0) >= 1
    assert broken not in anchors and bad_tag not in anchors
    assert loader.state_dict()["skips"] == counts
    # Resumed after each k: the same batches, and skips met again while replaying are not counted twice.
    for k in (1, 6):
        first, state = _stop_after(build_pretrain_loader(cfg, 0, 1, epoch=0), k)
        resumed = build_pretrain_loader(cfg, 0, 1, epoch=0, resume_state=state)
        _assert_same_batches(first + list(resumed), straight)
        assert resumed.skip_counts() == counts


def test_jpeg_shards_give_the_same_batch_contract(data_cfg, synthetic_dir, tmp_path):
    from egovlpv2.shards.make import ShardRun, make_shards
    from egovlpv2.shards.transcode import EncodeOptions

    manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(synthetic_dir / "egoclip.csv"),
                                        videos=str(synthetic_dir / "videos"), out=str(tmp_path / "jpgs"), workers=1,
                                        samples_per_shard=10, progress=False,
                                        encode=EncodeOptions(frame_format="jpgs", jpeg_frames=6)))
    assert ok and manifest["total_samples"] == 48
    loader = build_pretrain_loader(dataclasses.replace(data_cfg, shards=str(tmp_path / "jpgs")), 0, 1, epoch=0)
    batch = next(iter(loader))
    assert batch["video"].shape == (8, 4, 3, 32, 32) and batch["video"].dtype == torch.uint8
    assert batch["video"].float().std() > 10  # real picture content, not blank frames
    assert loader.skip_counts() == {} or set(loader.skip_counts()) == {"partner_is_self"}


def test_the_manifest_is_read_once_and_passed_down(data_cfg, monkeypatch):
    from egovlpv2.data import manifest as manifest_module

    reads = []
    real = manifest_module.read_manifest
    monkeypatch.setattr(manifest_module, "read_manifest", lambda d: reads.append(d) or real(d))
    manifest = pretrain_manifest(data_cfg)
    assert reads == [data_cfg.shards]
    loader = build_pretrain_loader(data_cfg, 0, 1, epoch=0, manifest=manifest)
    assert batches_per_epoch(manifest, data_cfg, 1) == len(loader) == len(list(loader))
    assert reads == [data_cfg.shards]  # neither the loader nor its workers read it again
