"""Gradient caching: one EgoNCE over every micro-batch of an optimizer step, on any world size.

Plain gradient accumulation gives each micro-batch its own contrastive loss, so the negatives of a
sample are its micro-batch (times the ranks). Here, as in GradCache and open_clip's ``accum_freq``:
1. pass 1 encodes each micro-batch without gradients and keeps only the embeddings;
2. EgoNCE runs on the step's embeddings of all micro-batches (gathered across ranks as usual) and its
   backward gives the gradient with respect to every cached embedding;
3. pass 2 re-encodes each micro-batch with gradients and backpropagates ``<embedding, cached gradient>``
   together with that micro-batch's fusion losses.
The random state (dropout) is saved before each micro-batch's pass 1 and restored before its pass 2, so
pass 2 recomputes exactly the cached embeddings. With dropout off, a step of M micro-batches of size n
equals, loss and gradients, a step with one micro-batch of size M*n.

Fusion losses (MLM, VTM) are per pair: each micro-batch adds its share, with denominators counted over
the whole step (masks are drawn per sample, so the step's masked-token count is known before pass 2).
VTM negatives: drawn from the whole step's similarity matrix (every micro-batch, every rank), exactly as
one big micro-batch would, rather than from the current micro-batch. The global contrastive batch is the
point of this mode, and VTM hard negatives get harder with the pool, so restricting them would give
away part of the gain and make the two modes differ. The price: a chosen negative from another
micro-batch has its lower layers recomputed in the current pass 2 (on its owner rank, then exchanged as
usual). A quarter of the slots take a negative video and a quarter a negative text, so the lower layers
(half of each tower) run again for about a quarter of the rows: ~12% of a tower's forward. Those
recomputed rows draw fresh dropout noise, as the original's separate VTM pass does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from egovlpv2.dist import collectives as C
from egovlpv2.losses import batch_ops
from egovlpv2.losses.mlm import IGNORE
from egovlpv2.losses.objective import PretrainObjective
from egovlpv2.losses.vtm import gather_plans, rows_requested_from, vtm_inputs
from egovlpv2.rng import rng_state, set_rng_state

# run(fn, batch) -> fn(model, batch), through whatever wrapper must see the forward (DeepSpeed's hooks).
Runner = Callable[[Callable[[Any, dict], Any], dict], Any]


class RecomputeMismatch(RuntimeError):
    """Pass 2 did not reproduce pass 1's embeddings (a random source outside the saved RNG states)."""


@dataclass
class _Step:
    """The step's local rows, in the global numbering: rank r owns rows ``starts[r] ..`` of all its
    micro-batches in order, as if they were one micro-batch."""

    batch: dict            # this rank's micro-batches concatenated
    micro_starts: list[int]  # local offset of each micro-batch
    sizes: list[int]       # rows per rank for the whole step
    micro_sizes: list[list[int]]  # [micro-batch][rank] rows

    @property
    def first_row(self) -> int:
        return sum(self.sizes[: C.rank()])


def _layout(micro_batches: list[dict]) -> _Step:
    counts = [b["input_ids"].shape[0] for b in micro_batches]
    device = micro_batches[0]["input_ids"].device
    mine = torch.tensor([counts], device=device)
    every = C.all_gather_no_grad(mine, [1] * C.world_size())  # [ranks, micro-batches]
    sizes = [int(s) for s in every.sum(1)]
    micro_sizes = [[int(v) for v in every[:, m]] for m in range(len(counts))]
    starts = [sum(counts[:m]) for m in range(len(counts))]
    batch = {k: torch.cat([b[k] for b in micro_batches]) for k in ("video", "input_ids", "attention_mask",
                                                                   "verb", "noun")}
    return _Step(batch, starts, sizes, micro_sizes)


