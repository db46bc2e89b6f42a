"""The submit-time checks of the training entries: a fine-tuning run directory, like a pre-training one, is
submitted at another world size as an elastic resume (its loader position holds at any world size)."""
from egovlpv2.cluster.entries import ENTRIES, DeepSpeedRun, Prepared
from egovlpv2.finetune.config import load_finetune_config
from tests.helpers import write_checkpoint_tag


def test_a_finetuning_run_is_submitted_at_another_world_size_as_an_elastic_resume(tmp_path):
    tag_dir = write_checkpoint_tag(tmp_path / "run" / "checkpoints", 3, global_samples=24, total_steps=6)
    run = DeepSpeedRun(config=load_finetune_config("epic_mir"), ds_config={"zero_optimization": {"stage": 2}})
    prepared = Prepared(value=run, output_dir=tmp_path / "run", resolved_config={})
    entry = ENTRIES["finetune"]
    assert entry.preflight(prepared, 1) is None
    assert entry.plan(prepared, 1).startswith(f"elastic resume of {tag_dir}: step 3: world size 2 -> 1")
    assert entry.plan(prepared, 2) is None
