"""The pre-training loader resumed on another number of ranks and workers (directly, and through the
trainer's EpochSource): the rest of the epoch is re-dealt, every rank yields as many batches as the others,
and over the epoch each sample is an anchor once."""
import dataclasses
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from egovlpv2.data import build_pretrain_loader
from egovlpv2.data.pipeline import pretrain_manifest, reshard_loader_states
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.train.pretrain import EpochSource


@pytest.fixture
def even_cfg(data_cfg, egoclip_shards, tmp_path):
    """4 shards of 8 samples: 2 ranks with 1 worker each read 16 samples, so an uninterrupted epoch uses each once."""
    manifest = json.loads((egoclip_shards / "manifest.json").read_text())
    keep = [s for s in manifest["shards"] if s["samples"] == 8][:4]
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in keep:
        shutil.copy(egoclip_shards / s["name"], shards / s["name"])
    (shards / "manifest.json").write_text(json.dumps({**manifest, "shards": keep, "total_samples": 32}))
    return dataclasses.replace(data_cfg, shards=str(shards), batch_size=2, num_workers=0)


def run_stage(cfg, world, workers, states, batches=None):
    """Every rank of a world of ``world``: its loader from ``states`` (one per rank, or one shared re-deal),
    ``batches`` batches or to the end; returns (anchor ids, batch count per rank, states)."""
    cfg = dataclasses.replace(cfg, num_workers=workers)
    ids, counts, out = [], [], []
    for rank in range(world):
        loader = build_pretrain_loader(cfg, rank, world, 0, states[rank] if isinstance(states, list) else states)
        n = 0
        for batch in loader:
            ids += batch["sample_id"][:cfg.batch_size]
            n += 1
            if n == batches:
                break
        counts.append((n, len(loader)))
        out.append(loader.state_dict())
    return ids, counts, out


@pytest.mark.slow
def test_epoch_continues_on_other_world_sizes_with_each_sample_once(even_cfg):
    every = sorted(parse_meta(s)["id"] for p in sorted(Path(even_cfg.shards).glob("*.tar"))
                   for s in read_tar(str(p)))
    assert len(every) == 32
    ids0, counts0, states = run_stage(even_cfg, 2, 0, [None, None], batches=2)
    assert counts0 == [(2, 8), (2, 8)]
    # 2 ranks -> 4 ranks with 2 workers each: 24 samples left, 3 batches of 2 anchors on every rank.
    ids1, counts1, states = run_stage(even_cfg, 4, 2, reshard_loader_states(even_cfg, pretrain_manifest(even_cfg), states), batches=1)
    assert counts1 == [(1, 3)] * 4
    # An exact resume inside the new stage, at the same size.
    ids2, counts2, states = run_stage(even_cfg, 4, 2, states, batches=1)
    assert counts2 == [(1, 3)] * 4
    # 4 ranks -> 1 rank, through the trainer's data source: 8 samples left, 4 batches; 2 of them here.
    old = [{"epoch": 0, "loader": state, "past_skips": {}} for state in states]
    source = EpochSource(even_cfg, pretrain_manifest(even_cfg), 0, 1, {"resharded_from": old})
    batches = iter(source)
    ids3 = [i for _ in range(2) for i in next(batches)["sample_id"][:2]]
    assert len(source.loader) == 4
    # The same rank with 2 workers instead of 1 (another GPU type): the last 4 samples, 2 batches.
    source = EpochSource(dataclasses.replace(even_cfg, num_workers=2), source.manifest, 0, 1, source.state_dict())
    batches = iter(source)
    ids4 = [i for _ in range(2) for i in next(batches)["sample_id"][:2]]
    assert (source.epoch, len(source.loader), source.loader.batches_done) == (0, 2, 2)
    used = ids0 + ids1 + ids2 + ids3 + ids4
    assert Counter(used).most_common(1)[0][1] == 1 and sorted(used) == every
