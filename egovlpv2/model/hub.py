"""Hub-format models through ``huggingface_hub``'s ``PyTorchModelHubMixin``: ``save_pretrained``,
``from_pretrained`` and ``push_to_hub`` are the library's; this module fills in what is ours.

A Hub-format directory holds ``config.json`` (the full :class:`ModelConfig`, with the local init paths
cleared: the weights are all in the directory), ``model.safetensors`` (our parameter names, written by the
mixin) and ``README.md`` (the card, :mod:`egovlpv2.model.card`; loading restores the provenance it records). Loading is strict and resizes the temporal
embedding to a ``num_frames`` override as ``create_model`` does. A repository id goes through
``hf_hub_download``, so ``HF_HUB_OFFLINE=1`` loads it from the Hub cache.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from huggingface_hub.errors import EntryNotFoundError

from egovlpv2.config import ConfigError, from_dict, to_dict
from egovlpv2.fileio import atomic_write_json
from egovlpv2.model.card import PAPER_URL, read_provenance, render_card
from egovlpv2.model.config import ModelConfig
from egovlpv2.model.config import apply_model_overrides

CARD_NAME = "README.md"
# What from_pretrained may change: the frame count (the temporal embedding is resized). Anything else would
# contradict the saved weights.
LOAD_OVERRIDES = ("num_frames",)


def hub_config(cfg: ModelConfig) -> dict:
    """``config.json``: the model config without local init paths (nothing else is needed to rebuild it)."""
    return to_dict(dataclasses.replace(cfg, vision_init=None, text_init=None, checkpoint=None))


class HubModel(PyTorchModelHubMixin, library_name="egovlpv2", paper_url=PAPER_URL, tags=["egovlpv2"]):
    """Hub save/load for a module built as ``cls(cfg: ModelConfig)`` with a ``load_weights(path)`` method."""

    video_only = False

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)  # model.safetensors
        atomic_write_json(save_directory / CONFIG_NAME, hub_config(self.cfg), indent=2)
        # The card lists the checksums of the files just written, so it is rewritten on every save (the
        # mixin would keep an existing README.md, with stale checksums).
        card = render_card(self, save_directory, [CONFIG_NAME, SAFETENSORS_SINGLE_FILE], self.video_only)
        card.save(save_directory / CARD_NAME)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download: bool, local_files_only: bool,
                         token, config: dict | None = None, **overrides):
        unknown = sorted(set(overrides) - set(LOAD_OVERRIDES))
        if unknown:
            raise ConfigError(f"unknown from_pretrained overrides {unknown}; known: {list(LOAD_OVERRIDES)}")
        if config is None:
            raise ConfigError(f"{model_id} has no {CONFIG_NAME}: not a Hub-format EgoVLPv2 model")
        cfg = apply_model_overrides(from_dict(ModelConfig, config, f"{model_id}/{CONFIG_NAME}"), **overrides)
        def fetch(filename: str) -> Path:
            if os.path.isdir(model_id):
                return Path(model_id) / filename
            return Path(hf_hub_download(repo_id=model_id, filename=filename, revision=revision, cache_dir=cache_dir,
                                        force_download=force_download, token=token, local_files_only=local_files_only))

        model = cls(cfg)
        model.load_weights(fetch(SAFETENSORS_SINGLE_FILE))
        try:
            card = fetch(CARD_NAME)
        except EntryNotFoundError:  # a repository without a card: nothing known about the weights
            card = None
        if card is not None and card.is_file():
            model.provenance = read_provenance(card)
        return model.eval()
