"""Fine-tuning's loader: epoch-seeded shuffled batches, the same count on every rank, resumable at any batch
size and world size.

Each epoch permutes all samples with (seed, epoch) and deals them round-robin to the ranks. After b batches
on each of W ranks at batch size B, the samples used are exactly ``order[:b * B * W]`` (a round-robin deal
of a prefix is a prefix), so the position is ``{"epoch", "consumed"}``: how many samples of the epoch's
permutation all ranks used together, whatever B and W were. A resume deals the rest, ``order[consumed:]``,
round-robin over the current ranks and cuts it to equal whole batches per rank (a rank with fewer batches
would leave the others waiting in a collective), so each sample of an epoch is used at most once.

What a position depends on, :func:`position_inputs` (the training samples per shard in index order, and
``data.seed``; the batch size only to name it in the log), is recorded with every checkpoint
(``LoopComponents.data_inputs``) and compared on resume, as pre-training does (egovlpv2.data.position). A
changed batch size or world size re-deals the epoch exactly; another training set or seed shuffles the
epoch otherwise, so it has no exact continuation: refused, or the next epoch starts with
``data.on_shard_change=next_epoch``.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Literal, Optional

import torch
from torch.utils.data import DataLoader

from egovlpv2.config import ConfigError
from egovlpv2.data.position import SHARD_CHANGE_OPTION, SHARDS, changed_inputs, describe_changes
from egovlpv2.dist.signals import ignore_stop_signals

log = logging.getLogger(__name__)

# The only input whose change a position survives unchanged; any other changes the epoch's permutation.
REDEALT = ("batch_size",)


def position_inputs(shard_counts: dict[str, int], seed: int, batch_size: int) -> dict:
    """What a fine-tuning position depends on: ``shard_counts`` (samples per shard, in the order that numbers
    the samples), the seed; and the batch size, which a resume may change."""
    return {SHARDS: [[name, int(count)] for name, count in shard_counts.items()], "seed": seed,
            "batch_size": batch_size}


class FinetuneLoader:
    """Shuffled batches of one rank of ``world_size``; ``dataset`` has ``set_epoch``, and ``inputs`` is its
    :func:`position_inputs` (computed once by the caller, which also records them with every checkpoint).

    ``state`` is a saved ``state_dict()`` (with the ``inputs`` it was taken at, when the checkpoint recorded
    them), ``{"resharded_from": [every old rank's state], "world_size": W}`` from a resume at another world
    size (egovlpv2.train.elastic_state), or ``{"epoch", "batch"}`` from before positions were counted in
    samples (read at this batch size and the saving world size).
    """

    def __init__(self, dataset, collate, batch_size: int, rank: int, world_size: int, num_workers: int,
                 seed: int, inputs: dict, state: Optional[dict] = None,
                 on_shard_change: Literal["refuse", "next_epoch"] = "refuse"):
        self.dataset, self.collate, self.batch_size = dataset, collate, batch_size
        self.rank, self.world_size, self.num_workers, self.seed = rank, world_size, num_workers, seed
        self.inputs = inputs
        self.skips: Counter = Counter()
        if self.batches_per_epoch() < 1:
            raise ValueError(f"{len(dataset)} training samples are fewer than one batch of {batch_size} on each "
                             f"of {world_size} ranks")
        self.epoch, self.consumed = self._resume(state, on_shard_change) if state else (0, 0)

    def batches_per_epoch(self) -> int:
        return len(self.dataset) // self.world_size // self.batch_size

    def _resume(self, state: dict, on_shard_change: str) -> tuple[int, int]:
        states, saved_world = ((state["resharded_from"], len(state["resharded_from"])) if "resharded_from" in state
                               else ([state], self.world_size))
        positions = {self._saved_position(s, saved_world) for s in states if s is not None}
        if not positions:
            return 0, 0
        if len(positions) > 1:
            raise RuntimeError(f"the old ranks' loader positions (epoch, consumed) disagree: {sorted(positions)}")
        epoch, consumed = positions.pop()
        changes = changed_inputs(state.get("inputs"), self.inputs)
        if any(key not in REDEALT for key in changes):
            if on_shard_change == "refuse":
                raise ConfigError(
                    f"the checkpoint's fine-tuning position is {consumed} samples into epoch {epoch} of another "
                    f"shuffle ({describe_changes(changes)}), so that epoch cannot go on over these inputs; "
                    f"restore them, or set {SHARD_CHANGE_OPTION} to start the next epoch with them")
            self._warn(f"{describe_changes(changes)}: epoch {epoch + 1} starts with these inputs (the rest of "
                       f"epoch {epoch} is dropped)")
            return epoch + 1, 0
        if consumed and (changes or saved_world != self.world_size):
            moved = [describe_changes(changes)] if changes else []
            moved += [f"world size {saved_world} -> {self.world_size}"] if saved_world != self.world_size else []
            self._warn(f"{', '.join(moved)}: the rest of epoch {epoch} ({len(self.dataset) - consumed} of "
                       f"{len(self.dataset)} samples) is dealt over {self.world_size} rank(s) in batches of "
                       f"{self.batch_size}, each sample once")
        return epoch, consumed

    def _saved_position(self, state: dict, saved_world: int) -> tuple[int, int]:
        if "consumed" in state:
            return state["epoch"], state["consumed"]
        # Counted in batches before: such a checkpoint could only resume unchanged, so at this batch size.
        return state["epoch"], state["batch"] * self.batch_size * saved_world

    def _warn(self, message: str) -> None:
        if self.rank == 0:
            log.warning("fine-tuning data position: %s", message)

    def _indices(self) -> list[int]:
        """This rank's share of the rest of the epoch: as many whole batches as every other rank gets."""
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(self.seed + self.epoch))
        rest = order[self.consumed:]
        batches = len(rest) // self.world_size // self.batch_size
        return rest[self.rank::self.world_size][:batches * self.batch_size].tolist()

    def __iter__(self):
        self.dataset.set_epoch(self.epoch)
        indices = self._indices()
        batches = [indices[i:i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        loader = DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate,
                            num_workers=self.num_workers, worker_init_fn=ignore_stop_signals)
        for batch in loader:
            self.skips.update(batch.pop("skipped"))
            self.consumed += self.batch_size * self.world_size
            yield batch
        self.epoch, self.consumed = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def skip_counts(self) -> dict[str, int]:
        return dict(self.skips)
