"""Every field of the shared sections (train, checkpoint, logging) is honoured by both entry points that
accept it, pre-training and fine-tuning: it changes the shared set-up (egovlpv2.train.run_setup) that both
build their process group, compile mode and loop from, or the entry point reads it itself."""
import dataclasses
import inspect
import typing

import pytest
import yaml

import egovlpv2.finetune.run
import egovlpv2.train.pretrain
from egovlpv2.config import apply_overrides
from egovlpv2.finetune.config import FinetuneConfig, load_finetune_config
from egovlpv2.model.compile import CompileMode
from egovlpv2.train.config import PretrainConfig, load_pretrain_config
from egovlpv2.train.run_setup import run_setup

ENTRY_POINTS = {PretrainConfig: (lambda: load_pretrain_config("demo"), egovlpv2.train.pretrain),
                FinetuneConfig: (lambda: load_finetune_config("epic_mir"), egovlpv2.finetune.run)}
SECTIONS = ("train", "checkpoint", "logging")
FIELDS = [(cls, section, f.name) for cls in ENTRY_POINTS for section in SECTIONS
          for f in dataclasses.fields(typing.get_type_hints(cls)[section])]


def another_value(value, tp):
    """A valid value of type ``tp`` other than ``value``."""
    choices = [a for a in typing.get_args(tp) if a is not type(None)]
    if choices and typing.get_origin(choices[0]) is typing.Literal:
        choices = typing.get_args(choices[0])
    if typing.get_origin(tp) is typing.Literal or (choices and all(isinstance(c, str) for c in choices)):
        return next(c for c in choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    return 1  # an Optional[int] that is None


def derived(cfg):
    setup = run_setup(cfg)
    return setup.collective_timeout_s, setup.compile, setup.loop


@pytest.mark.parametrize("cls,section,name", FIELDS, ids=[f"{c.__name__}.{s}.{n}" for c, s, n in FIELDS])
def test_every_shared_field_is_honoured_by_every_entry_point(cls, section, name):
    load, module = ENTRY_POINTS[cls]
    cfg = load()
    tp = typing.get_type_hints(type(getattr(cfg, section)))[name]
    new = another_value(getattr(getattr(cfg, section), name), tp)
    changed = apply_overrides(cfg, [f"{section}.{name}={yaml.safe_dump(new).strip().removesuffix('...').strip()}"])
    assert getattr(getattr(changed, section), name) == new
    if derived(changed) != derived(cfg):
        return
    assert f"cfg.{section}.{name}" in inspect.getsource(module), \
        f"{section}.{name} changes nothing in the shared set-up and {module.__name__} does not read it"


def test_both_entry_points_build_from_the_shared_setup():
    for _, module in ENTRY_POINTS.values():
        source = inspect.getsource(module)
        assert "run_setup(cfg)" in source and "setup.start_distributed()" in source
        assert "setup.loop_settings(" in source and "setup.compile" in source and "LoopSettings(" not in source


def test_fine_tuning_takes_the_five_options_it_used_to_ignore():
    cfg = load_finetune_config("epic_mir", ["train.compile=blocks", "train.collective_timeout_s=42",
                                            "train.max_nonfinite_steps=7", "train.peer_timeout_s=9",
                                            "train.stop_timeout_s=11"])
    setup = run_setup(cfg)
    assert setup.compile is CompileMode.BLOCKS and setup.collective_timeout_s == 42
    loop = setup.loop_settings(100, None, True)
    assert (loop.max_nonfinite_steps, loop.peer_timeout_s, loop.stop_timeout_s, loop.total_steps) == (7, 9, 11, 100)
