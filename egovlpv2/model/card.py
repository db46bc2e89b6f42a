"""The model card (``README.md``) of a Hub-format directory: what the weights are, where they come from, how
to load them, and the sha256 of every other file written with it.

The card's metadata also holds the :class:`Provenance` (``egovlpv2_provenance``), so a loaded model keeps it
and a model saved again, or its video encoder, carries it on."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from huggingface_hub import ModelCard, ModelCardData
from torch import nn

from egovlpv2.config import from_dict, to_dict
from egovlpv2.fileio import file_sha256
from egovlpv2.model.config import ModelConfig
from egovlpv2.model.flops import count_parameters
from egovlpv2.model.heads import PROJECTION_DIMS

PAPER_URL = "https://arxiv.org/abs/2307.05463"
PROVENANCE_KEY = "egovlpv2_provenance"
CARD_TAGS = ["egovlpv2", "video-text-retrieval", "egocentric-video", "pytorch_model_hub_mixin"]


@dataclass
class Provenance:
    """Where a model's weights come from, for its card; what is not known stays empty and is left out."""

    source: Optional[str] = None  # what was converted or trained: a file (with its sha256), a run directory
    recipe: Optional[dict] = None  # the pre-training config the run used, as a mapping
    data: Optional[str] = None  # what it was trained on
    evaluation: dict[str, dict[str, float]] = field(default_factory=dict)  # {heading: {metric: value}}
    license: str = "other"  # a Hub licence identifier (e.g. "mit"), "other" when unknown
    license_note: Optional[str] = None


def architecture_lines(cfg: ModelConfig, video_only: bool) -> list[str]:
    v, t = cfg.video, cfg.text
    width = PROJECTION_DIMS[cfg.projection]
    lines = [f"- Video tower: TimeSformer with divided space-time attention, {v.depth} blocks, width {v.dim}, "
             f"{v.heads} heads, {v.patch_size}x{v.patch_size} patches of {v.img_size}x{v.img_size} frames, "
             f"temporal embedding for {v.num_frames} frames (interpolated on loading with `num_frames=`)."]
    if not video_only:
        lines += [f"- Text tower: RoBERTa, {t.layers} layers, width {t.hidden}, {t.heads} heads, "
                  f"vocabulary {t.vocab_size}, {t.max_positions} positions.",
                  f"- Fusion in the backbone: gated bidirectional cross-attention in the top {cfg.fusion_layers} "
                  f"layers of both towers, used for video-text matching (`match_score`) and masked language "
                  f"modelling; skipped in dual-encoder mode."]
    lines.append(f"- Projection `{cfg.projection}` to {width}-d L2-normalised embeddings"
                 + (" (`encode_video`)." if video_only else " (`encode_video`, `encode_text`)."))
    return lines


def parameter_table(model: nn.Module) -> list[str]:
    counts = count_parameters(model)
    rows = ["| part | parameters |", "|---|---:|"]
    rows += [f"| {part} | {n:,} |" for part, n in counts.items() if n and part != "total"]
    rows.append(f"| total | {counts['total']:,} |")
    return rows


def provenance_lines(p: Provenance) -> list[str]:
    lines = []
    if p.source:
        lines.append(f"- Source: {p.source}")
    if p.data:
        lines.append(f"- Data: {p.data}")
    if p.recipe:
        lines += ["", "Recipe (the resolved pre-training config):", "", "```yaml",
                  yaml.safe_dump(p.recipe, sort_keys=False).rstrip(), "```"]
    return lines or ["Not recorded."]


def evaluation_lines(p: Provenance) -> list[str]:
    if not p.evaluation:
        return ["No evaluation results recorded with these weights."]
    lines = []
    for heading, metrics in p.evaluation.items():
        lines += [f"{heading}:", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in metrics.items()]
        lines.append("")
    return lines[:-1]


def render_card(model: nn.Module, directory: Path, files: list[str], video_only: bool) -> ModelCard:
    """The card of ``model`` saved in ``directory``; ``files`` (there already) are listed with their sha256."""
    cfg: ModelConfig = model.cfg
    p: Provenance = getattr(model, "provenance", None) or Provenance()
    cls = type(model).__name__
    what = "video encoder (video tower and its projection)" if video_only else "model"
    data = ModelCardData(license=p.license, library_name="egovlpv2", tags=CARD_TAGS,
                         pipeline_tag="feature-extraction" if video_only else None,
                         **{PROVENANCE_KEY: json.loads(json.dumps(to_dict(p)))})  # plain YAML: tuples as lists
    sections = [
        f"# {cfg.name} {what}", "",
        f"EgoVLPv2 ([Pramanick et al., ICCV 2023]({PAPER_URL})) {what}, in the Hub format of the `egovlpv2` "
        f"package: `config.json` is the full model config, `model.safetensors` the weights.", "",
        "## Architecture", "", *architecture_lines(cfg, video_only), "",
        "## Parameters", "", *parameter_table(model), "",
        "## Training", "", *provenance_lines(p), "",
        "## Evaluation", "", *evaluation_lines(p), "",
        "## Licence", "", f"`{p.license}`" + (f": {p.license_note}" if p.license_note else ""), "",
        "## Loading", "", "```python", "import egovlpv2", "",
        f'model = egovlpv2.{cls}.from_pretrained("{directory.name}")  # this directory, or its Hub repository id',
        f'model16 = egovlpv2.{cls}.from_pretrained("{directory.name}", num_frames=16)  # temporal embedding interpolated',
        "```", "",
        "Offline: a local directory needs no network; a Hub repository id loads from the Hub cache with "
        "`HF_HUB_OFFLINE=1`.", "",
        "## Files", "", "| file | bytes | sha256 |", "|---|---:|---|",
        *[f"| {name} | {(directory / name).stat().st_size} | `{file_sha256(directory / name)}` |" for name in files],
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(sections) + "\n")


def read_provenance(card: str | Path) -> Optional[Provenance]:
    """The provenance a card's metadata holds, or None (a card written by something else)."""
    recorded = ModelCard.load(card).data.to_dict().get(PROVENANCE_KEY)
    return None if recorded is None else from_dict(Provenance, recorded, f"{card} {PROVENANCE_KEY}")
