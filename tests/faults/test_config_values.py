"""Every numeric field of every config declares the values it accepts, and a value outside them is one
`error:` line at load time (docs/faults.md R2-11), never a traceback or a silent run."""
import dataclasses
import math
import os
import subprocess
import sys
import typing

import pytest

from egovlpv2.config import ConfigError, Range, declared_range
from egovlpv2.finetune.config import FinetuneConfig, load_finetune_config
from egovlpv2.train.config import PretrainConfig, load_pretrain_config
from tests.helpers import REPO, liveness

LOADERS = {PretrainConfig: lambda overrides: load_pretrain_config("demo", overrides),
           FinetuneConfig: lambda overrides: load_finetune_config("epic_mir", overrides)}


def numeric_fields(cls, prefix=""):
    """(dotted key, annotated type, item index or None) of every int/float field under ``cls``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, type(int | None)) and len(args) == 1:
            tp = args[0]  # Optional[X]
        bare = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
        if dataclasses.is_dataclass(bare):
            yield from numeric_fields(bare, f"{key}.")
        elif typing.get_origin(bare) in (list, tuple):
            for i, item in enumerate(typing.get_args(bare)):
                if item is not Ellipsis:
                    yield key, item, i
        elif bare in (int, float):
            yield key, tp, None


FIELDS = [(cls, key, tp, index) for cls in LOADERS for key, tp, index in numeric_fields(cls)]


def test_every_numeric_field_declares_its_range():
    undeclared = [f"{cls.__name__}.{key}" for cls, key, tp, _ in FIELDS if declared_range(tp) is None]
    assert not undeclared and len(FIELDS) > 60, undeclared


def outside(bounds: Range, integer: bool):
    """A value just outside ``bounds`` (NaN where it is unbounded: every float must be finite)."""
    if bounds.low > -math.inf:
        return bounds.low if bounds.open_low else bounds.low - 1
    if bounds.high < math.inf:
        return bounds.high if bounds.open_high else bounds.high + 1
    return None if integer else float("nan")


@pytest.mark.parametrize("cls,key,tp,index", FIELDS, ids=[f"{c.__name__}.{k}{'' if i is None else i}"
                                                          for c, k, _, i in FIELDS])
def test_a_value_outside_the_declared_range_is_refused_naming_the_key(cls, key, tp, index):
    bounds = declared_range(tp)
    value = outside(bounds, typing.get_args(tp)[0] is int)
    if index is not None:  # one item of a list or tuple: the others keep their defaults
        section = LOADERS[cls]([])
        for part in key.split("."):
            section = getattr(section, part)
        items = list(section)
        items[index] = value
        value = items
    with pytest.raises(ConfigError, match=f"^{key}"):
        LOADERS[cls]([f"{key}={value!r}" if not isinstance(value, float) else f"{key}={value!r}".replace("nan", ".nan")])


@pytest.mark.parametrize("override", ["data.batch_size=0", "optim.lr=.nan", "train.epochs=.nan",
                                      "train.peer_timeout_s=.nan", "train.collective_timeout_s=.inf",
                                      "data.num_workers=-2", "data.prefetch_factor=0", "data.decode_timeout_s=-1",
                                      "data.num_frames=0", "model.video.num_frames=0", "data.text_max_len=0",
                                      "data.crop_scale=[2,1]", "data.crop_scale=[0.9,0.5]"])
def test_the_reported_values_are_refused(override):
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_pretrain_config("demo", [override])


def test_defaults_and_shipped_recipes_load():
    for cls, load in LOADERS.items():
        assert isinstance(load([]), cls)
    assert load_finetune_config("charades_ego").task == "charades_ego"


@pytest.mark.slow
def test_the_command_line_prints_one_error_line(tmp_path):
    env = dict(os.environ, DS_ACCELERATOR="cpu", PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "egovlpv2.cli.pretrain", "data.batch_size=0",
                           "train.collective_timeout_s=.inf"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=liveness(300))
    assert proc.returncode == 2 and proc.stderr.strip() == "error: data.batch_size=0 must be >= 1", proc.stderr
