"""Two real processes (gloo) on shards that do not divide evenly: equal batch counts, no hang."""
import dataclasses
import json
import shutil
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from egovlpv2.data import build_pretrain_loader
from egovlpv2.dist.env import free_port
from tests.helpers import liveness



def _rank_main(rank, world, port, cfg, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    loader = build_pretrain_loader(cfg, rank, world, epoch=0)
    ids, steps = [], 0
    for batch in loader:
        flag = torch.ones(1)
        dist.all_reduce(flag)  # a collective per step, as in training: a rank that ran dry would hang here
        assert flag.item() == world
        ids += batch["sample_id"][:cfg.batch_size]
        steps += 1
    dist.barrier()
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"steps": steps, "len": len(loader), "ids": ids}))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_yield_equal_batches_on_uneven_shards(data_cfg, egoclip_shards, tmp_path):
    manifest = json.loads((egoclip_shards / "manifest.json").read_text())
    keep = manifest["shards"][:3]  # 3 shards over 2 ranks
    shards = tmp_path / "shards"
    shards.mkdir()
    for s in keep:
        shutil.copy(egoclip_shards / s["name"], shards / s["name"])
    total = sum(s["samples"] for s in keep)
    (shards / "manifest.json").write_text(json.dumps({**manifest, "shards": keep, "total_samples": total}))
    cfg = dataclasses.replace(data_cfg, shards=str(shards), batch_size=2, num_workers=0)
    ctx = mp.start_processes(_rank_main, args=(2, free_port(), cfg, tmp_path), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.time() + liveness(240)
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("ranks did not finish: a rank ran dry or hung")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    expected = total // (2 * cfg.batch_size)
    assert [r["steps"] for r in results] == [r["len"] for r in results] == [expected, expected]
    both = results[0]["ids"] + results[1]["ids"]
    assert len(set(both)) >= len(both) - 2 * (cfg.shuffle_buffer + 8)  # ranks read different shards
