"""Convert weights into a Hub-format directory (``egovlpv2-export SOURCE --format hub --out DIR``).

SOURCE is one of:
- a training run directory (or its ``checkpoints/``): the ZeRO checkpoint is consolidated; the card gets the
  run's resolved recipe, its data and the EgoMCQ figures the run recorded at that step;
- our safetensors export (``egovlpv2-export --out X.safetensors``, either layout): its metadata names the model;
- the released ``EgoVLPv2.pth`` / ``EgoVLPv2_smallproj.pth`` (or any file ``create_model(checkpoint=...)``
  takes): the model recipe is the one whose every key and shape the file matches, unless named.

The weights go through the same strict loading as ``create_model(checkpoint=SOURCE)`` (every unmatched key
is reported), so the directory gives that model's embeddings and scores bit for bit.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from egovlpv2.config import from_dict, to_dict
from egovlpv2.errors import MissingPathError
from egovlpv2.eval.report import PAPER
from egovlpv2.fileio import file_sha256
from egovlpv2.model import EgoVLPv2, ModelConfig, Provenance, resolve_model_config
from egovlpv2.model.config import model_recipe_names
from egovlpv2.model.loading import (
    CheckpointError,
    ReleasedTrainingConfig,
    is_released_layout,
    load_state_dict_strict,
    prepare_checkpoint_state,
    torch_load,
    unwrap_state_dict,
)
from egovlpv2.train.export import consolidate, resolve_run

log = logging.getLogger(__name__)

RELEASE_DATA = "EgoClip: 3.8M clip-narration pairs from Ego4D (the EgoVLPv2 release)"
RELEASE_LICENSE_NOTE = ("the licence of the EgoVLPv2 code and checkpoint release (facebookresearch/EgoVLPv2); "
                        "use of the Ego4D data it was trained on is governed by the Ego4D licence")
STEP_TAG = re.compile(r"step0*(\d+)")


@dataclass
class HubExport:
    """What ``convert_to_hub`` wrote: the directory, the model config and the card's provenance."""

    out: Path
    config: ModelConfig
    provenance: Provenance
    parameters: int


def detect_model_config(state: dict[str, torch.Tensor], source: str) -> ModelConfig:
    """The model recipe whose keys and shapes (the frame count aside) ``state`` (our names) matches exactly."""
    mismatches = {}
    for name in model_recipe_names():
        cfg = resolve_model_config(name)
        with torch.device("meta"):
            model = EgoVLPv2(cfg)
        try:
            load_state_dict_strict(model, prepare_checkpoint_state(model, state), source=source, assign=True)
            return cfg
        except CheckpointError as exc:
            mismatches[name] = str(exc)
    nearest = min(mismatches, key=lambda n: len(mismatches[n]))
    raise CheckpointError(f"{source} matches no model recipe ({', '.join(mismatches)}); pass --config. "
                          f"Nearest, {nearest}: {mismatches[nearest]}")


def load_into_model(state: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> EgoVLPv2:
    """Strictly load ``state`` into a model built on the meta device: the checkpoint's tensors become the
    parameters without a random initialisation or a second copy.

    A tensor that is a view into a larger storage (ZeRO's consolidated flat buffers, a ``.pth`` saved from
    such views) is copied out: safetensors writes whole storages and refuses partial ones."""
    state = {k: v if v.untyped_storage().nbytes() == v.nbytes else v.clone() for k, v in state.items()}
    with torch.device("meta"):
        model = EgoVLPv2(cfg)
    load_state_dict_strict(model, prepare_checkpoint_state(model, state), source=source, assign=True)
    return model.eval()


def _file_model(path: Path, config: Optional[str]) -> tuple[EgoVLPv2, Provenance]:
    meta = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    checkpoint = torch_load(path)
    state = unwrap_state_dict(checkpoint)
    # The released files pickle their training config beside the weights; our released-layout exports do not.
    release = isinstance(checkpoint, dict) and isinstance(checkpoint.get("config"), ReleasedTrainingConfig)
    if config:
        cfg = resolve_model_config(config)
    elif "egovlpv2_model_config" in meta:
        cfg = from_dict(ModelConfig, json.loads(meta["egovlpv2_model_config"]), f"{path} metadata")
    else:
        cfg = detect_model_config(state, str(path))
    digest = file_sha256(path)
    if "step_tag" in meta:
        provenance = Provenance(source=f"`{path.name}` (egovlpv2-export, {meta.get('layout', 'ours')} layout, "
                                       f"checkpoint {meta['step_tag']}, sha256 `{digest}`)")
    elif release:
        provenance = Provenance(source=f"the released checkpoint `{path.name}` (sha256 `{digest}`)", data=RELEASE_DATA,
                                license="mit", license_note=RELEASE_LICENSE_NOTE)
        if cfg.projection == "mlp4096":
            provenance.evaluation["EgoMCQ accuracy (%), as reported in the EgoVLPv2 paper, not measured here"] = {
                metric: values["paper"] for metric, values in PAPER["egomcq"].items()}
    else:
        layout = "released" if is_released_layout(state) else "our"
        provenance = Provenance(source=f"`{path.name}`, in the {layout} layout (sha256 `{digest}`)")
    return load_into_model(state, cfg, str(path)), provenance


def _run_model(run: Path, config: Optional[str], tag: Optional[str]) -> tuple[EgoVLPv2, Provenance]:
    ckpt_dir, cfg = resolve_run(run, config)
    state, tag = consolidate(ckpt_dir, tag)
    provenance = Provenance(source=f"training run `{ckpt_dir.parent.resolve()}`, checkpoint `{tag}`",
                            recipe=to_dict(cfg), data=f"shards `{cfg.data.shards}`")
    evaluations = ckpt_dir.parent / "eval_egomcq.json"
    step = STEP_TAG.fullmatch(tag)
    if step and evaluations.is_file():
        recorded = json.loads(evaluations.read_text()).get(str(int(step.group(1))))
        if recorded:
            provenance.evaluation[f"EgoMCQ accuracy (%) during pre-training, step {int(step.group(1))}"] = recorded
    return load_into_model(state, cfg.model, str(ckpt_dir / tag)), provenance


def convert_to_hub(source: str | Path, out: str | Path, config: Optional[str] = None, tag: Optional[str] = None,
                   license: Optional[str] = None) -> HubExport:
    """Write ``source`` (a run directory or a weights file, see the module docstring) to ``out`` in the Hub
    format. ``config``: the run's pre-training recipe, or a file's model recipe; ``tag``: a run's checkpoint
    (default: latest); ``license``: the card's licence identifier (default: the release's for released files,
    else ``other``)."""
    source = Path(source)
    if source.is_dir():
        model, provenance = _run_model(source, config, tag)
    elif source.is_file():
        model, provenance = _file_model(source, config)
    else:
        raise MissingPathError(f"no such run directory or weights file: {source}")
    if license:
        provenance.license, provenance.license_note = license, None
    model.provenance = provenance
    model.save_pretrained(out)
    log.info("wrote %s", out)
    return HubExport(Path(out), model.cfg, provenance, sum(p.numel() for p in model.parameters()))
