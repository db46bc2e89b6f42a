"""EgoVLPv2: a TimeSformer and a RoBERTa whose top layers fuse through gated cross-attention.

One set of weights, two modes chosen per call:
- dual-encoder mode (cross-attention skipped): ``encode_video``, ``encode_text``, ``dual_from_lower``;
- fusion mode: ``match_score``, ``fused_from_lower`` with ``vtm_logits`` / ``mlm_logits``.

The lower layers ``0..M-1`` (``M = depth - fusion_layers``) are the same in both modes, so the losses run
``video_lower`` / ``text_lower`` once and reuse the states for the dual and the fused upper layers.

The fused CLS token. The fused path has its own video CLS token (``fused_cls_token``) and final norm
(``fused_norm``, eps 1e-6). In the released model the fused CLS replaces the dual CLS *from layer 0*, and
since every patch attends to the CLS key/value, the fused path's patch states differ from the dual path's
in every layer. Reusing the dual lower states therefore cannot reproduce the release bit for bit. We offer:
- ``video_lower(video, cls="fused")``: the fused CLS is the CLS the patches see; ``fused_from_lower`` on these
  states is exactly the released fused computation. ``match_score`` uses it (evaluation parity).
- ``video_lower(video, cls="both")`` (default, used by the losses): the dual CLS is the one the patches see,
  so patches and dual CLS are exactly the dual path's; the fused CLS rides along as an extra query that
  attends to itself and the patches but is seen by no patch. ``fused_from_lower`` then drops the dual CLS and
  continues with the fused CLS. The only difference from the release: in layers ``0..M-1`` the patches (and
  hence what the fused CLS reads) were conditioned on the dual CLS instead of the fused one.

Hub format (:mod:`egovlpv2.model.hub`): ``save_pretrained(dir)``, ``EgoVLPv2.from_pretrained(dir_or_repo_id,
num_frames=...)``, ``push_to_hub(repo_id)``.
"""
from __future__ import annotations

from typing import Literal, Optional

import torch
from torch import nn

from egovlpv2.model.config import ModelConfig
from egovlpv2.model.init import init_weights
from egovlpv2.model.heads import MLMHead, VTMHead, build_projections
from egovlpv2.model.hub import HubModel
from egovlpv2.model.layers import key_padding_mask, l2_normalize, run_block
from egovlpv2.model.loading import load_checkpoint
from egovlpv2.model.states import CLS_LAYOUTS, FusedOutput, TextStates, VideoStates
from egovlpv2.model.text import RobertaText
from egovlpv2.model.video import TimeSformer, VideoTowerSizes

# eps of the fused path's own final LayerNorm (the towers use 1e-5).
FUSED_NORM_EPS = 1e-6


