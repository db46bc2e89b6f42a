"""One answer to "the latest complete checkpoint": with `latest` naming a torn tag, resume, the elastic step
budget and egovlpv2-submit's checks all take the newest complete one."""
from egovlpv2.cluster.entries import DeepSpeedRun, Prepared, _training_plan, _training_preflight
from egovlpv2.train.checkpoint_commit import resumable_tag
from egovlpv2.train.config import load_pretrain_config
from egovlpv2.train.elastic_state import steps_for_epochs
from tests.helpers import write_checkpoint_tag


def test_a_torn_latest_gives_the_same_checkpoint_to_resume_elastic_resume_and_submit(tmp_path):
    ckpt = tmp_path / "run" / "checkpoints"
    write_checkpoint_tag(ckpt, 3, global_samples=48, total_steps=6)
    torn = write_checkpoint_tag(ckpt, 6, global_samples=96, total_steps=6)
    (torn / "rank_00001.pt").write_bytes(b"x" * 4)  # a rank's file cut short after the completeness record
    (ckpt / "latest").write_text(torn.name)

    assert resumable_tag(ckpt) == "step00000003"  # what CheckpointManager.load_latest restores
    # The step budget counts the samples of step 3 (48 of 80): 3 + ceil(32 / 8) steps, not step 6's.
    assert steps_for_epochs(ckpt, 2, epochs=1, steps_per_epoch=10, global_batch=8) == 7
    run = DeepSpeedRun(config=load_pretrain_config("demo"), ds_config={"zero_optimization": {"stage": 2}})
    prepared = Prepared(value=run, output_dir=tmp_path / "run", resolved_config={})
    assert _training_preflight(prepared, 2) is None  # step 6 of 6 would read as finished
    plan = _training_plan(prepared, 4)
    assert plan.startswith(f"elastic resume of {ckpt / 'step00000003'}: step 3:"), plan
