"""Kernel fusion with ``torch.compile``: one compiled region per transformer block, or whole entry points.

Why: in eager mode a training step spends more GPU time in LayerNorm, GELU, residual adds and the
token-regrouping copies than in matrix multiplies; Inductor fuses those element-wise kernels into their
neighbours.

- ``"blocks"`` (regional compilation): the ``forward`` of every video block and text layer is compiled in
  place, so parameter names, checkpoints and activation checkpointing (``run_block`` wraps the block) are
  unchanged, and module hooks (DeepSpeed ZeRO-3 fetches parameters in the block's hooks, see
  :func:`zero3_leaf_classes`) stay outside the compiled code. Blocks of one kind share their graphs, so
  Inductor compiles a handful of graphs once per process instead of one giant graph.
- ``"full"``: each tower pass becomes one region: the model methods the losses and the public entry points
  are built from (``video_lower``, ``text_lower``, the dual upper layers and ``fused_from_lower``). Fewer,
  larger graphs (activation checkpointing is traced into them); longer to compile. The loss arithmetic
  stays eager.

Recompilation: the batch dimension and the text length are marked dynamic at every block call
(``egovlpv2.model.layers.mark_dynamic_inputs``), so varying text lengths (evaluation pads to the longest text), a short last
batch and the MLM/VTM passes (other batch sizes than the dual pass) reuse one graph. A new graph is
compiled only per distinct call signature of a block: grad mode (training vs ``no_grad`` evaluation),
train/eval mode (dropout), the number of CLS tokens and whether the block fuses.
"""
from __future__ import annotations

from enum import Enum

import torch
from torch import nn

from egovlpv2.config import ConfigError



class CompileMode(str, Enum):
    """What ``torch.compile`` compiles (see the module docstring). Parse a user's string once, with
    :meth:`parse`; everything downstream takes the value."""

    OFF = "off"
    BLOCKS = "blocks"
    FULL = "full"

    @classmethod
    def parse(cls, mode: "str | CompileMode") -> "CompileMode":
        try:
            return cls(mode)
        except ValueError:
            raise ConfigError(f"compile must be one of {[m.value for m in cls]}, got {mode!r}") from None

# What "full" compiles: encode_video/encode_text/match_score and the objective call only these.
TOWER_PASSES = ("video_lower", "text_lower", "video_embed_from_lower", "text_embed_from_lower", "fused_from_lower")

# Cache entries allowed per compiled code object (see compile_model).
RECOMPILE_LIMIT = 256

# Dynamic dimensions of a block's positional arguments (index -> dims), per block family. Video blocks:
# (x [B, S, D], frames, num_cls, text [B, L, D], text_mask [B, L]); text layers: (h [B, L, D],
# mask [B, 1, 1, L], video [B, S, D]). S (patches) is fixed by the frame count, which is static.
VIDEO_BLOCK_DYNAMIC = {0: (0,), 3: (0, 1), 4: (0, 1)}
TEXT_LAYER_DYNAMIC = {0: (0, 1), 1: (0, 3), 2: (0,)}


def transformer_blocks(model: nn.Module) -> list[tuple[nn.Module, dict]]:
    """Every video block and text layer of an EgoVLPv2, with the dynamic dimensions of its arguments."""
    return ([(b, VIDEO_BLOCK_DYNAMIC) for b in model.video.blocks]
            + [(layer, TEXT_LAYER_DYNAMIC) for layer in model.text.encoder.layer])


def compile_model(model: nn.Module, mode: CompileMode = CompileMode.BLOCKS, **compile_kwargs) -> nn.Module:
    """Compile ``model`` (an EgoVLPv2) in place per ``mode`` (see the module docstring); returns it.

    Compilation happens lazily, at the first call of each region; ``compile_kwargs`` go to ``torch.compile``.
    """
    if mode != CompileMode.OFF:
        # Every compiled block shares one code object (Module._call_impl), whose cache holds one entry per
        # block and call signature (lower/dual/fused, train/eval, grad/no_grad): far more than the default
        # 8, past which Dynamo silently runs the rest eagerly.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    if mode == CompileMode.BLOCKS:
        for block, dims in transformer_blocks(model):
            block.forward = torch.compile(block.forward, **compile_kwargs)
            block.dynamic_dims = dims
    elif mode == CompileMode.FULL:
        for name in TOWER_PASSES:
            setattr(model, name, torch.compile(getattr(model, name), **compile_kwargs))
    return model


def zero3_leaf_classes(model: nn.Module, mode: CompileMode) -> list[type]:
    """The block classes ZeRO-3 should treat as leaves when ``model`` is compiled by blocks: it then gathers a
    block's parameters in the block's own (eager) hook instead of hooking every Linear and LayerNorm inside
    the compiled forward, which would break its graph at each of them."""
    if mode != CompileMode.BLOCKS:
        return []
    return sorted({type(block) for block, _ in transformer_blocks(model)}, key=lambda cls: cls.__name__)
