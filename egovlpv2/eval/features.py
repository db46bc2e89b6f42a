"""Feature extraction for the Ego4D episodic-memory heads: EgoMQ (VSGN) and EgoNLQ (VSLNet).

Layout, one pair of files per clip under the output directory:
- `{clip}.pt`: EgoMQ: float32 tensor [W, D], the dual-mode (L2-normalised) video embedding of each window.
  EgoNLQ: dict with `video` float32 [Q, W, 768], the fused-path video CLS of each window with query q as
  the text; `text` float32 [Q, L, 768], the query tokens' last-layer hidden states in dual mode (no
  fusion); `text_mask` long [Q, L] (1 = token); `queries` list of Q strings.
- `{clip}.json`: how the features were made: source video, time range, windows_per_second,
  frames_per_window, num_windows, window_starts_s (relative to the clip start), feature shapes.
Window k covers [k / rate, (k + 1) / rate) seconds of the clip (see `video_windows`).
Existing outputs are kept, so an interrupted run continues where it stopped: a clip is done once its `.pt`
exists, and that file appears whole (an atomic rename, after its `.json`), so a write cut short is redone.
Clip i belongs to rank i % world_size: with the same world size a rerun never writes a clip twice.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
import torch.distributed as dist

from egovlpv2.errors import MissingPathError
from egovlpv2.data.transforms import prepare_video
from egovlpv2.eval.encode import batched, tokenize
from egovlpv2.eval.runtime import EvalContext, my_share, progress, share_indices
from egovlpv2.eval.video_windows import WindowSpec, count_windows, iter_windows, video_duration
from egovlpv2.fileio import atomic_write_bytes, atomic_write_json, leftover_temporaries
from egovlpv2.paths import path_inside

log = logging.getLogger(__name__)

TASKS = ("egomq", "egonlq")
DEFAULT_FRAMES = {"egomq": 16, "egonlq": 4}


@dataclass
class ClipJob:
    clip_id: str
    path: Path
    start: float = 0.0
    end: float | None = None
    queries: list[str] = field(default_factory=list)


def _resolve_video(video_dir: Path, clip_uid: str, video_uid: str | None, start: float, end: float) -> tuple:
    clip_file = path_inside(video_dir, f"{clip_uid}.mp4")
    if clip_file.is_file():
        return clip_file, 0.0, None
    video_file = path_inside(video_dir, f"{video_uid}.mp4") if video_uid else None
    if video_file is not None and video_file.is_file():
        return video_file, start, end
    raise FileNotFoundError(f"clip {clip_uid}: neither {clip_file} nor {video_dir / f'{video_uid}.mp4'} exists")


def _outputs(out_dir: Path, clip_id: str) -> tuple[Path, Path]:
    """The clip's feature file and its json, inside ``out_dir`` whatever the annotation's clip id says."""
    return path_inside(out_dir, f"{clip_id}.pt"), path_inside(out_dir, f"{clip_id}.json")


def plan_jobs(task: str, video_dir: str | Path, annotations: str | Path | None = None) -> list[ClipJob]:
    """Clips to extract. Without annotations (EgoMQ only): every `*.mp4` in `video_dir`, whole.

    Annotations: an Ego4D MQ/NLQ json (`videos[].clips[]` with `clip_uid`, `video_start_sec`,
    `video_end_sec`, and for NLQ `annotations[].language_queries[].query`), or for NLQ a plain
    `{clip_id: [query, ...]}` mapping. A clip is read from `{clip_uid}.mp4` when that file exists, else from
    `{video_uid}.mp4` over the clip's time range.
    """
    video_dir = Path(video_dir)
    if not video_dir.is_dir():
        raise MissingPathError(f"video directory not found: {video_dir}")
    if annotations is None:
        if task == "egonlq":
            raise ValueError("EgoNLQ features need the queries: pass the NLQ annotation json")
        files = sorted(video_dir.glob("*.mp4"))
        if not files:
            raise FileNotFoundError(f"no .mp4 file in {video_dir}")
        return [ClipJob(p.stem, p) for p in files]
    path = Path(annotations)
    if not path.is_file():
        raise MissingPathError(f"annotation file not found: {path}")
    data = json.loads(path.read_text())
    jobs = []
    if "videos" not in data:  # {clip_id: [queries]}
        return [ClipJob(cid, _resolve_video(video_dir, cid, None, 0.0, 0.0)[0], queries=list(q))
                for cid, q in data.items()]
    for video in data["videos"]:
        for clip in video["clips"]:
            queries = [q["query"] for ann in clip.get("annotations", []) for q in ann.get("language_queries", [])
                       if q.get("query")]
            if task == "egonlq" and not queries:
                continue
            source, start, end = _resolve_video(video_dir, clip["clip_uid"], video.get("video_uid"),
                                                float(clip["video_start_sec"]), float(clip["video_end_sec"]))
            jobs.append(ClipJob(clip["clip_uid"], source, start, end, queries))
    return jobs


@torch.no_grad()
def mq_features(model, job: ClipJob, spec: WindowSpec, ctx: EvalContext, batch_size: int) -> torch.Tensor:
    rows = []
    for chunk in batched(iter_windows(job.path, spec, job.start, job.end), batch_size):
        with ctx.autocast():
            rows.append(model.encode_video(prepare_video(torch.stack(chunk), model, ctx.device)).float().cpu())
    return torch.cat(rows)


@torch.no_grad()
def nlq_features(model, tokenizer, job: ClipJob, spec: WindowSpec, ctx: EvalContext, batch_size: int,
                 text_max_len: int) -> dict:
    ids, mask = tokenize(tokenizer, job.queries, text_max_len, ctx.device)
    with ctx.autocast():
        text_states = model.text_lower(ids, mask)
        # Dual-mode token features: the upper text layers without cross-attention.
        tokens = model.text.run(text_states.hidden, mask, model.text_split, model.cfg.text.layers)
    per_query: list[list[torch.Tensor]] = [[] for _ in job.queries]
    for chunk in batched(iter_windows(job.path, spec, job.start, job.end), batch_size):
        with ctx.autocast():
            video_states = model.video_lower(prepare_video(torch.stack(chunk), model, ctx.device), cls="fused")
            for q in range(len(job.queries)):
                rows = torch.full((len(chunk),), q, dtype=torch.long, device=ctx.device)
                fused = model.fused_from_lower(video_states, text_states.select(rows))
                per_query[q].append(fused.video_cls.float().cpu())
    return {"video": torch.stack([torch.cat(v) for v in per_query]), "text": tokens.float().cpu(),
            "text_mask": mask.cpu(), "queries": list(job.queries)}


def _save(out_dir: Path, job: ClipJob, features, meta: dict) -> None:
    pt_path, json_path = _outputs(out_dir, job.clip_id)
    buffer = io.BytesIO()
    torch.save(features, buffer)
    atomic_write_json(json_path, meta, indent=1)
    atomic_write_bytes(pt_path, buffer.getvalue())  # the .pt appears last: its presence means the clip is done


def _remove_partial_writes(out_dir: Path, clip_ids: set[str]) -> None:
    """Temporary files of this rank's clips left by a killed write (``.{clip}.pt.<random>.tmp``): the clip is redone."""
    for stale, target in leftover_temporaries(out_dir):  # target: "{clip}.pt" or "{clip}.json"
        if target.rpartition(".")[0] in clip_ids:
            stale.unlink(missing_ok=True)


