"""Feature extraction in the layouts the downstream heads read unchanged (see ``feature_presets``).

- ``egomq`` and ``dense``: ``{clip}.pt``, a float32 tensor [W, D] (VSGN's EgoMQ/Utils/dataset.py loads
  ``{feature_path}/{clip_id}.pt`` and transposes it), and ``{clip}.json``, how it was made.
- ``egonlq``: one ``feat_{sample_id}.pt`` per query, the dict EgoVLPv2's VSLNet loads
  (EgoNLQ/utils/data_loader.py): ``fused_video_features`` [W, 768], ``dual_text_features`` [1, 30, 768],
  ``text_token`` {``attention_mask`` [1, 30]} and the fields of ``nlq_records``; and ``{clip}.json``.
  Point the head's ``{feature_dir}/{model}/{train,val,test}/`` at one output directory per split.

``{clip}.json`` holds the source video, time range, preset, window starts (s, from the clip start), the
sampled frame indices (official sampling) and the shapes. An interrupted run continues where it stopped:
a clip is done once its last file exists (``.pt`` for a clip file, ``.json`` after an NLQ clip's query
files), every file appears whole (an atomic rename), and a write cut short is redone. Clip i belongs to
rank i % world_size: with the same world size a rerun never writes a clip twice.
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

from egovlpv2.data.transforms import prepare_video
from egovlpv2.errors import MissingPathError, UsageError
from egovlpv2.eval.encode import batched, tokenize
from egovlpv2.eval.feature_presets import FeaturePreset, window_plan
from egovlpv2.eval.nlq_records import NLQQuery, canonical_query, query_record
from egovlpv2.eval.runtime import EvalContext, my_share, progress, share_indices
from egovlpv2.eval.video_windows import WindowPlan, iter_windows, video_info
from egovlpv2.fileio import atomic_write_bytes, atomic_write_json, leftover_temporaries
from egovlpv2.paths import path_inside

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi")


@dataclass
class ClipJob:
    clip_id: str
    path: Path
    start: float = 0.0
    end: float | None = None
    queries: list[NLQQuery] = field(default_factory=list)


def _resolve_video(video_dir: Path, clip_uid: str, video_uid: str | None, start: float, end: float) -> tuple:
    clip_file = path_inside(video_dir, f"{clip_uid}.mp4")
    if clip_file.is_file():
        return clip_file, 0.0, None
    video_file = path_inside(video_dir, f"{video_uid}.mp4") if video_uid else None
    if video_file is not None and video_file.is_file():
        return video_file, start, end
    raise FileNotFoundError(f"clip {clip_uid}: neither {clip_file} nor {video_dir / f'{video_uid}.mp4'} exists")


def job_files(job: ClipJob, preset: FeaturePreset) -> list[str]:
    """The clip's output file names in the order they are written: the last one marks the clip done."""
    if preset.layout == "per_query":
        return [f"feat_{q.sample_id}.pt" for q in job.queries] + [f"{job.clip_id}.json"]
    return [f"{job.clip_id}.json", f"{job.clip_id}.pt"]


def is_done(out_dir: str | Path, job: ClipJob, preset: FeaturePreset) -> bool:
    return path_inside(Path(out_dir), job_files(job, preset)[-1]).is_file()


def _list_videos(videos: Path) -> list[Path]:
    """A directory's videos, or the paths listed one per line in a text file (relative to its folder)."""
    if videos.is_dir():
        files = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no video ({', '.join(VIDEO_SUFFIXES)}) in {videos}")
        return files
    lines = [line.strip() for line in videos.read_text().splitlines()]
    files = [(videos.parent / line) for line in lines if line and not line.startswith("#")]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise MissingPathError(f"{len(missing)} listed videos not found, first: {missing[0]}")
    return files


def _whole_videos(videos: Path) -> list[ClipJob]:
    jobs, seen = [], {}
    for path in _list_videos(videos):
        if path.stem in seen:
            raise UsageError(f"{path} and {seen[path.stem]} would write the same {path.stem}.pt: rename one")
        seen[path.stem] = path
        jobs.append(ClipJob(path.stem, path))
    return jobs


def _queries(clip: dict, next_id: int) -> list[NLQQuery]:
    out = []
    for ann in clip.get("annotations", []):
        for index, q in enumerate(ann.get("language_queries", [])):
            if not q.get("query"):
                continue  # counted in query_idx, as the episodic-memory preparation does
            out.append(NLQQuery(q["query"], next_id + len(out), ann.get("annotation_uid", ""), index,
                                float(q.get("clip_start_sec", 0.0)), float(q.get("clip_end_sec", 0.0))))
    return out


