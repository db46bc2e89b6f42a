"""The step loop, shared by pre-training and fine-tuning.

:class:`LoopComponents` say what to train: an objective, a loader factory, an optional evaluation. The loop
owns everything else: gradient accumulation, checkpoints and exact resume, preemption, progress and logging.

Steps are optimizer steps; each consumes ``grad_accum_steps`` micro-batches. ``LoopComponents.step_fn``
decides how a step's micro-batches become gradients (default: DeepSpeed's own accumulation, one forward/backward per
micro-batch); an alternative such as gradient caching plugs in there without touching the loop.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import torch

from egovlpv2.dist import collectives as C
from egovlpv2.dist.signals import stop_requested
from egovlpv2.dist.slurm import restart_count
from egovlpv2.dist.watchdog import PeerWatchdog, is_collective_error
from egovlpv2.errors import UserError
from egovlpv2.fileio import atomic_write_json
from egovlpv2.rng import rng_state, set_rng_state
from egovlpv2.train.checkpoint import CheckpointManager, stop_agreed
from egovlpv2.train.divergence import NonFiniteGuard
from egovlpv2.train.monitor import Monitor
from egovlpv2.train.run_owner import RunOwnership, claim_for_job

log = logging.getLogger(__name__)


class DataSource(Protocol):
    """What a loader factory returns: batches, plus a resumable position and skip counts.

    ``state_dict()`` is the position just after the last batch the loop received; a factory given that
    state continues from there. Iteration ending means an epoch ended; the loop iterates again.
    """

    def __iter__(self) -> Iterator[Any]: ...

    def state_dict(self) -> dict: ...

    def skip_counts(self) -> dict[str, int]: ...


StepFn = Callable[[Any, list, int], "dict[str, torch.Tensor]"]


def accumulate_step(engine, micro_batches: list, step: int) -> dict[str, torch.Tensor]:
    """One optimizer step with DeepSpeed's accumulation: forward, backward, engine.step per micro-batch.

    Micro-batch ``i`` of optimizer step ``step`` calls the objective with the key ``step * len(micro_batches)
    + i``, so each micro-batch draws its own masks and negatives, reproducibly. Returns the mean over
    micro-batches of the loss and its parts (detached, not yet synchronised).
    """
    sums: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(micro_batches):
        loss, parts = engine(batch, step=step * len(micro_batches) + i)
        engine.backward(loss)
        engine.step()  # DeepSpeed only steps the optimizer (and scheduler) at the accumulation boundary
        for key, value in {"loss": loss, **parts}.items():
            value = torch.as_tensor(value).detach().float()
            sums[key] = sums[key] + value if key in sums else value
    return {k: v / len(micro_batches) for k, v in sums.items()}


@dataclass
class LoopComponents:
    """What to train: ``objective(batch, step) -> (loss, parts)`` (``step`` keys its random draws);
    ``prepare`` moves a raw batch to the device; ``count_clips`` sizes it."""

    objective: Callable[[Any], tuple]
    make_loader: Callable[[Optional[dict]], DataSource]
    prepare: Callable[[Any, torch.device], Any]
    count_clips: Callable[[Any], int]
    # evaluate(run) -> {metric: value}; run(fn, batch) calls fn(model, batch) under the engine's hooks.
    evaluate: Optional[Callable[[Callable], dict[str, float]]] = None
    step_fn: StepFn = accumulate_step
    name: str = "train"
    # What the data position depends on (e.g. egovlpv2.data.position): written to trainer_state.json with each
    # checkpoint and handed back on resume as the position's "inputs", so the loader can check it.
    data_inputs: Optional[dict] = None


@dataclass
class LoopSettings:
    output_dir: str
    total_steps: int
    grad_accum_steps: int = 1
    checkpoint_every: int = 1000
    keep_last: int = 3
    checkpoint_at_end: bool = True
    auto_resume: bool = True
    log_every: int = 20
    eval_every: Optional[int] = None
    eval_at_end: bool = True
    stop_after_steps: Optional[int] = None
    tensorboard: bool = True
    progress_bar: bool = True
    flops_per_step: Optional[float] = None
    # This many non-finite steps in a row (NaN/inf loss or grad norm, or an update DeepSpeed skipped) end the run.
    max_nonfinite_steps: int = 3
    # A peer without a heartbeat this long is dead or hung: every rank exits, naming it.
    peer_timeout_s: float = 60.0
    # A stop request whose rank has not reached the next step boundary after this long (stuck in a collective,
    # a hung loader) exits without saving; the evaluation and the save at the boundary are not counted.
    stop_timeout_s: float = 300.0
    # A SLURM requeue (SLURM_RESTART_COUNT > 0) that finds no checkpoint refuses to start from step 0 unless set.
    allow_fresh_start_on_requeue: bool = False


@dataclass
class RunResult:
    step: int
    finished: bool
    stopped: bool  # a stop was requested (preemption) and the run saved and left early
    last_scalars: dict = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)  # step -> metrics
    history: list = field(default_factory=list)  # per step: {"step", "loss", parts...} as floats, this rank


def _run_eval(engine, components: LoopComponents) -> dict[str, float]:
    def run(fn, batch):
        return engine(batch, call=fn)

    engine.eval()
    try:
        with torch.no_grad():
            return components.evaluate(run)
    finally:
        engine.train()


def _record_eval(path: Path, step: int, metrics: dict[str, float]) -> None:
    """Rank 0 keeps every evaluation of the run in one JSON file ({step: metrics}), across resumptions."""
    if C.rank() != 0:
        return
    history = json.loads(path.read_text()) if path.is_file() else {}
    history[str(step)] = metrics
    atomic_write_json(path, history, indent=1)


class _Batches:
    """Endless batches from a DataSource, recreated per epoch; times how long the caller waits."""

    def __init__(self, components: LoopComponents, state: Optional[dict], device: torch.device):
        self.components, self.device = components, device
        self.source = components.make_loader(state)
        self.iterator: Optional[Iterator] = None
        self.loader_rng: Optional[dict] = None

    def _with_loader_rng(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` (start the loader, fetch a batch) on the loader's own copy of the global random streams.

        A DataLoader draws its workers' base seed from the global torch generator whenever it starts, and a
        resumed run starts it at another moment than the uninterrupted run did: without this separation,
        dropout after a resume would differ. The loader's stream starts as a copy of the training's and then
        advances on its own (in-process augmentation still varies from batch to batch).
        """
        training = rng_state()
        if self.loader_rng is not None:
            set_rng_state(self.loader_rng)
        try:
            return fn()
        finally:
            self.loader_rng = rng_state()
            set_rng_state(training)

    def next(self) -> Any:
        for attempt in range(2):
            if self.iterator is None:
                self.iterator = self._with_loader_rng(lambda: iter(self.source))
            try:
                batch = self._with_loader_rng(lambda: next(self.iterator))
                return self.components.prepare(batch, self.device)
            except StopIteration:
                self.iterator = None
        raise RuntimeError("the loader yields no batches (an epoch ended immediately after starting)")


