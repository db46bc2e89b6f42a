"""Every field of every recipe config is honoured by each entry point that accepts it: changing it changes
what the run does, or the run refuses it with a user error naming it.

The entry points are pre-training (``PretrainConfig``) and fine-tuning (``FinetuneConfig``). For each leaf
field the walk picks another valid value, runs the entry point's own run function up to and through two
training steps and an evaluation (tests/option_probe.py says what is observed: never the config itself),
and compares the observation with the same run without the change.

Some fields act only together with others (``loss.temperature`` only for Charades-Ego, ``prefetch_factor``
only with worker processes): those cases run in a CONTEXT, and are compared with that context's own
reference run. Fields that must change together (the model's and the loader's frame count) change together.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import pickle
import subprocess
import sys
import typing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

import egovlpv2
from egovlpv2.finetune.config import FinetuneConfig
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.train.config import PretrainConfig
from tests.eval import synthetic_benchmarks as synth
from tests.helpers import REPO, liveness

DEEPSPEED = {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
             "gradient_clipping": 1.0, "zero_optimization": {"stage": 2}}
MISSING = "/nonexistent/egovlpv2-option-walk"


def leaf_fields(cls, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, annotated type) of every leaf field of config dataclass ``cls``."""
    out = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls, include_extras=True)[f.name]
        if dataclasses.is_dataclass(tp):
            out += leaf_fields(tp, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", tp))
    return out


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


# Per entry point: the recipe, the overrides every case starts from, and the values each field is changed to
# where the generic rule below (flip a bool, another Literal choice, double a number) does not give a valid
# one. A value may name a fixture path ("{name}").
PRETRAIN = {
    "recipe": "demo",
    "base": {"data.shards": "{egoclip}", "data.tokenizer": "{tokenizer}", "eval.egomcq_shards": "{egomcq}",
             "train.output_dir": "{out}/pretrain", "data.batch_size": 2, "data.num_workers": 0,
             "data.shuffle_buffer": 8, "train.grad_checkpointing": False, "logging.progress_bar": False,
             "eval.batch_size": 8},
    "values": {"model.name": "egovlpv2-other", "model.video.heads": 2, "model.video.num_frames": 2, "data.num_frames": 2, "model.text.heads": 2,
               "model.text.pad_token_id": 0, "model.vision_init": MISSING, "model.text_init": MISSING,
               "model.checkpoint": "{pretrain_checkpoint}", "data.shards": MISSING, "data.tokenizer": MISSING,
               "data.crop_scale": [0.3, 0.9], "optim.betas": [0.8, 0.9], "train.output_dir": "{out}/pretrain-other",
               "train.max_steps": 5, "train.checkpoint_blocks": 1, "train.precision": "bf16",
               "train.stop_after_steps": 1, "eval.egomcq_shards": None,
               "eval.num_frames": 2, "eval.batch_size": 4, "eval.max_questions": 3, "optim.min_lr_ratio": 0.5,
               "loss.vtm_negative_temperature": 0.01},
    # Keys that must change together with the one named.
    "together": {"model.video.num_frames": {"data.num_frames": 2}, "data.num_frames": {"model.video.num_frames": 2},
                 "model.video.img_size": {"data.img_size": 128}, "data.img_size": {"model.video.img_size": 128},
                 "model.video.dim": {"model.text.hidden": 128}, "model.text.hidden": {"model.video.dim": 128}},
    "contexts": {"data.prefetch_factor": {"data.num_workers": 1},
                 "train.checkpoint_blocks": {"train.grad_checkpointing": True},
                 # Gradient caching or not: only with accumulation.
                 "loss.contrastive_batch": {"train.grad_accum_steps": 2},
                 # With 2 anchors each VTM negative is the only non-positive candidate, at any temperature.
                 "loss.vtm_negative_temperature": {"data.batch_size": 8}},
}
FINETUNE = {
    "recipe": "epic_mir",
    "base": {"model": "egovlpv2-tiny", "init_checkpoint": "{finetune_init}", "data.train_shards": "{epic_train}",
             "data.eval_shards": "{epic_test}", "data.tokenizer": "{finetune_tokenizer}", "data.num_frames": 2,
             "data.img_size": 64, "data.batch_size": 2, "data.num_workers": 0, "train.grad_checkpointing": False,
             "train.output_dir": "{out}/finetune", "logging.progress_bar": False, "eval.batch_size": 8,
             "eval.limit": 12, "train.precision": "fp32"},
    "values": {"task": "charades_ego", "model": "{finetune_model}", "init_checkpoint": "{finetune_other_init}",
               "data.train_shards": MISSING, "data.eval_shards": "", "data.tokenizer": MISSING,
               "data.batch_size": 4, "data.num_frames": 4, "data.img_size": 32, "data.text_max_len": 4,
               "data.crop_scale": [0.3, 0.9], "optim.warmup_fraction": 0.1,
               "data.relevancy": "{epic_other_relevancy}", "data.relevancy_threshold": 0.6,
               "optim.betas": [0.8, 0.9], "optim.min_lr_ratio": 0.5, "train.output_dir": "{out}/finetune-other",
               "train.max_steps": 5, "train.checkpoint_blocks": 1, "train.precision": "bf16",
               "train.stop_after_steps": 1, "eval.limit": 6, "eval.batch_size": 4,
               "eval.every_steps": 7},
    "together": {},
    "contexts": {"loss.temperature": {"task": "charades_ego", "data.train_shards": "{charades}",
                                      "data.eval_shards": "{charades}"},
                 "eval.allow_missing": {"data.eval_shards": "{epic_test_missing}", "eval.limit": None},
                 "train.checkpoint_blocks": {"train.grad_checkpointing": True}},
}
ENTRIES = {"pretrain": (PretrainConfig, PRETRAIN), "finetune": (FinetuneConfig, FINETUNE)}

# Fields whose effect the probe cannot see, with the test that shows it.
HONOURED_ELSEWHERE = {
    # The name goes to exports (config.json, the model card), not into the run.
    ("pretrain", "model.name"): "tests/model/test_hub.py::test_the_card_is_titled_with_the_model_name",
    # "global" and "local" differ only between ranks, and the probe runs one.
    ("pretrain", "loss.vtm_negative_pool"):
        "tests/losses/test_objective.py::test_vtm_negative_pool_decides_whether_states_cross_ranks",
}


def another_value(key: str, value, tp, spec: dict):
    if key in spec["values"]:
        return spec["values"][key]
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    choices = typing.get_args(base)
    if typing.get_origin(base) is typing.Literal:
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        bounds = egovlpv2.config.declared_range(tp)
        other = value * 2 if value else 1
        return other if bounds is None or bounds.contains(other) else value / 2
    raise AssertionError(f"{key}={value!r}: give the walk another value for it in 'values'")


@functools.cache
def _cases(entry: str) -> dict[str, dict]:
    """Each field's case: its context (the reference it is compared with) and the changes."""
    cls, spec = ENTRIES[entry]
    from egovlpv2.finetune.config import load_finetune_config
    from egovlpv2.train.config import load_pretrain_config

    load = load_pretrain_config if entry == "pretrain" else load_finetune_config
    defaults = load(spec["recipe"])
    cases = {}
    for key, tp in leaf_fields(cls):
        if (entry, key) in HONOURED_ELSEWHERE:
            continue
        node = defaults
        for part in key.split("."):
            node = getattr(node, part)
        base_value = spec["base"].get(key, node)
        changes = {key: another_value(key, base_value, tp, spec), **spec["together"].get(key, {})}
        cases[key] = {"context": spec["contexts"].get(key, {}), "changes": changes}
    return cases


FIELDS = [(entry, key) for entry in ENTRIES for key in _cases(entry)]


def _overrides(items: dict, paths: dict) -> list[str]:
    return [f"{k}={_yaml(v.format(**paths) if isinstance(v, str) else v)}" for k, v in items.items()]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, synthetic_dir, egoclip_shards):
    root = tmp_path_factory.mktemp("option_walk")
    encode = EncodeOptions(short_side=0)
    _, ok = make_shards(ShardRun(task="egomcq", json=str(synthetic_dir / "egomcq.json"),
                                 videos=str(synthetic_dir / "videos"), out=str(root / "egomcq"), workers=1,
                                 progress=False, encode=encode))
    assert ok
    found = {"egoclip": egoclip_shards, "egomcq": root / "egomcq", "tokenizer": synthetic_dir / "tokenizer",
             "out": root / "runs"}
    torch.manual_seed(1)
    model = egovlpv2.create_model("egovlpv2-tiny")
    torch.save(model.state_dict(), root / "pretrain_checkpoint.pt")
    found["pretrain_checkpoint"] = root / "pretrain_checkpoint.pt"

    found["epic_train"] = synth.make_epic_mir(root / "epic_train", repeats=2, seed=50)["shards"]
    found["epic_test"] = synth.make_epic_mir(root / "epic_test", repeats=1, seed=0)["shards"]
    found["epic_test_missing"] = _with_a_missing_clip(root / "epic_test", root / "epic_test_missing")
    found["charades"] = synth.make_charades_ego(root / "charades")["shards"]
    found["finetune_tokenizer"] = synth.make_tokenizer(root)
    with open(root / "epic_train" / "caption_relevancy_EPIC_100_retrieval_test.pkl", "rb") as f:
        matrix = pickle.load(f)
    with open(root / "other_relevancy.pkl", "wb") as f:  # each clip's captions reversed
        pickle.dump(matrix[:, ::-1].copy(), f)
    found["epic_other_relevancy"] = root / "other_relevancy.pkl"
    for name, seed in (("finetune_init", 2), ("finetune_other_init", 3)):
        torch.manual_seed(seed)
        torch.save(egovlpv2.create_model("egovlpv2-tiny", num_frames=2).state_dict(), root / f"{name}.pt")
        found[name] = root / f"{name}.pt"
    tiny = yaml.safe_load((REPO / "egovlpv2/recipes/model/egovlpv2-tiny.yaml").read_text())
    tiny["text"]["dropout"] = 0.0
    (root / "tiny-no-dropout.yaml").write_text(yaml.safe_dump(tiny))
    found["finetune_model"] = root / "tiny-no-dropout.yaml"
    return {k: str(v) for k, v in found.items()}


