"""A resume after the data inputs changed (docs/faults.md R2-2): a new batch size re-deals the rest of the
epoch, each sample still once; a changed shard set is refused with one error line naming the override, and
with the override the next epoch starts on the new shards."""
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic
from egovlpv2.shards.transcode import EncodeOptions
from tests.faults.ranks import REPO, start
from tests.helpers import liveness

WORKER = REPO / "tests" / "faults" / "resume_worker.py"
SAVED_STEPS = 2  # at batch 4 on 2 ranks: 16 of the 48 samples used when the checkpoint is taken


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """48 samples in shards of 8, and a 2-rank run at batch 4 stopped (saved) after SAVED_STEPS steps."""
    root = tmp_path_factory.mktemp("resume-inputs")
    make_synthetic(root / "src", SyntheticSpec(videos=6, mcq_videos=1, clips_per_video=8, clip_spacing_s=8.0,
                                               clip_len_s=1.0, fps=10.0, size=32, mcq_questions=1, seed=3),
                   progress=False)
    manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(root / "src" / "egoclip.csv"),
                                        videos=str(root / "src" / "videos"), out=str(root / "shards"), workers=1,
                                        samples_per_shard=8, progress=False, encode=EncodeOptions(short_side=0)))
    assert ok and manifest["total_samples"] == 48
    data = [f"shards={root / 'shards'}", f"tokenizer={root / 'src' / 'tokenizer'}"]
    run_dir = root / "run"
    assert worker(run_dir, 100, "--stop-after", SAVED_STEPS, *data, "batch_size=4") == [0, 0]
    return root, run_dir, data


def worker(run_dir: Path, *args) -> list[int]:
    job = start(WORKER, [run_dir, *args], run_dir.parent / "logs")
    codes = job.wait(liveness(240))
    (run_dir.parent / "last.log").write_text(job.output())
    return codes


def used(run_dir: Path) -> list[tuple[int, str]]:
    """(epoch, anchor id) of every batch every rank trained on, over every run in ``run_dir``."""
    return [(epoch, i) for path in sorted(run_dir.glob("used_rank*.json"))
            for epoch, ids in json.loads(path.read_text())["batches"] for i in ids]


def resumed_copy(saved, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(saved[1], run_dir)
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("batch_size,left_batches", [(2, 8), (8, 2)])
def test_new_batch_size_uses_each_sample_of_the_epoch_once(saved, tmp_path, batch_size, left_batches):
    run_dir = resumed_copy(saved, tmp_path)
    # 32 samples left: 8 batches of 2 or 2 of 8 anchors per rank end epoch 0; one step more starts epoch 1.
    total = SAVED_STEPS + left_batches + 1
    assert worker(run_dir, total, *saved[2], f"batch_size={batch_size}") == [0, 0], (run_dir.parent / "last.log").read_text()
    epoch0 = Counter(i for epoch, i in used(run_dir) if epoch == 0)
    assert len(epoch0) == 48 and set(epoch0.values()) == {1}, epoch0.most_common(3)
    assert sum(1 for epoch, _ in used(run_dir) if epoch == 1) == 2 * batch_size
    state = json.loads((run_dir / "checkpoints" / f"step{total:08d}" / "trainer_state.json").read_text())
    assert state["data_inputs"]["batch_size"] == batch_size and len(state["data_inputs"]["shards"]) == 6


def edited_shards(saved, tmp_path: Path, change: str) -> list[str]:
    """The saved run's data options over a copy of its shards with the last one removed or one more added."""
    root, _, data = saved
    shards = tmp_path / "shards"
    shutil.copytree(root / "shards", shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    if change == "removed":
        gone = manifest["shards"].pop()
        (shards / gone["name"]).unlink()
    else:
        extra = dict(manifest["shards"][0], name="egoclip-extra.tar")
        shutil.copy(shards / manifest["shards"][0]["name"], shards / extra["name"])
        manifest["shards"].append(extra)
    manifest["total_samples"] = sum(s["samples"] for s in manifest["shards"])
    (shards / "manifest.json").write_text(json.dumps(manifest))
    return [f"shards={shards}", data[1], "batch_size=4"]


@pytest.mark.slow
@pytest.mark.parametrize("change", ["removed", "added"])
def test_changed_shards_are_refused_unless_the_next_epoch_is_asked_for(saved, tmp_path, change):
    run_dir = resumed_copy(saved, tmp_path)
    data = edited_shards(saved, tmp_path, change)
    assert worker(run_dir, SAVED_STEPS + 1, *data) == [2, 2]
    log = (tmp_path / "last.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "Traceback" not in log, log  # one line per rank
    assert f"shards {change}" in errors[0] and "data.on_shard_change=next_epoch" in errors[0], errors[0]
    assert not (run_dir / "checkpoints" / f"step{SAVED_STEPS + 1:08d}").exists()
    if change == "added":
        return  # accepting goes the same way for both changes: tested once

    assert worker(run_dir, SAVED_STEPS + 1, *data, "on_shard_change=next_epoch") == [0, 0], \
        (tmp_path / "last.log").read_text()
    names = {s["name"] for s in json.loads((Path(data[0].split("=", 1)[1]) / "manifest.json").read_text())["shards"]}
    resumed = [i for epoch, i in used(run_dir) if epoch == 1]
    assert len(resumed) == 8 and not [e for e, _ in used(run_dir) if e > 1]
    rank0 = torch.load(run_dir / "checkpoints" / f"step{SAVED_STEPS + 1:08d}" / "rank_00000.pt", weights_only=True)
    assert rank0["loader"]["epoch"] == 1 and rank0["loader"]["loader"]["batches_done"] == 1
    assert names == {name for name, _ in json.loads(
        (run_dir / "checkpoints" / f"step{SAVED_STEPS + 1:08d}" / "trainer_state.json").read_text())
        ["data_inputs"]["shards"]}