def run_loop(engine, components: LoopComponents, settings: LoopSettings, device: torch.device) -> RunResult:
    """Train until ``total_steps`` (resuming from the newest complete checkpoint), a stop request or
    ``stop_after_steps``.

    The job owns the run directory meanwhile (see :mod:`egovlpv2.train.run_owner`): a second live job on it
    stops with a user error naming this one. A peer watchdog runs too (see :mod:`egovlpv2.dist.watchdog`);
    this rank's own error is posted to the other ranks, so they exit naming it instead of waiting in their
    next collective.
    """
    dist = torch.distributed
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    ownership = claim_for_job(settings.output_dir)
    try:
        watchdog = PeerWatchdog(rank, world, settings.peer_timeout_s, settings.stop_timeout_s, stop_requested).start()
        try:
            result = _train(engine, components, settings, device, watchdog, ownership)
        except BaseException as exc:
            watchdog.stop(failure=f"{type(exc).__name__}: {exc}", collective=is_collective_error(exc))
            raise
        watchdog.stop()
    finally:
        if ownership is not None:
            ownership.release()
    return result


def _refuse_fresh_start_on_requeue(settings: LoopSettings) -> None:
    """A requeued job without a checkpoint usually lost its run directory (node-local disk, a wrong path)."""
    restarts = restart_count()
    if restarts and settings.auto_resume and not settings.allow_fresh_start_on_requeue:
        raise UserError(f"this SLURM job was requeued (SLURM_RESTART_COUNT={restarts}) but {settings.output_dir} "
                        "holds no complete checkpoint: is the run directory on node-local disk or another path? "
                        "Set train.allow_fresh_start_on_requeue=true to start from step 0")