def _with_a_missing_clip(source: Path, out: Path) -> Path:
    """The EK-100 MIR test shards of ``source`` plus one row whose video does not exist."""
    rows = (source / "EPIC_100_retrieval_test.csv").read_text().splitlines()
    missing = rows[1].split(",")
    missing[0], missing[2] = "P01_99_0", "P01_99"
    out.mkdir()
    (out / "EPIC_100_retrieval_test.csv").write_text("\n".join([*rows, ",".join(missing)]) + "\n")
    run = ShardRun(task="epic_mir", videos=str(source / "videos"), out=str(out / "shards"), workers=1, progress=False,
                   csv=str(out / "EPIC_100_retrieval_test.csv"),
                   sentence_csv=str(source / "EPIC_100_retrieval_test_sentence.csv"),
                   relevancy=str(source / "caption_relevancy_EPIC_100_retrieval_test.pkl"),
                   max_failure_fraction=1.0, encode=EncodeOptions(short_side=0))
    manifest, _ = make_shards(run)
    assert manifest["rows_failed"] == 1, manifest
    return out / "shards"


def _probe(entry: str, paths: dict, root: Path) -> dict:
    """Run every case of ``entry`` (and each context's reference, twice for the plain one) in one process."""
    _, spec = ENTRIES[entry]
    cases = _cases(entry)
    base = _overrides(spec["base"], paths)
    runs = {"reference": [], "reference again": []}
    for key, case in cases.items():
        context = _overrides(case["context"], paths)
        if context:
            runs[f"reference in {json.dumps(case['context'], sort_keys=True)}"] = context
        runs[key] = context + _overrides(case["changes"], paths)
    spec_path, out_path = root / f"{entry}.json", root / f"{entry}-observed.json"
    spec_path.write_text(json.dumps({"recipe": spec["recipe"], "base": base, "cases": runs,
                                     "deepspeed": DEEPSPEED}))
    proc = subprocess.run([sys.executable, "-m", "tests.option_probe", entry, str(spec_path), str(out_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=liveness(600))
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(out_path.read_text())


@pytest.fixture(scope="module")
def observed(paths, tmp_path_factory):
    root = tmp_path_factory.mktemp("option_walk_runs")
    with ThreadPoolExecutor(len(ENTRIES)) as pool:  # one process per entry point, side by side
        futures = {entry: pool.submit(_probe, entry, paths, root) for entry in ENTRIES}
        return {entry: future.result() for entry, future in futures.items()}


def _first_difference(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'the change' if key in b else 'the reference'}"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _first_difference(x, y, f"{path}[{i}]"))), None)
    return None if a == b else f"{path}: {a!r} -> {b!r}"


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_the_observation_is_deterministic(observed, entry):
    """Two runs of the same config observe the same: a difference below is the field's doing."""
    runs = observed[entry]
    assert "observation" in runs["reference"], runs["reference"]
    assert _first_difference(runs["reference"], runs["reference again"]) is None


@pytest.mark.parametrize("entry,key", FIELDS, ids=[f"{e}-{k}" for e, k in FIELDS])
def test_every_option_changes_the_run_or_is_refused(observed, entry, key):
    case = _cases(entry)[key]
    got = observed[entry][key]
    assert "bug" not in got, f"{key}: the run failed with a traceback, not a user error:\n{got['bug']}"
    if "refused" in got:
        named = [k.split(".")[-1] for k in case["changes"]]
        assert any(name in got["refused"] for name in named), f"{key} is refused without being named: {got}"
        return
    context = case["context"]
    reference = observed[entry][f"reference in {json.dumps(context, sort_keys=True)}" if context else "reference"]
    assert "bug" not in reference, reference["bug"]
    if "refused" in reference:  # the context alone is refused, and the change lets the run go on
        return
    assert _first_difference(reference["observation"], got["observation"]) is not None, \
        f"{entry}: {key} -> {case['changes'][key]!r} changes nothing the run does"


@pytest.mark.parametrize("entry,key", sorted(HONOURED_ELSEWHERE), ids=[f"{e}-{k}" for e, k in sorted(HONOURED_ELSEWHERE)])
def test_fields_honoured_elsewhere_name_a_test_that_sets_them(entry, key):
    path, name = HONOURED_ELSEWHERE[(entry, key)].split("::")
    source = (REPO / path).read_text()
    assert f"def {name}(" in source
    body = source.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
    assert key.split(".")[-1] in body, f"{path}::{name} does not touch {key}"
