"""Pre-training end to end on 2 real CPU ranks: synthetic shards -> DeepSpeed ZeRO-2 / ZeRO-3 with
activation checkpointing and bf16 -> checkpoints, resume, EgoMCQ -> export -> a fresh model."""
import json
from pathlib import Path

import pytest
import torch

import egovlpv2
from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic
from egovlpv2.train.config import load_pretrain_config
from egovlpv2.train.export import export
from egovlpv2.train.hub_export import convert_to_hub
from tests.helpers import REPO, torchrun

WORKER = Path(__file__).with_name("pretrain_worker.py")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic(root / "src", SyntheticSpec(videos=6, clips_per_video=8, mcq_videos=5, mcq_questions=6, size=64),
                   progress=False)
    for task, flag, path in (("egoclip", "--csv", "egoclip.csv"), ("egomcq", "--json", "egomcq.json")):
        subprocess.run([sys.executable, "shard_tools/make_shards.py", "--task", task, flag, str(root / "src" / path),
                        "--videos", str(root / "src" / "videos"), "--out", str(root / task), "--workers", "1",
                        "--samples-per-shard", "16", "--no-progress"], cwd=REPO, check=True, capture_output=True)
    return root


def overrides(shards: Path, out: Path, steps: int, **extra) -> list[str]:
    items = {"data.shards": shards / "egoclip", "data.tokenizer": shards / "src" / "tokenizer",
             "eval.egomcq_shards": shards / "egomcq", "train.output_dir": out, "train.max_steps": steps,
             "data.batch_size": 4, "data.num_workers": 1, "data.shuffle_buffer": 8, "optim.lr": 1e-3,
             "optim.warmup_fraction": 0.0, "checkpoint.every_steps": 3, "logging.every_steps": 2,
             "logging.progress_bar": False, "eval.every_steps": 1000, "train.precision": "null", **extra}
    return [f"{k}={v}" for k, v in items.items()]


def results(out: Path, rank: int) -> list[dict]:
    files = sorted(out.glob(f"result_rank{rank}_*.json"), key=lambda p: p.stat().st_mtime)
    return [json.loads(p.read_text()) for p in files]