def extract(task: str, model, jobs: Iterable[ClipJob], out_dir: str | Path, ctx: EvalContext, *,
            tokenizer=None, frames_per_window: int | None = None, windows_per_second: float = 1.875,
            img_size: int = 224, batch_size: int = 16, text_max_len: int = 32,
            should_stop: Optional[Callable[[], bool]] = None) -> list[Path]:
    """Write the features of this rank's share of `jobs`; returns the files written by this rank.

    `should_stop` is asked before each clip: when it says so, the clip in progress was the last one.
    """
    if task not in TASKS:
        raise ValueError(f"unknown feature task {task!r}; one of {TASKS}")
    if task == "egonlq" and tokenizer is None:
        raise ValueError("EgoNLQ features need a tokenizer")
    spec = WindowSpec(frames_per_window or DEFAULT_FRAMES[task], windows_per_second, img_size)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    written = []
    jobs = list(jobs)
    _remove_partial_writes(out_dir, {job.clip_id for _, job in my_share(jobs, ctx)})
    for index, job in progress(my_share(jobs, ctx), ctx, f"{task} features", len(share_indices(len(jobs), ctx))):
        if index < 0 or _outputs(out_dir, job.clip_id)[0].is_file():
            continue
        if should_stop is not None and should_stop():
            log.info("stop requested: leaving before clip %s", job.clip_id)
            break
        end = job.end if job.end is not None else video_duration(job.path)
        n = count_windows(spec, job.start, end)
        if task == "egomq":
            features = mq_features(model, job, spec, ctx, batch_size)
            shapes = {"features": list(features.shape)}
        else:
            features = nlq_features(model, tokenizer, job, spec, ctx, batch_size, text_max_len)
            shapes = {k: list(features[k].shape) for k in ("video", "text", "text_mask")}
        meta = {"task": task, "clip_id": job.clip_id, "source": str(job.path), "start_s": job.start, "end_s": end,
                "windows_per_second": spec.windows_per_second, "frames_per_window": spec.frames_per_window,
                "num_windows": n, "window_starts_s": [k / spec.windows_per_second for k in range(n)],
                "shapes": shapes}
        _save(out_dir, job, features, meta)
        written.append(_outputs(out_dir, job.clip_id)[0])
        log.info("rank %d wrote clip %s (%d windows)", ctx.rank, job.clip_id, n)
    return written


@dataclass
class ExtractionResult:
    written: list[Path]  # by this rank, in this run
    clips: int  # in the whole plan
    left: int  # clips of the whole plan still without features, agreed by every rank

    @property
    def stopped(self) -> bool:
        """Left early on request (a time limit): rerunning the same command continues."""
        return self.left > 0


def clips_left(jobs: list[ClipJob], out_dir: str | Path, ctx: EvalContext) -> int:
    """Clips of `jobs` without features, summed over every rank's share (a collective)."""
    mine = sum(not (Path(out_dir) / f"{job.clip_id}.pt").is_file() for index, job in my_share(jobs, ctx) if index >= 0)
    count = torch.tensor([mine], dtype=torch.long, device=ctx.device)
    if ctx.world_size > 1:
        dist.all_reduce(count)
    return int(count.item())
