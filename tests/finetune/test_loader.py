"""The fine-tuning loader deals equal, disjoint batches and resumes its epoch at any batch size and world size,
each sample once; a changed seed or training set is refused, naming it."""
import logging

import pytest
import torch

from egovlpv2.errors import UserError
from egovlpv2.finetune.loader import FinetuneLoader, position_inputs

SEED = 3


class _Counting(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i

    def shard_counts(self):
        return {"counting.tar": self.n}


def _collate(items):
    return {"index": list(items), "skipped": {}}


def _loader(data, batch_size, rank, world, state=None, seed=SEED, **kwargs):
    return FinetuneLoader(data, _collate, batch_size, rank, world, 0, seed=seed,
                          inputs=position_inputs(data.shard_counts(), seed, batch_size), state=state, **kwargs)


def _take(loader, batches):
    """The indices of the first ``batches`` batches of the loader's epoch (the epoch stays unfinished)."""
    iterator = iter(loader)
    return [i for _ in range(batches) for i in next(iterator)["index"]]


def _saved_states(loaders, world):
    """What the loop hands each of ``world`` new ranks: its own state with the recorded inputs, or (another
    world size) every old rank's state."""
    inputs = loaders[0].inputs
    if world == len(loaders):
        return [{**loader.state_dict(), "inputs": inputs} for loader in loaders]
    return [{"resharded_from": [loader.state_dict() for loader in loaders], "world_size": world, "inputs": inputs}] * world


def test_loader_deals_equal_disjoint_batches_and_resumes():
    data = _Counting(23)
    ranks = [_loader(data, 4, r, 2) for r in range(2)]
    epoch = [[b["index"] for b in loader] for loader in ranks]
    assert [len(e) for e in epoch] == [2, 2]  # 23 // 2 // 4: the same count on both ranks
    seen = [i for e in epoch for b in e for i in b]
    assert len(seen) == len(set(seen)) == 16
    # Resume after the first batch of epoch 1 on rank 0: the rest of that epoch, as uninterrupted.
    loader = ranks[0]
    full = [b["index"] for b in loader]
    assert full != epoch[0]  # a new shuffle each epoch
    ranks = [_loader(data, 4, r, 2) for r in range(2)]
    for loader in ranks:
        list(loader)  # epoch 0
        _take(loader, 1)
    assert ranks[0].state_dict() == {"epoch": 1, "consumed": 8}  # samples of both ranks together
    resumed = _loader(data, 4, 0, 2, state=_saved_states(ranks, 2)[0])
    assert [b["index"] for b in resumed] == full[1:]
    assert resumed.state_dict() == {"epoch": 2, "consumed": 0}


def test_a_position_counted_in_batches_still_resumes():
    """Checkpoints from before positions were counted in samples: batches of this batch size on the saving ranks."""
    data = _Counting(23)
    full = [b["index"] for b in _loader(data, 4, 0, 2, state={"epoch": 1, "consumed": 0})]
    assert [b["index"] for b in _loader(data, 4, 0, 2, state={"epoch": 1, "batch": 1})] == full[1:]
    order = torch.randperm(23, generator=torch.Generator().manual_seed(SEED + 1)).tolist()
    one_rank = _loader(data, 4, 0, 1, state={"resharded_from": [{"epoch": 1, "batch": 1}] * 2, "world_size": 1})
    assert [i for b in one_rank for i in b["index"]] == order[8:8 + 12]


@pytest.mark.parametrize("batch_size,world", [(2, 2), (8, 2), (4, 1), (4, 3)])
def test_a_resume_at_another_batch_size_or_world_size_uses_each_sample_of_the_epoch_once(caplog, batch_size, world):
    data = _Counting(61)
    before = [_loader(data, 4, r, 2) for r in range(2)]
    used = [i for loader in before for i in _take(loader, 3)]
    assert len(set(used)) == 24

    with caplog.at_level(logging.WARNING, logger="egovlpv2.finetune.loader"):
        after = [_loader(data, batch_size, r, world, state) for r, state in enumerate(_saved_states(before, world))]
    rest = [[b["index"] for b in loader] for loader in after]
    assert len({len(batches) for batches in rest}) == 1  # the same count on every rank, or the others hang
    assert all(len(b) == batch_size for batches in rest for b in batches)
    dealt = [i for batches in rest for b in batches for i in b]
    assert len(dealt) == len(set(dealt)) and not set(dealt) & set(used)
    assert 61 - len(used) - len(dealt) < batch_size * world  # only a remainder short of one batch per rank is left
    assert all(loader.state_dict() == {"epoch": 1, "consumed": 0} for loader in after)
    change = f"data.batch_size 4 -> {batch_size}" if batch_size != 4 else f"world size 2 -> {world}"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and change in warnings[0], warnings  # one line, on rank 0
    # The next epoch is an ordinary one at the new settings.
    fresh = [_loader(data, batch_size, r, world, {"epoch": 1, "consumed": 0}) for r in range(world)]
    assert [[b["index"] for b in loader] for loader in after] == [[b["index"] for b in loader] for loader in fresh]


@pytest.mark.parametrize("seed,samples,named", [(4, 61, "data.seed 3 -> 4"),
                                                (SEED, 70, "shards recounted: counting.tar 61 -> 70 samples")])
def test_a_changed_seed_or_training_set_is_refused_naming_it_or_starts_the_next_epoch(caplog, seed, samples, named):
    before = [_loader(_Counting(61), 4, r, 2) for r in range(2)]
    for loader in before:
        _take(loader, 3)
    states = _saved_states(before, 2)
    with pytest.raises(UserError, match=named) as refused:
        _loader(_Counting(samples), 4, 0, 2, states[0], seed=seed)
    assert "data.on_shard_change=next_epoch" in str(refused.value)
    with caplog.at_level(logging.WARNING, logger="egovlpv2.finetune.loader"):
        nxt = _loader(_Counting(samples), 4, 0, 2, states[0], seed=seed, on_shard_change="next_epoch")
    assert nxt.state_dict() == {"epoch": 1, "consumed": 0} and named in caplog.text