def check_export_matches(out: Path, tmp_path: Path):
    """The consolidated file loads strictly into a fresh model that computes what the trained engine did."""
    ref = torch.load(out / "reference.pt", weights_only=True)
    cfg = load_pretrain_config(out / "config.yaml")
    path = export(out / "checkpoints", tmp_path / "model.safetensors", cfg.model)
    model = egovlpv2.create_model(cfg.model, checkpoint=str(path)).to(torch.bfloat16).eval()
    video, ids, mask = ref["inputs"]
    with torch.no_grad():
        got = {"video": model.encode_video(video.to(torch.bfloat16)).float(),
               "text": model.encode_text(ids, mask).float(),
               "vtm": model.match_score(video.to(torch.bfloat16), ids, mask).float()}
    for name, param in model.named_parameters():  # the training weights, exactly (bf16 copies of the fp32 master)
        assert torch.equal(param, ref["params"][name]), name
    # ZeRO-2 runs the model's own ops: identical outputs. ZeRO-3 swaps in its own linear autograd function
    # (matmul + add instead of a fused addmm), which rounds differently in bf16: within one bf16 step.
    tolerance = 0 if ref["zero_stage"] < 3 else 2 ** -8
    for key, value in ref["outputs"].items():
        torch.testing.assert_close(got[key], value, rtol=tolerance, atol=tolerance, msg=key)
    released = export(out / "checkpoints", tmp_path / "released.pth", cfg.model, layout="released")
    assert "module.video_model.blocks.0.timeattn.qkv.weight" in torch.load(released, weights_only=True)["state_dict"]
    again = egovlpv2.create_model(cfg.model, checkpoint=str(released))
    fresh = egovlpv2.create_model(cfg.model, checkpoint=str(path))
    for (name, a), (_, b) in zip(again.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    # The run directory as a Hub-format model: the same weights, the run's recipe and EgoMCQ figures in its card.
    convert_to_hub(out, tmp_path / "hub")
    hub = egovlpv2.EgoVLPv2.from_pretrained(tmp_path / "hub")
    for (name, a), (_, b) in zip(hub.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    card = (tmp_path / "hub" / "README.md").read_text()
    assert f"training run `{out.resolve()}`, checkpoint `{(out / 'checkpoints' / 'latest').read_text().strip()}`" in card
    assert "max_steps: " in card and f"shards `{cfg.data.shards}`" in card
    if (out / "eval_egomcq.json").is_file():
        assert "EgoMCQ accuracy (%) during pre-training" in card and "| ensemble_inter |" in card


def check_learning(history: list[dict]):
    losses = [h["loss"] for h in history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert {"egonce", "mlm", "vtm", "grad_norm"} <= set(history[0])
    assert sum(losses[-2:]) < sum(losses[:2]), losses


@pytest.mark.slow
def test_zero2_trains_checkpoints_evaluates_and_exports(shards, tmp_path):
    out = tmp_path / "run"
    torchrun(WORKER, ["demo", "zero2", *overrides(shards, out, 8)])
    (r0,) = results(out, 0)
    assert r0["finished"] and r0["step"] == 8
    check_learning(r0["history"])
    assert (out / "checkpoints" / "latest").read_text().strip() == "step00000008"
    assert sorted(p.name for p in (out / "checkpoints").glob("step*")) == ["step00000006", "step00000008"]
    final = r0["evaluations"]["8"]  # EgoMCQ at the end: three scores x two splits, percentages
    assert set(final) == {f"{k}_{s}" for k in ("dual", "vtm", "ensemble") for s in ("inter", "intra")}
    assert all(0 <= v <= 100 for v in final.values())
    assert json.loads((out / "eval_egomcq.json").read_text())["8"] == final
    assert list((out / "tensorboard").glob("events.out.tfevents.*")) and (out / "train.log").is_file()
    assert load_pretrain_config(out / "config.yaml").train.max_steps == 8  # the resolved config
    check_export_matches(out, tmp_path)


@pytest.mark.slow
def test_zero3_resumes_exactly_and_exports(shards, tmp_path):
    out = tmp_path / "run"
    zero3 = "zero3"
    torchrun(WORKER, ["demo", zero3, *overrides(shards, out, 6, **{"train.stop_after_steps": 3,
                                                                   "eval.at_end": "false"})])
    torchrun(WORKER, ["demo", zero3, *overrides(shards, out, 6, **{"eval.at_end": "false"})])
    straight = tmp_path / "straight"
    torchrun(WORKER, ["demo", zero3, *overrides(shards, straight, 6, **{"eval.at_end": "false"})])
    for rank in (0, 1):
        first, second = results(out, rank)
        assert (first["step"], first["finished"], second["step"], second["finished"]) == (3, False, 6, True)
        assert [h["step"] for h in second["history"]] == [4, 5, 6]  # continued, not restarted
        # The whole stack resumes exactly: model, optimizer, schedule, RNG, the objective's step-keyed draws
        # and the shard loader's position give the uninterrupted run's losses, bitwise on CPU.
        (full,) = results(straight, rank)
        assert first["history"] + second["history"] == full["history"]
    check_learning(first["history"] + second["history"])
    check_export_matches(out, tmp_path)


@pytest.mark.slow
def test_resume_mid_epoch_reproduces_the_losses_bitwise(shards, tmp_path):
    """2 ranks, 2 loader workers each, 6 batches an epoch: stopped after step 3 (worker 1 due next), resumed.
    The loader replays its streams and leaves the global torch RNG alone, so dropout and data both match."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    zero2 = "zero2"
    extra = {"data.num_workers": 2, "eval.at_end": "false", "checkpoint.every_steps": 1000, "train.precision": "fp32"}
    torchrun(WORKER, ["demo", zero2, *overrides(shards, straight, 4, **extra)])
    torchrun(WORKER, ["demo", zero2, *overrides(shards, resumed, 4, **extra, **{"train.stop_after_steps": 3})])
    torchrun(WORKER, ["demo", zero2, *overrides(shards, resumed, 4, **extra)])
    keys = ("step", "loss", "egonce", "mlm", "vtm", "grad_norm")
    for rank in (0, 1):
        (full,) = results(straight, rank)
        first, second = results(resumed, rank)
        assert [h["step"] for h in second["history"]] == [4]
        assert [[h[k] for k in keys] for h in first["history"] + second["history"]] == \
            [[h[k] for k in keys] for h in full["history"]]


@pytest.mark.slow
def test_egomcq_in_training_equals_the_evaluator_on_the_exported_weights(shards, tmp_path):
    """The training hook is the evaluator: the same figures as egovlpv2-evaluate on the export (fp32, 4 frames)."""
    from egovlpv2.cli.evaluate import evaluate
    from egovlpv2.train.egomcq_hook import flatten
    from tests.eval.synthetic_benchmarks import run_isolated

    out = tmp_path / "run"
    torchrun(WORKER, ["demo", "zero2", *overrides(shards, out, 2, **{"train.precision": "fp32"})])
    (r0,) = results(out, 0)
    in_training = r0["evaluations"]["2"]
    weights = export(out / "checkpoints", tmp_path / "model.safetensors", load_pretrain_config(out / "config.yaml").model)
    after = run_isolated(evaluate, ["--task", "egomcq", "--checkpoint", str(weights), "--data", str(shards / "egomcq"),
                                    "--tokenizer", str(shards / "src" / "tokenizer"), "--model", "egovlpv2-tiny",
                                    "--num-frames", "4", "--num-workers", "0", "--out", str(tmp_path / "mcq.json")])
    assert flatten(after) == in_training