def plan_jobs(preset: str, videos: str | Path, annotations: str | Path | None = None) -> list[ClipJob]:
    """Clips to extract. Without annotations (not EgoNLQ): every video of a directory or of a list file, whole.

    Annotations: an Ego4D MQ/NLQ json (``videos[].clips[]`` with ``clip_uid``, ``video_start_sec``,
    ``video_end_sec``, and for NLQ ``annotations[].language_queries[]``), or for NLQ a plain
    ``{clip_id: [query, ...]}`` mapping. A clip is read from ``{clip_uid}.mp4`` when that file exists, else
    from ``{video_uid}.mp4`` over the clip's time range (the official reading, frame for frame).
    """
    videos = Path(videos)
    if not videos.exists():
        raise MissingPathError(f"video directory not found: {videos}")
    if annotations is None:
        if preset == "egonlq":
            raise UsageError("EgoNLQ features need the queries: pass the NLQ annotation json")
        return _whole_videos(videos)
    if not videos.is_dir():
        raise UsageError(f"with --annotations, --videos is the directory of the clips' videos, not {videos}")
    path = Path(annotations)
    if not path.is_file():
        raise MissingPathError(f"annotation file not found: {path}")
    data = json.loads(path.read_text())
    jobs: list[ClipJob] = []
    sample_id = 0
    if "videos" not in data:  # {clip_id: [queries]}
        for cid, texts in data.items():
            queries = [NLQQuery(t, sample_id + k, query_idx=k) for k, t in enumerate(texts)]
            sample_id += len(queries)
            jobs.append(ClipJob(cid, _resolve_video(videos, cid, None, 0.0, 0.0)[0], queries=queries))
        return jobs
    for video in data["videos"]:
        for clip in video["clips"]:
            queries = _queries(clip, sample_id)
            if preset == "egonlq" and not queries:
                continue
            sample_id += len(queries)
            source, start, end = _resolve_video(videos, clip["clip_uid"], video.get("video_uid"),
                                                float(clip["video_start_sec"]), float(clip["video_end_sec"]))
            jobs.append(ClipJob(clip["clip_uid"], source, start, end, queries))
    return jobs


def _window_batches(job: ClipJob, plan: WindowPlan, preset: FeaturePreset, model, ctx: EvalContext,
                    batch_size: int):
    for chunk in batched(iter_windows(job.path, plan, model.cfg.video.img_size, preset.resize), batch_size):
        yield prepare_video(torch.stack(chunk), model, ctx.device)


@torch.no_grad()
def projection_features(model, job: ClipJob, plan: WindowPlan, preset: FeaturePreset, ctx: EvalContext,
                        batch_size: int) -> torch.Tensor:
    """[W, D] dual video embeddings through the projection, not normalised (the official compute_video)."""
    rows = [torch.zeros(0, model.embed_dim)]
    for video in _window_batches(job, plan, preset, model, ctx, batch_size):
        with ctx.autocast():
            rows.append(model.video_embed_from_lower(model.video_lower(video, cls="dual")).float().cpu())
    return torch.cat(rows)


@torch.no_grad()
def fused_query_features(model, tokenizer, job: ClipJob, plan: WindowPlan, preset: FeaturePreset,
                         ctx: EvalContext, batch_size: int) -> list[dict]:
    """Per query: the fused video CLS of every window with the query as the text, its dual token states."""
    texts = [canonical_query(q.text) for q in job.queries]  # the text the head's records carry
    ids, mask = tokenize(tokenizer, texts, preset.text_max_len, ctx.device, padding="max_length")
    with ctx.autocast():
        text_states = model.text_lower(ids, mask)
        tokens = model.text.run(text_states.hidden, mask, model.text_split, model.cfg.text.layers)
    per_query: list[list[torch.Tensor]] = [[torch.zeros(0, model.cfg.video.dim)] for _ in job.queries]
    for video in _window_batches(job, plan, preset, model, ctx, batch_size):
        with ctx.autocast():
            video_states = model.video_lower(video, cls="fused")
            for q in range(len(job.queries)):
                rows = torch.full((video.shape[0],), q, dtype=torch.long, device=ctx.device)
                per_query[q].append(model.fused_from_lower(video_states, text_states.select(rows)).video_cls.float().cpu())
    return [{"fused_video_features": torch.cat(per_query[q]), "dual_text_features": tokens[q:q + 1].float().cpu(),
             "text_token": {"attention_mask": mask[q:q + 1].cpu()}} for q in range(len(job.queries))]