class EgoVLPv2(nn.Module, VideoTowerSizes, HubModel):
    # Where the weights come from (egovlpv2.model.card.Provenance), for the model card; None when unknown.
    provenance = None

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.video.dim
        self.video = TimeSformer(cfg.video, cfg.fusion_layers)
        self.text = RobertaText(cfg.text, cfg.fusion_layers)
        self.video_proj, self.text_proj = build_projections(cfg.projection, dim)
        self.fused_cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.fused_norm = nn.LayerNorm(dim, eps=FUSED_NORM_EPS)
        self.fused_text_transform = nn.Linear(dim, dim)
        self.fused_video_transform = nn.Linear(dim, dim)
        self.vtm_head = VTMHead(dim)
        self.mlm_head = MLMHead(dim, cfg.text.vocab_size)
        self.video_split = cfg.video.depth - cfg.fusion_layers
        self.text_split = cfg.text.layers - cfg.fusion_layers
        init_weights(self)

    # ---------------------------------------------------------------- configuration
    def load_weights(self, path) -> None:
        """Load a weights file or Hub-format directory strictly (see :func:`egovlpv2.model.loading.load_checkpoint`)."""
        load_checkpoint(self, path)

    def set_grad_checkpointing(self, enable: bool = True, blocks: Optional[int] = None) -> None:
        """Activation checkpointing (``torch.utils.checkpoint``, non-reentrant) of every video block and text
        layer, or with ``blocks`` only of the lowest ``blocks`` of each tower: the others keep their
        activations and are not recomputed, trading memory for up to a third of the step's compute."""
        if blocks is not None and blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {blocks}")
        for tower in (self.video.blocks, self.text.encoder.layer):
            for i, block in enumerate(tower):
                block.grad_checkpointing = enable and (blocks is None or i < blocks)

    # ---------------------------------------------------------------- lower layers (shared)
    def video_lower(self, video: torch.Tensor, cls: Literal["both", "dual", "fused"] = "both") -> VideoStates:
        """Embeddings and video blocks ``0..M-1`` of ``[B, T, 3, H, W]`` normalised frames.

        ``cls`` picks the CLS token(s) carried (see the module docstring): ``"both"`` for the losses,
        ``"dual"`` for dual mode only, ``"fused"`` for the exact released fused path.
        """
        if cls not in CLS_LAYOUTS:
            raise ValueError(f"cls must be one of {sorted(CLS_LAYOUTS)}, got {cls!r}")
        layout = CLS_LAYOUTS[cls]
        tokens = {"dual": self.video.cls_token, "fused": self.fused_cls_token}
        frames = video.shape[1]
        x = self.video.embed(video, [tokens[k] for k in layout])
        x = self.video.run(x, frames, 0, self.video_split, len(layout))
        return VideoStates(x, frames, layout)

    def text_lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> TextStates:
        """Embeddings and text layers ``0..M-1``; ``input_ids``/``attention_mask`` are ``[B, L]``."""
        if input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ")
        h = self.text.embeddings(input_ids)
        h = self.text.run(h, attention_mask, 0, self.text_split)
        return TextStates(h, attention_mask)

    # ---------------------------------------------------------------- dual mode
    def video_embed_from_lower(self, states: VideoStates) -> torch.Tensor:
        """Dual-mode video embedding ``[B, D]`` (not normalised)."""
        x = self.video.run(states.with_cls("dual"), states.frames, self.video_split, self.cfg.video.depth, 1)
        return self.video_proj(self.video.norm(x[:, 0]))

    def text_embed_from_lower(self, states: TextStates) -> torch.Tensor:
        """Dual-mode text embedding ``[B, D]`` (not normalised)."""
        h = self.text.run(states.hidden, states.attention_mask, self.text_split, self.cfg.text.layers)
        return self.text_proj(h[:, 0])

    def dual_from_lower(self, video_states: VideoStates, text_states: TextStates):
        """Upper layers without cross-attention and the projectors: ``(video_embed, text_embed)``, not normalised."""
        return self.video_embed_from_lower(video_states), self.text_embed_from_lower(text_states)

    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """L2-normalised dual-mode video embedding ``[B, D]``."""
        return l2_normalize(self.video_embed_from_lower(self.video_lower(video, cls="dual")))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised dual-mode text embedding ``[B, D]``."""
        return l2_normalize(self.text_embed_from_lower(self.text_lower(input_ids, attention_mask)))

    def forward(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Dual mode on both towers: L2-normalised ``(video_embed, text_embed)``."""
        return self.encode_video(video), self.encode_text(input_ids, attention_mask)

    # ---------------------------------------------------------------- fusion mode
    def fused_from_lower(self, video_states: VideoStates, text_states: TextStates) -> FusedOutput:
        """Upper layers with bidirectional gated cross-attention; both streams read the previous layer."""
        v = video_states.with_cls("fused")
        t = text_states.hidden
        if v.shape[0] != t.shape[0]:
            raise ValueError(f"{v.shape[0]} videos but {t.shape[0]} texts: fusion pairs them row by row")
        mask = text_states.attention_mask
        self_mask = key_padding_mask(mask)
        blocks = self.video.blocks[self.video_split:]
        layers = self.text.encoder.layer[self.text_split:]
        for block, layer in zip(blocks, layers):
            v_next = run_block(block, v, video_states.frames, 1, t, mask)
            t = run_block(layer, t, self_mask, v)
            v = v_next
        return FusedOutput(video_cls=self.fused_norm(v[:, 0]), text_hidden=t, video_tokens=v)

    def vtm_logits(self, fused: FusedOutput) -> torch.Tensor:
        """``[B, 2]`` video-text matching logits; column 1 = match."""
        text_cls = self.fused_text_transform(fused.text_hidden[:, 0])
        return self.vtm_head(text_cls, self.fused_video_transform(fused.video_cls))

    def mlm_logits(self, fused: FusedOutput, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, L, V]`` masked-language-model logits; with ``positions`` (a boolean ``[B, L]`` mask), only
        those tokens: ``[N, V]`` (saves the vocabulary-size matmul on unmasked tokens)."""
        h = fused.text_hidden if positions is None else fused.text_hidden[positions]
        return self.mlm_head(self.fused_text_transform(h))

    def match_score(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B]`` probability that video ``i`` matches text ``i`` (the released fused path, exactly)."""
        fused = self.fused_from_lower(self.video_lower(video, cls="fused"), self.text_lower(input_ids, attention_mask))
        return self.vtm_logits(fused).softmax(dim=-1)[:, 1]