def _train(engine, components: LoopComponents, settings: LoopSettings, device: torch.device, watchdog: PeerWatchdog,
           ownership: Optional[RunOwnership]) -> RunResult:
    ckpt = CheckpointManager(Path(settings.output_dir) / "checkpoints", engine, settings.keep_last, ownership)
    step, loader_state = 0, None
    resumed = ckpt.load_latest() if settings.auto_resume else None
    if resumed is None:
        _refuse_fresh_start_on_requeue(settings)
    else:
        trainer_state, rank_state = resumed
        step, loader_state = trainer_state["step"], rank_state.get("loader")
        if loader_state is not None and "data_inputs" in trainer_state:
            loader_state = {**loader_state, "inputs": trainer_state["data_inputs"]}
    result = RunResult(step=step, finished=step >= settings.total_steps, stopped=False)
    if result.finished:
        log.info("%s already reached step %d of %d; nothing to do", settings.output_dir, step, settings.total_steps)
        return result

    batches = _Batches(components, loader_state, device)
    monitor = Monitor(settings.output_dir, device, settings.total_steps, step, settings.log_every,
                      settings.tensorboard, settings.progress_bar, settings.flops_per_step)
    guard = NonFiniteGuard(engine, device, settings.max_nonfinite_steps)
    steps_this_run = 0
    try:
        engine.train()
        while step < settings.total_steps:
            # The stop timeout bounds only this: reaching the step boundary, where every rank agrees on a stop;
            # the evaluation and the save after it run as long as they progress.
            with watchdog.in_step():
                wait_start = time.perf_counter()
                micro = [batches.next() for _ in range(settings.grad_accum_steps)]
                wait_s = time.perf_counter() - wait_start
                parts = components.step_fn(engine, micro, step)
                stop = stop_agreed(device)
            parts["grad_norm"] = torch.as_tensor(engine.get_global_grad_norm() or 0.0).float()
            step += 1
            steps_this_run += 1
            guard.record(step, parts)
            result.history.append({"step": step, **{k: float(v) for k, v in parts.items()}})
            monitor.record_step(parts, sum(components.count_clips(b) for b in micro), wait_s)

            last = step == settings.total_steps
            if step % settings.log_every == 0 or last:
                lr = engine.get_lr()[0] if engine.get_lr() else 0.0
                result.last_scalars = monitor.publish(step, lr, batches.source.skip_counts(), guard.total) or {}
            if components.evaluate is not None and (
                (settings.eval_every and step % settings.eval_every == 0) or (last and settings.eval_at_end)
            ):
                metrics = _run_eval(engine, components)
                result.evaluations[step] = metrics
                _record_eval(Path(settings.output_dir) / f"eval_{components.name}.json", step, metrics)
                monitor.write_scalars(step, metrics, f"eval/{components.name}")
                log.info("step %d eval: %s", step, " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))

            early = settings.stop_after_steps is not None and steps_this_run >= settings.stop_after_steps
            if step % settings.checkpoint_every == 0 or (last and settings.checkpoint_at_end) or stop or early:
                guard.check_weights_before_save(step)
                saved = {"total_steps": settings.total_steps}
                if components.data_inputs is not None:
                    saved["data_inputs"] = components.data_inputs
                ckpt.save(step, saved, {"loader": batches.source.state_dict()})
            if stop or early:
                result.stopped = stop
                if stop:
                    log.warning("stop requested: saved step %d and leaving; rerun the same command to resume", step)
                break
    finally:
        monitor.close()
    result.step = step
    result.finished = step >= settings.total_steps
    return result
