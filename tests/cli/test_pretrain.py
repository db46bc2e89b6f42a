"""egovlpv2-pretrain reports bad inputs clearly, before any process group exists."""
import pytest
import torch.distributed as dist

from egovlpv2.cli import pretrain, run_cli


@pytest.fixture
def inputs(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "manifest.json").write_text("{}")
    tokenizer = tmp_path / "tok"
    tokenizer.mkdir()
    # The demo recipe names relative data paths; only what a test changes may be missing.
    return [f"data.shards={shards}", f"data.tokenizer={tokenizer}", f"train.output_dir={tmp_path / 'run'}",
            "eval.egomcq_shards=null"]


@pytest.mark.parametrize("change, message", [
    (["data.shards=/nonexistent/shards"], "no manifest.json"),
    (["data.tokenizer=/nonexistent/tok"], "data.tokenizer"),
    (["model.vision_init=/nonexistent/vit.safetensors"], "model.vision_init"),
    (["eval.egomcq_shards=/nonexistent/mcq"], "eval.egomcq_shards"),
    (["optim.lr=-1"], "optim.lr"),
])
def test_bad_inputs_fail_before_the_process_group(inputs, change, message, capsys):
    assert run_cli(pretrain.main, ["--config", "demo", *inputs, *change]) == 2
    assert message in capsys.readouterr().err
    assert not dist.is_initialized()


def test_ds_config_disagreeing_with_the_recipe(inputs, tmp_path, capsys):
    bad = tmp_path / "ds.json"
    bad.write_text('{"train_micro_batch_size_per_gpu": 3, "gradient_clipping": 1.0}')
    assert run_cli(pretrain.main, ["--deepspeed", str(bad), "--config", "demo", *inputs]) == 2
    assert "train_micro_batch_size_per_gpu=3 disagrees with the recipe (data.batch_size gives 16)" in capsys.readouterr().err
    assert run_cli(pretrain.main, ["--deepspeed", str(tmp_path / "missing.json"), "--config", "demo", *inputs]) == 2
    assert "DeepSpeed config not found" in capsys.readouterr().err
    assert not dist.is_initialized()