def cached_step(objective: PretrainObjective, micro_batches: list[dict], step: int, run: Runner,
                backward: Callable[[torch.Tensor], None], check_recompute: bool = False) -> dict[str, torch.Tensor]:
    """Accumulate one optimizer step's gradients over ``micro_batches`` with one global EgoNCE.

    ``run(fn, batch)`` calls ``fn(model, batch)`` (through the engine), ``backward(loss)`` backpropagates
    one micro-batch's loss without any rescaling (it is already this rank's share of the step's loss).
    Returns the step's loss and parts (detached), equal to those of one call on the whole step.
    """
    cfg = objective.cfg
    layout = _layout(micro_batches)

    # Pass 1: embeddings only, no graph.
    states, video_embeds, text_embeds = [], [], []
    for b in micro_batches:
        states.append(rng_state())
        with torch.no_grad():
            v, t = run(lambda model, x: _embed(objective, x), b)
        video_embeds.append(v)
        text_embeds.append(t)
    v_all = _at_least_fp32(torch.cat(video_embeds)).requires_grad_()
    t_all = _at_least_fp32(torch.cat(text_embeds)).requires_grad_()
    ego = objective.contrastive(v_all, t_all, layout.batch["verb"], layout.batch["noun"], layout.sizes)
    objective.weighted({"egonce": ego.loss}).backward()

    # Fusion denominators over the whole step.
    mlm_count = None
    if cfg.mlm_weight > 0:
        _, labels = objective.mask(layout.batch["input_ids"], layout.batch["attention_mask"], layout.first_row, step)
        mlm_count = int(C.all_reduce_sum((labels != IGNORE).sum().float().reshape(1)))
    slots = sum(layout.sizes)

    # Pass 2: re-encode with gradients, one micro-batch at a time.
    sums: dict[str, torch.Tensor] = {}
    for m, b in enumerate(micro_batches):
        set_rng_state(states[m])
        rows = slice(layout.micro_starts[m], layout.micro_starts[m] + b["input_ids"].shape[0])

        def forward(model, x, m=m, rows=rows):
            enc = objective.encode(x["video"], x["input_ids"], x["attention_mask"])
            if check_recompute and not (torch.equal(enc.video_embed.detach(), video_embeds[m])
                                        and torch.equal(enc.text_embed.detach(), text_embeds[m])):
                raise RecomputeMismatch("pass 2 embeddings differ from pass 1's for micro-batch %d" % m)
            loss = (_at_least_fp32(enc.video_embed) * v_all.grad[rows]).sum() \
                + (_at_least_fp32(enc.text_embed) * t_all.grad[rows]).sum()
            mlm, vtm, zero = objective.fused_terms(
                enc, ego, x["input_ids"], x["attention_mask"], step, layout.first_row + rows.start, slots, rows,
                mlm_count, slot_states=lambda plan: _vtm_states(objective, layout, enc, plan, rows, m))
            fused = {name: out.loss for name, out in (("mlm", mlm), ("vtm", vtm)) if out is not None}
            return loss + zero + objective.weighted(fused), mlm, vtm

        loss, mlm, vtm = run(forward, b)
        backward(loss)
        for name, out in (("mlm", mlm), ("vtm", vtm)):
            if out is not None:
                sums[name] = sums.get(name, 0) + out.loss.detach()
                sums[f"{name}_acc"] = sums.get(f"{name}_acc", 0) + out.accuracy / len(micro_batches)

    parts = {"egonce": ego.loss.detach(), "egonce_acc": ego.accuracy, **sums}
    total = objective.weighted({name: parts.get(name) for name in ("egonce", "mlm", "vtm")})
    return {"loss": total, **parts}


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _embed(objective: PretrainObjective, x: dict) -> tuple[torch.Tensor, torch.Tensor]:
    enc = objective.encode(x["video"], x["input_ids"], x["attention_mask"])
    return enc.video_embed, enc.text_embed


