"""A fine-tuning run (egovlpv2-finetune under torchrun, real processes) stopped on 2 ranks resumes on 1 rank
and then at another batch size: each resume goes on where the epoch stood, and the step budget of the
epoch is counted in samples."""
import json
from pathlib import Path

import pytest
import torch

from egovlpv2.train.checkpoint_commit import latest_complete_state
from tests.eval import synthetic_benchmarks as synth
from tests.helpers import REPO, torchrun

FINETUNE = REPO / "launch" / "finetune.py"


def _position(run: Path) -> tuple[dict, dict]:
    """(trainer_state.json, rank 0's loader state) of the run's latest checkpoint."""
    tag_dir, state = latest_complete_state(run / "checkpoints")
    return state, torch.load(tag_dir / "rank_00000.pt", weights_only=True)["loader"]


@pytest.mark.slow
def test_a_finetuning_run_resumes_on_fewer_ranks_and_at_another_batch_size(tmp_path):
    train = synth.make_epic_mir(tmp_path / "train", repeats=2, seed=50)  # 24 clips
    tokenizer = synth.make_tokenizer(tmp_path)
    ds = tmp_path / "zero2.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
                              "gradient_clipping": 1.0, "zero_optimization": {"stage": 2}}))
    run = tmp_path / "run"
    args = ["--task", "epic_mir", "--deepspeed", ds, "model=egovlpv2-tiny", f"data.train_shards={train['shards']}",
            f"data.tokenizer={tokenizer}", "data.num_frames=2", "data.img_size=64", "data.num_workers=0",
            "train.epochs=1", "train.grad_checkpointing=false", f"train.output_dir={run}",
            "logging.tensorboard=false", "logging.progress_bar=false", "eval.at_end=false"]

    torchrun(FINETUNE, [*args, "data.batch_size=2", "train.stop_after_steps=2"], nproc=2, timeout=300)
    state, loader = _position(run)
    assert (state["step"], state["total_steps"], loader) == (2, 6, {"epoch": 0, "consumed": 8})

    # 1 rank at batch 2: the 16 samples left take 8 steps.
    out = torchrun(FINETUNE, [*args, "data.batch_size=2", "train.stop_after_steps=2"], nproc=1, timeout=300)
    assert "world size 2 -> 1: the rest of epoch 0 (16 of 24 samples)" in out.stderr
    state, loader = _position(run)
    assert (state["step"], state["total_steps"], loader) == (4, 10, {"epoch": 0, "consumed": 12})

    # Batch 4: the 12 samples left take 3 steps, and the epoch ends with its last sample.
    out = torchrun(FINETUNE, [*args, "data.batch_size=4"], nproc=1, timeout=300)
    assert "data.batch_size 2 -> 4: the rest of epoch 0 (12 of 24 samples)" in out.stderr
    state, loader = _position(run)
    assert (state["step"], state["total_steps"], loader) == (7, 7, {"epoch": 0, "consumed": 24})
    assert state["data_inputs"]["batch_size"] == 4 and sum(n for _, n in state["data_inputs"]["shards"]) == 24
