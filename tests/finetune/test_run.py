"""A short CPU fine-tune (DeepSpeed, real process) improves EK-100-style mAP on a tiny synthetic retrieval set."""
import os

import pytest
import torch
import torch.multiprocessing as mp

import egovlpv2
from egovlpv2.data import DataConfig
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.dist.env import free_port
from egovlpv2.finetune.config import FinetuneConfig, load_finetune_config
from egovlpv2.eval.runtime import current_context
from egovlpv2.eval.benchmarks import evaluate_task
from tests.eval import synthetic_benchmarks as synth

FRAMES = 2



def _finetune_child(_index: int, cfg: FinetuneConfig, port: int, out: str) -> None:
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)  # tiny tensors: one thread beats oversubscribed cores
    from egovlpv2.finetune.run import run_finetuning

    ds = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
          "gradient_clipping": 1.0, "zero_optimization": {"stage": 2}}
    result = run_finetuning(cfg, ds)
    torch.save({"evaluations": result.evaluations, "history": result.history}, out)


@pytest.mark.slow
def test_short_finetune_improves_epic_map(tmp_path):
    train = synth.make_epic_mir(tmp_path / "train", repeats=4, seed=50)
    test = synth.make_epic_mir(tmp_path / "test", repeats=2, seed=0)
    tokenizer = synth.make_tokenizer(tmp_path)
    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny", num_frames=FRAMES).eval()
    init = tmp_path / "init.pt"
    torch.save(model.state_dict(), init)

    data_cfg = DataConfig(shards=str(test["shards"]), tokenizer=str(tokenizer), num_frames=FRAMES, img_size=64)
    before = evaluate_task("epic_mir", model, test["shards"], data_cfg, load_tokenizer(tokenizer),
                           current_context("cpu"), batch_size=8, num_workers=0)

    cfg = load_finetune_config("epic_mir", [
        "model=egovlpv2-tiny", f"init_checkpoint={init}", f"data.train_shards={train['shards']}",
        f"data.eval_shards={test['shards']}", f"data.tokenizer={tokenizer}", f"data.num_frames={FRAMES}",
        "data.img_size=64", "data.num_workers=0", "optim.lr=3e-4", "data.batch_size=12",
        "train.max_steps=80", "train.grad_checkpointing=false", f"train.output_dir={tmp_path / 'run'}",
        "logging.tensorboard=false", "logging.progress_bar=false", "eval.every_steps=null", "eval.batch_size=8"])
    out = tmp_path / "result.pt"
    mp.start_processes(_finetune_child, args=(cfg, free_port(), str(out)), nprocs=1, start_method="spawn")
    result = torch.load(out, weights_only=False)
    after = result["evaluations"][80]
    losses = [h["loss"] for h in result["history"]]
    assert sum(losses[-10:]) < sum(losses[:10])
    assert after["mAP_avg"] > before["mAP"]["avg"] + 5.0, (before["mAP"], after)
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_inputs_are_checked_together_before_any_collective(tmp_path):
    """Every problem of the inputs is named in one user error, before a process group exists."""
    from egovlpv2.config import ConfigError
    from egovlpv2.finetune.run import check_inputs

    cfg = load_finetune_config("epic_mir", ["model=egovlpv2-tiny", f"data.train_shards={tmp_path / 'none'}",
                                            f"data.tokenizer={tmp_path}", f"data.relevancy={tmp_path / 'r.pkl'}",
                                            "data.img_size=32"])
    with pytest.raises(ConfigError) as caught:
        check_inputs(cfg)
    message = str(caught.value)
    for named in ("data.train_shards=", "data.relevancy=", "data.img_size=32 but the model egovlpv2-tiny takes 64x64"):
        assert named in message, message
