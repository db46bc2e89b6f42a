"""What a run does with its config, observed at the boundaries it hands work across: run in a child process
by tests/test_every_option.py, one entry point (pre-training or fine-tuning) and many configs per process.

For each config the entry point's own run function (``run_pretraining`` / ``run_finetuning``) runs for real
on one CPU rank up to the training loop: process group, checks, model, objective, DeepSpeed engine, loader,
evaluation hook. The loop itself is replaced by a probe that trains two optimizer steps with the entry
point's step function and runs its evaluation once. What is recorded:

- what the run asked of other libraries: the process group's timeout, every ``torch.compile`` call, every
  ``DataLoader`` (its options and the configuration of its dataset, as the scalars in its object graph),
  the DeepSpeed config, the optimizer's parameter groups and the learning-rate schedule;
- the loop's settings (``LoopSettings``, the loop's typed input);
- the model's structure (parameter shapes, module options) and its initial weights;
- the two steps' losses and their parts, and the shapes and sums of the batches trained on;
- the evaluation's metrics and the shapes of every model call it made;
- what a resume of the loader does when the data position's inputs changed.

Config objects themselves are never recorded: a field counts only through what the run did with it.

Usage: ``python -m tests.option_probe ENTRY SPEC.json OUT.json``; SPEC holds ``{"base": [overrides],
"cases": {name: [overrides]}}``; OUT gets ``{name: {"observation": ...} | {"refused": msg} | {"bug": tb}}``.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import os
import sys
import traceback
import typing
from pathlib import Path

import torch

from egovlpv2.dist.env import free_port

ROUND = 6


def _number(value):
    return round(float(value), ROUND)


def _tensor_summary(value: torch.Tensor) -> list:
    return [list(value.shape), str(value.dtype), _number(value.double().sum()) if value.numel() else 0.0]


def _config_types() -> tuple:
    from egovlpv2.finetune.config import FinetuneConfig
    from egovlpv2.train.config import PretrainConfig

    seen, todo = set(), [PretrainConfig, FinetuneConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for tp in typing.get_type_hints(cls).values():
            if dataclasses.is_dataclass(tp):
                todo.append(tp)
    return tuple(seen)


CONFIG_TYPES = _config_types()
SCALARS = (bool, int, float, str, type(None))


def scalars(obj, depth: int = 4, path: str = "", out: dict | None = None, seen: set | None = None) -> dict:
    """The scalar values reachable from ``obj`` (attributes, items), by path; config objects are skipped."""
    out = {} if out is None else out
    seen = set() if seen is None else seen
    if isinstance(obj, SCALARS):
        out[path] = _number(obj) if isinstance(obj, float) else obj
        return out
    if isinstance(obj, enum.Enum):
        out[path] = str(obj)
        return out
    if isinstance(obj, torch.Tensor):
        out[path] = _tensor_summary(obj)
        return out
    if depth == 0 or id(obj) in seen or isinstance(obj, CONFIG_TYPES) or callable(obj) and not hasattr(obj, "__dict__"):
        return out
    seen.add(id(obj))
    if isinstance(obj, dict):
        items = list(obj.items())[:64]
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))[:64]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__.startswith(("egovlpv2",)):
        items = [(k, v) for k, v in vars(obj).items() if not k.startswith("__")]
    else:
        return out
    for key, value in items:
        scalars(value, depth - 1, f"{path}.{key}", out, seen)
    return out


def model_summary(model: torch.nn.Module) -> dict:
    """Parameter shapes and sums, and every module's own scalar options (eps, dropout, checkpointing...)."""
    options = {}
    for name, module in model.named_modules():
        for key, value in vars(module).items():
            if not key.startswith("_") and isinstance(value, SCALARS) and key != "training":
                options[f"{name}.{key}"] = _number(value) if isinstance(value, float) else value
        forward = vars(module).get("forward")
        if forward is not None:
            options[f"{name}.forward"] = getattr(forward, "__qualname__", type(forward).__name__)
    return {"parameters": {n: _tensor_summary(p.detach()) for n, p in model.named_parameters()},
            "buffers": {n: _tensor_summary(b) for n, b in model.named_buffers()}, "options": options}