def _vtm_states(objective: PretrainObjective, layout: _Step, enc, plan, rows: slice, m: int):
    """Lower-layer states of the slots' videos and texts, and a zero that must join the loss.

    Rows of this rank outside the micro-batch that any rank's slots chose get their lower layers
    recomputed here; the rest is the usual exchange. Under ZeRO-3 every module call gathers parameters
    collectively, so all ranks must make the same calls: when any rank recomputes rows, a rank without
    any recomputes one of its own rows, whose result enters the loss times zero.
    """
    me = C.rank()
    pool = objective.cfg.vtm_negative_pool
    if pool == "global":
        plans = gather_plans(plan, layout.micro_sizes[m])
        wanted_v, wanted_t = rows_requested_from(me, plans, layout.sizes)
    else:
        plans = None
        wanted_v, wanted_t = torch.unique(plan.video_source), torch.unique(plan.text_source)
    first = layout.first_row
    micro_rows = torch.arange(rows.start, rows.stop, device=plan.labels.device) + first
    extras = [w[(w < micro_rows[0]) | (w > micro_rows[-1])] for w in (wanted_v, wanted_t)]
    anyone = C.all_reduce_sum(torch.tensor([float(e.numel() > 0) for e in extras], device=micro_rows.device))
    held, states, zero = [], [], 0.0
    for extra, needed, own, lower in zip(extras, anyone, (enc.video_states, enc.text_states),
                                         (_video_lower, _text_lower)):
        if needed == 0:
            held.append(micro_rows)
            states.append(own)
            continue
        if extra.numel() == 0:
            dummy = lower(objective, layout.batch, micro_rows[:1] - first)
            zero = zero + sum(0.0 * t.sum() for t in batch_ops.tensors(dummy) if t.is_floating_point())
            held.append(micro_rows)
            states.append(own)
            continue
        together = torch.cat([micro_rows, extra])
        order = torch.argsort(together)
        recomputed = lower(objective, layout.batch, extra - first)
        held.append(together[order])
        states.append(batch_ops.index_rows(batch_ops.cat_rows([own, recomputed]), order))
    inputs = vtm_inputs(states[0], states[1], plan, layout.sizes, pool, held=(held[0], held[1]), plans=plans)
    return inputs, zero


def _video_lower(objective: PretrainObjective, batch: dict, local: torch.Tensor):
    return objective.model.video_lower(objective.prepare_video(batch["video"][local]))


def _text_lower(objective: PretrainObjective, batch: dict, local: torch.Tensor):
    return objective.model.text_lower(batch["input_ids"][local], batch["attention_mask"][local])


def deepspeed_grad_cache_step(engine, micro_batches: list[dict], step: int,
                              check_recompute: bool = False) -> dict[str, torch.Tensor]:
    """``cached_step`` on a DeepSpeed engine whose module runs ``fn(model, batch)`` for
    ``engine(batch, call=fn)`` and holds the objective as ``engine.module.objective``.

    Each micro-batch goes through ``engine.backward`` (unscaled: the loss is already the step's share)
    and ``engine.step``, so DeepSpeed's accumulation boundary, clipping and optimizer step apply as usual.
    With ZeRO-2/3 the backwards run inside ``engine.coalesce_grad_reduction()`` so the gradients reduce
    once per step; ZeRO-0/1 reduce only at the boundary anyway.
    """
    import contextlib

    if engine.gradient_accumulation_steps() != len(micro_batches):
        raise ValueError(f"the engine accumulates {engine.gradient_accumulation_steps()} micro-batches per step, "
                         f"but the step has {len(micro_batches)}")
    coalesce = engine.zero_optimization_stage() in (2, 3) and hasattr(engine.optimizer, "_coalesce_grad_reduction")
    steps_due = 0

    def backward(loss):
        nonlocal steps_due
        engine.backward(loss, scale_wrt_gas=False)
        if coalesce:
            steps_due += 1  # engine.step() is not allowed inside the coalescing block
        else:
            engine.step()

    with engine.coalesce_grad_reduction() if coalesce else contextlib.nullcontext():
        parts = cached_step(engine.module.objective, micro_batches, step,
                            lambda fn, batch: engine(batch, call=fn), backward, check_recompute)
    for _ in range(steps_due):
        engine.step()
    return parts
