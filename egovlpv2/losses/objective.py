"""The whole pre-training loss of one step: EgoNCE + MLM + 2 * VTM (weights configurable)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, Optional

import torch

from egovlpv2.config import ConfigError, Fraction, NonNegativeFloat, PositiveFloat, Range, Seed
from egovlpv2.data.transforms import prepare_video
from egovlpv2.losses import batch_ops
from egovlpv2.losses.egonce import EgoNCEOutput, PositiveRule, egonce
from egovlpv2.losses.mlm import IGNORE, MLMOutput, TokenizerInfo, mask_tokens, mlm_loss
from egovlpv2.losses.vtm import NegativePool, VTMOutput, VTMPlan, plan_vtm, vtm_inputs, vtm_loss


@dataclass
class LossConfig:
    egonce_weight: NonNegativeFloat = 1.0
    mlm_weight: NonNegativeFloat = 1.0
    vtm_weight: NonNegativeFloat = 2.0
    temperature: PositiveFloat = 0.05
    positives: PositiveRule = "action"
    mlm_probability: Annotated[float, Range(0, 1, open_low=True, open_high=True)] = 0.15
    mlm_mask_fraction: Fraction = 0.8
    mlm_random_fraction: Fraction = 0.1
    vtm_negative_pool: NegativePool = "global"
    vtm_negative_temperature: PositiveFloat = 0.05
    # Seeds the MLM masks and VTM draws, which are keyed by (seed, step, global sample index).
    seed: Seed = 0
    # With gradient accumulation: one EgoNCE over the whole step (gradient caching) or one per micro-batch.
    contrastive_batch: Literal["global", "micro"] = "global"

    def __post_init__(self) -> None:
        if self.mlm_mask_fraction + self.mlm_random_fraction > 1:
            raise ConfigError("loss.mlm_mask_fraction + loss.mlm_random_fraction must lie in [0, 1]")


# slot_states(plan) -> (the VTM slots' lower-layer states, a zero that must join the loss)
SlotStates = Callable[[VTMPlan], tuple[tuple[Any, Any], Any]]


@dataclass
class Encoded:
    """The dual pass of a batch: lower-layer states (reused by the fused passes) and the embeddings."""

    video_states: Any
    text_states: Any
    video_embed: torch.Tensor
    text_embed: torch.Tensor


class PretrainObjective:
    """``objective(batch, step) -> (loss, parts)`` for a pre-training batch already on the device.

    ``loss`` is this rank's share of the global loss: averaging over ranks (what data-parallel gradient
    reduction does) gives the loss and the gradient of the whole global batch. ``parts`` holds detached
    scalars: ``egonce``, ``mlm``, ``vtm`` (the same shares) and ``egonce_acc``, ``mlm_acc``, ``vtm_acc``.

    Compute reuse, and what it changes against the original EgoVLPv2: the original runs both towers from
    the input three times per step (dual for EgoNCE, fused for MLM, fused for VTM). Here the lower layers
    (0..M-1) of the dual pass are reused by both fused passes, so the video tower's lower half runs once
    instead of three times and the text's twice (the masked MLM text must be re-encoded). What changes:
    the lower layers' dropout noise is shared by EgoNCE and VTM (and by the MLM video) instead of drawn
    independently per pass, and their gradients meet in one graph. The expected loss is the same; the
    noise of its estimate is correlated across the objectives. A second difference comes from the model
    (``video_lower(cls="both")``): in the reused lower layers the video patches attend to the dual CLS,
    whereas the original's fused passes run their own CLS from layer 0; the fused CLS still rides along
    as an extra query. With dropout off, everything else is the original's computation. MLM and VTM run in one fused call over ``[MLM pairs; VTM slots]`` (every layer
    treats samples independently, so this only batches the work).

    ``step`` keys the MLM masks and VTM negatives, with the global sample index, so that any split of the
    global batch over ranks (or micro-batches) draws the same ones; pass the optimizer step for exact
    resumption (an internal counter is used otherwise).
    """

    def __init__(self, model: torch.nn.Module, cfg: LossConfig, tokenizer_info: TokenizerInfo):
        self.model, self.cfg, self.tok = model, cfg, tokenizer_info
        self.step = 0

    # ------------------------------------------------------------------------------------------------ pieces
    def prepare_video(self, video: torch.Tensor) -> torch.Tensor:
        return prepare_video(video, self.model)

    def encode(self, video: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Encoded:
        vs = self.model.video_lower(self.prepare_video(video))
        ts = self.model.text_lower(input_ids, attention_mask)
        v, t = self.model.dual_from_lower(vs, ts)
        return Encoded(vs, ts, v, t)

    def contrastive(self, enc_video: torch.Tensor, enc_text: torch.Tensor, verb: torch.Tensor, noun: torch.Tensor,
                    sizes: Optional[list[int]] = None) -> EgoNCEOutput:
        return egonce(enc_video, enc_text, verb, noun, self.cfg.temperature, self.cfg.positives, sizes)

    def plan(self, ego: EgoNCEOutput, step: int, rows: slice | None = None, first_row: int | None = None) -> VTMPlan:
        """VTM slots for ``rows`` of ``ego``'s local rows (all by default)."""
        rows = rows or slice(None)
        return plan_vtm(ego.sim_v2t[rows], ego.sim_t2v[rows], ego.positives[rows], ego.sizes, self.cfg.seed, step,
                        self.cfg.vtm_negative_pool, self.cfg.vtm_negative_temperature, first_row)

    def fusion(self, video_states: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, first_row: int,
               step: int, vtm_states: Optional[tuple[Any, Any]], vtm_labels: Optional[torch.Tensor],
               vtm_slots: int, mlm_count: Optional[int] = None) -> tuple[Optional[MLMOutput], Optional[VTMOutput]]:
        """The fused MLM pass (masked text re-encoded, video states reused) and the VTM pass on the given
        slot states, in one call to the fused layers. Rows are ``first_row..`` of the global batch, which
        holds ``vtm_slots`` VTM slots and ``mlm_count`` masked tokens (counted here when not given)."""
        n = input_ids.shape[0]
        videos, texts, labels = [], [], None
        if self.cfg.mlm_weight > 0:
            masked, labels = self.mask(input_ids, attention_mask, first_row, step)
            videos.append(video_states)
            texts.append(self.model.text_lower(masked, attention_mask))
        if vtm_states is not None:
            videos.append(vtm_states[0])
            texts.append(vtm_states[1])
        if not videos:
            return None, None
        fused = self.model.fused_from_lower(batch_ops.cat_rows(videos), batch_ops.cat_rows(texts))
        mlm = vtm = None
        if labels is not None:
            selected = labels != IGNORE  # only selected tokens reach the vocabulary-size decoder
            logits = self.model.mlm_logits(batch_ops.slice_rows(fused, 0, n), positions=selected)
            mlm = mlm_loss(logits, labels[selected], mlm_count)
        if vtm_states is not None:
            start = n if labels is not None else 0
            vtm = vtm_loss(self.model.vtm_logits(batch_ops.slice_rows(fused, start, start + vtm_labels.numel())),
                           vtm_labels, vtm_slots)
        return mlm, vtm

    def mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, first_row: int,
             step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """MLM ``(masked_ids, labels)`` of global rows ``first_row..``."""
        return mask_tokens(input_ids, attention_mask, self.tok, range(first_row, first_row + input_ids.shape[0]),
                           self.cfg.seed, step, self.cfg.mlm_probability, self.cfg.mlm_mask_fraction,
                           self.cfg.mlm_random_fraction)

    def weighted(self, losses: dict[str, Optional[torch.Tensor]]) -> torch.Tensor | float:
        """The loss from its terms (``egonce``, ``mlm``, ``vtm``; a missing or None term counts 0), each
        times its weight: the one place the weights apply."""
        weights = {"egonce": self.cfg.egonce_weight, "mlm": self.cfg.mlm_weight, "vtm": self.cfg.vtm_weight}
        return sum(weights[name] * loss for name, loss in losses.items() if loss is not None)

    def combine(self, ego: Optional[EgoNCEOutput], mlm: Optional[MLMOutput],
                vtm: Optional[VTMOutput]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        outputs = {name: out for name, out in (("egonce", ego), ("mlm", mlm), ("vtm", vtm)) if out is not None}
        parts = {}
        for name, out in outputs.items():
            parts[name] = out.loss.detach()
            parts[f"{name}_acc"] = out.accuracy
        return self.weighted({name: out.loss for name, out in outputs.items()}), parts

    # -------------------------------------------------------------------------------------------------- step
    def fused_terms(self, enc: Encoded, ego: EgoNCEOutput, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    step: int, first_row: int, slots: int, rows: slice | None = None, mlm_count: Optional[int] = None,
                    slot_states: Optional[SlotStates] = None) -> tuple[Optional[MLMOutput], Optional[VTMOutput], Any]:
        """MLM and VTM of the global rows ``first_row..`` (``rows`` of ``ego``'s local rows; all by default),
        after the dual pass ``enc`` and EgoNCE ``ego``: the part of a training step that every way of
        splitting it (one batch, cached micro-batches) shares.

        ``slot_states(plan) -> (states, zero)`` picks the lower-layer states of the VTM slots (default: from
        ``enc``, exchanged across ranks); ``zero`` must join the loss (it carries collective module calls
        that the step needs on every rank). Returns ``(mlm, vtm, zero)``.
        """
        vtm_states = labels = None
        zero: Any = 0.0
        if self.cfg.vtm_weight > 0:
            plan = self.plan(ego, step, rows, first_row)
            if slot_states is None:
                vtm_states = vtm_inputs(enc.video_states, enc.text_states, plan, ego.sizes, self.cfg.vtm_negative_pool)
            else:
                vtm_states, zero = slot_states(plan)
            labels = plan.labels
        mlm, vtm = self.fusion(enc.video_states, input_ids, attention_mask, first_row, step, vtm_states, labels,
                               slots, mlm_count)
        return mlm, vtm, zero

    def __call__(self, batch: dict, step: Optional[int] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        step = self.step if step is None else step
        self.step = step + 1
        ids, mask = batch["input_ids"], batch["attention_mask"]
        enc = self.encode(batch["video"], ids, mask)
        ego = self.contrastive(enc.video_embed, enc.text_embed, batch["verb"], batch["noun"])
        mlm, vtm, _ = self.fused_terms(enc, ego, ids, mask, step, ego.offset, sum(ego.sizes))
        return self.combine(ego, mlm, vtm)