def batch_summary(batch) -> dict:
    if isinstance(batch, dict):
        return {k: batch_summary(v) for k, v in batch.items()}
    if isinstance(batch, torch.Tensor):
        return _tensor_summary(batch)
    if isinstance(batch, (list, tuple)):
        return [batch_summary(v) for v in batch[:64]]
    return batch if isinstance(batch, SCALARS) else type(batch).__name__


class Recorder:
    """Wraps the library entry points a run goes through and records what each is asked."""

    def __init__(self):
        self.events: dict = {}
        self._originals = []

    def reset(self):
        self.events = {"distributed": [], "compile": [], "loaders": [], "engine": None, "loop": None}

    def patch(self, owner, name, make):
        original = getattr(owner, name)
        self._originals.append((owner, name, original))
        setattr(owner, name, make(original))

    def install(self, entry_module):
        import egovlpv2.train.engine
        import egovlpv2.train.loop
        import egovlpv2.train.pretrain
        import egovlpv2.train.run_setup

        def init_distributed(original):
            def wrapped(*args, timeout_s=600.0, **kwargs):
                self.events["distributed"].append(_number(timeout_s))
                return original(*args, timeout_s=timeout_s, **kwargs)
            return wrapped

        def compile_(original):
            def wrapped(fn, **kwargs):
                if getattr(fn, "__module__", "").startswith("egovlpv2"):  # not the libraries' own
                    self.events["compile"].append([fn.__qualname__, sorted(map(str, kwargs.items()))])
                return fn  # what would be compiled is recorded; compiling itself is torch's (and slow on a CPU)
            return wrapped

        def data_loader_init(original):
            def wrapped(loader, dataset, *args, **kwargs):
                original(loader, dataset, *args, **kwargs)
                self.events["loaders"].append({
                    "options": {k: getattr(loader, k, None) for k in ("num_workers", "prefetch_factor", "batch_size",
                                                                       "drop_last", "pin_memory", "timeout",
                                                                       "persistent_workers")},
                    "dataset": scalars(dataset), "sampler": scalars(kwargs.get("batch_sampler"))})
            return wrapped

        def build_engine(original):
            def wrapped(model, objective, ds_config, optim, total_steps, *args, **kwargs):
                engine = original(model, objective, ds_config, optim, total_steps, *args, **kwargs)
                schedule = engine.lr_scheduler
                points = sorted({0, 1, total_steps // 3, total_steps // 2, total_steps - 1, total_steps})
                self.events["engine"] = {
                    "ds_config": json.loads(json.dumps(ds_config, default=str)),
                    "total_steps": total_steps,
                    "param_groups": [{k: (_number(v) if isinstance(v, float) else v) for k, v in group.items()
                                      if k != "params"} | {"size": sum(p.numel() for p in group["params"])}
                                     for group in engine.optimizer.param_groups],
                    "schedule": [[_number(f(s)) for s in points] for f in schedule.lr_lambdas],
                }
                return engine
            return wrapped

        def run_loop(_original):
            return self.probe_loop

        self.patch(egovlpv2.train.run_setup, "init_distributed", init_distributed)
        self.patch(torch, "compile", compile_)
        self.patch(torch.utils.data.DataLoader, "__init__", data_loader_init)
        # Pre-training imports both names at module level, fine-tuning from their modules when it runs.
        pretraining = entry_module is egovlpv2.train.pretrain
        self.patch(entry_module if pretraining else egovlpv2.train.engine, "build_engine", build_engine)
        self.patch(entry_module if pretraining else egovlpv2.train.loop, "run_loop", run_loop)

    def probe_loop(self, engine, components, settings, device):
        from egovlpv2.train.engine import unwrap_model
        from egovlpv2.train.loop import RunResult

        model = unwrap_model(engine)
        self.events["loop"] = {k: (_number(v) if isinstance(v, float) else v)
                               for k, v in dataclasses.asdict(settings).items()}
        self.events["model"] = model_summary(model)
        source = components.make_loader(None)
        batches = self.endless(source)
        steps = []
        for step in range(2):
            micro = [components.prepare(next(batches), device) for _ in range(settings.grad_accum_steps)]
            parts = components.step_fn(engine, micro, step)
            steps.append({"batches": [batch_summary(b) for b in micro],
                          "parts": {k: _number(v) for k, v in parts.items()},
                          "grad_norm": _number(engine.get_global_grad_norm() or 0.0)})
        self.events["steps"] = steps
        self.events["resume"] = self.resume_probe(components, source, data_inputs=components.data_inputs)
        del batches
        self.events["evaluation"] = self.evaluation_probe(engine, model, components)
        return RunResult(step=2, finished=False, stopped=False)

    @staticmethod
    def endless(source):
        """Batches across epochs, as the loop takes them."""
        while True:
            yield from source

    @staticmethod
    def resume_probe(components, source, data_inputs):
        """A loader resumed from this position, once as saved and once after its inputs changed."""
        from egovlpv2.errors import UserError

        state = source.state_dict()
        outcomes = {}
        if data_inputs is None:
            return outcomes
        variants = {"same": data_inputs}
        if "shards" in data_inputs:
            variants["other_shards"] = {**data_inputs, "shards": data_inputs["shards"][:-1]}
        for name, inputs in variants.items():
            try:
                resumed = components.make_loader({**state, "inputs": inputs})
                outcomes[name] = scalars(resumed.state_dict())
            except UserError as exc:
                outcomes[name] = f"refused: {exc}"
        return outcomes

    def evaluation_probe(self, engine, model, components):
        if components.evaluate is None:
            return None
        calls = []
        methods = [m for m in ("encode_video", "encode_text", "match_score", "forward") if hasattr(model, m)]
        for name in methods:
            original = getattr(model, name)

            def recording(*args, _name=name, _original=original, **kwargs):
                calls.append([_name, [batch_summary(a)[:2] if isinstance(a, torch.Tensor) else None for a in args]])
                return _original(*args, **kwargs)

            setattr(model, name, recording)
        engine.eval()
        try:
            with torch.no_grad():
                metrics = components.evaluate(lambda fn, batch: engine(batch, call=fn))
        finally:
            engine.train()
            for name in methods:
                delattr(model, name)
        return {"metrics": {k: _number(v) for k, v in metrics.items()}, "calls": calls}


def main(entry: str, spec_path: str, out_path: str) -> None:
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(free_port()), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    import deepspeed  # noqa: F401  (imported before the recorders: importing it compiles its own functions)
    import egovlpv2.finetune.run
    import egovlpv2.train.pretrain
    from egovlpv2.errors import UserError
    from egovlpv2.finetune.config import load_finetune_config
    from egovlpv2.train.config import load_pretrain_config

    spec = json.loads(Path(spec_path).read_text())
    if entry == "pretrain":
        module, load, run = egovlpv2.train.pretrain, load_pretrain_config, egovlpv2.train.pretrain.run_pretraining
    else:
        module, load, run = egovlpv2.finetune.run, load_finetune_config, egovlpv2.finetune.run.run_finetuning
    recorder = Recorder()
    recorder.install(module)
    results = {}
    for name, overrides in spec["cases"].items():
        recorder.reset()
        try:
            cfg = load(spec["recipe"], spec["base"] + overrides)
            run(cfg, dict(spec["deepspeed"]))
            results[name] = {"observation": recorder.events}
        except UserError as exc:
            results[name] = {"refused": str(exc)}
        except Exception:  # a bug: the test shows the traceback
            results[name] = {"bug": traceback.format_exc()}
        Path(out_path).write_text(json.dumps(results, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:])