def _write_pt(path: Path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _remove_partial_writes(out_dir: Path, names: set[str]) -> None:
    """Temporary files of this rank's outputs left by a killed write (``.{name}.<random>.tmp``): redone."""
    for stale, target in leftover_temporaries(out_dir):
        if target in names:
            stale.unlink(missing_ok=True)


def _extract_clip(model, tokenizer, job: ClipJob, preset: FeaturePreset, out_dir: Path, ctx: EvalContext,
                  batch_size: int) -> int:
    info = video_info(job.path)
    end = job.end if job.end is not None else info.duration_s
    if end <= job.start:
        raise ValueError(f"{job.path}: empty time range [{job.start}, {end})")
    plan = window_plan(preset, job.start, end, info.frame_count)
    meta = {"preset": preset.name, "clip_id": job.clip_id, "source": str(job.path), "start_s": job.start,
            "end_s": end, "frames_per_window": preset.frames_per_window,
            "windows_per_second": preset.windows_per_second, "sampling": preset.sampling, "output": preset.output,
            "num_windows": plan.num_windows, "window_starts_s": plan.starts_s}
    if plan.frame_indices is not None:
        meta["frame_indices"] = plan.frame_indices
    if preset.layout == "per_query":
        records = fused_query_features(model, tokenizer, job, plan, preset, ctx, batch_size)
        for query, record in zip(job.queries, records):
            record.update(query_record(query, job.clip_id, end - job.start, plan.num_windows, preset.max_pos_len))
            _write_pt(path_inside(out_dir, f"feat_{query.sample_id}.pt"), record)
        meta["queries"] = {f"feat_{q.sample_id}.pt": q.text for q in job.queries}
        meta["shapes"] = {k: list(records[0][k].shape) for k in ("fused_video_features", "dual_text_features")} \
            if records else {}
        atomic_write_json(path_inside(out_dir, f"{job.clip_id}.json"), meta, indent=1)  # last: the clip is done
    else:
        features = projection_features(model, job, plan, preset, ctx, batch_size)
        meta["shapes"] = {"features": list(features.shape)}
        atomic_write_json(path_inside(out_dir, f"{job.clip_id}.json"), meta, indent=1)
        _write_pt(path_inside(out_dir, f"{job.clip_id}.pt"), features)  # last: the clip is done
    return plan.num_windows


def extract(preset: FeaturePreset, model, jobs: Iterable[ClipJob], out_dir: str | Path, ctx: EvalContext, *,
            tokenizer=None, batch_size: int = 16, should_stop: Optional[Callable[[], bool]] = None) -> list[Path]:
    """Write the features of this rank's share of ``jobs``; returns the clips' done markers written by this rank.

    ``should_stop`` is asked before each clip: when it says so, the clip in progress was the last one.
    """
    if preset.needs_queries and tokenizer is None:
        raise ValueError(f"{preset.name} features need a tokenizer")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    written = []
    jobs = list(jobs)
    mine = [job for index, job in my_share(jobs, ctx) if index >= 0]
    _remove_partial_writes(out_dir, {name for job in mine for name in job_files(job, preset)})
    for job in progress(mine, ctx, f"{preset.name} features", len(share_indices(len(jobs), ctx))):
        if is_done(out_dir, job, preset):
            continue
        if should_stop is not None and should_stop():
            log.info("stop requested: leaving before clip %s", job.clip_id)
            break
        n = _extract_clip(model, tokenizer, job, preset, out_dir, ctx, batch_size)
        written.append(path_inside(out_dir, job_files(job, preset)[-1]))
        log.info("rank %d wrote clip %s (%d windows)", ctx.rank, job.clip_id, n)
    return written


@dataclass
class ExtractionResult:
    written: list[Path]  # done markers written by this rank, in this run
    clips: int  # in the whole plan
    left: int  # clips of the whole plan still without features, agreed by every rank

    @property
    def stopped(self) -> bool:
        """Left early on request (a time limit): rerunning the same command continues."""
        return self.left > 0


def clips_left(preset: FeaturePreset, jobs: list[ClipJob], out_dir: str | Path, ctx: EvalContext) -> int:
    """Clips of ``jobs`` without features, summed over every rank's share (a collective)."""
    mine = sum(not is_done(out_dir, job, preset) for index, job in my_share(jobs, ctx) if index >= 0)
    count = torch.tensor([mine], dtype=torch.long, device=ctx.device)
    if ctx.world_size > 1:
        dist.all_reduce(count)
    return int(count.item())
