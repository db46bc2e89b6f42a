"""Pictures of what the model retrieves: for a few text queries, the query and its top-ranked clips, each
clip a row of frames with its rank, score and relevance, the correct clips framed.

``write_retrieval_report`` writes, into the report folder, ``retrieval.png`` (the whole picture) and
``index.html``: the metrics table above the same queries, one frame strip per clip, every image inside the
page as a data URI, so the page opens from disk with nothing else beside it. Frames are decoded again from
the shards, as the evaluation saw them (segment centres, the eval resize and crop), ``REPORT_FRAMES`` per clip.
"""
from __future__ import annotations

import base64
import html
import io
import textwrap
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from egovlpv2.eval.ranking import Ranking
from egovlpv2.eval.report import table_rows
from egovlpv2.data.random_access import ClipDecoder, read_sample
from egovlpv2.fileio import atomic_write_text
from egovlpv2.shards.contact_sheet import LINE_H, TILE_H, TILE_W, caption, frame_strip, label_font, save_png

DEFAULT_QUERIES = 8
TOP_K = 5
REPORT_FRAMES = 4
LABEL_W = 240                      # the column left of each frame row: rank, score, relevance, clip
PAD = 4                            # around each frame row; the correct clip's frame is drawn in it
HEADER_LINES = 3                   # above each query's rows: the query (two lines) and its first correct rank
ROW_LINES = TILE_H // LINE_H
CORRECT, RELATED = (0, 150, 60), (230, 140, 0)  # relevance 1; graded relevance in (0, 1) (EK-100)


@dataclass(frozen=True)
class RankedClip:
    rank: int                      # 1-based
    score: float
    relevance: float
    lines: list[str]               # what the clip is: video, time span, narration, sample key
    strip: Image.Image             # REPORT_FRAMES tiles side by side


@dataclass(frozen=True)
class QueryView:
    index: int
    text: str
    num_candidates: int
    first_correct: int | None      # rank of the best-ranked correct clip
    clips: list[RankedClip]        # the top TOP_K, best first


def sheet_size(num_queries: int, clips_per_query: int, frames: int = REPORT_FRAMES) -> tuple[int, int]:
    """(width, height) of retrieval.png."""
    query_h = HEADER_LINES * LINE_H + clips_per_query * (TILE_H + 2 * PAD)
    return LABEL_W + frames * TILE_W + 2 * PAD, num_queries * query_h


def relevance_note(relevance: float) -> str:
    if relevance >= 1:
        return "correct"
    return f"relevance {relevance:.2f}" if relevance > 0 else ""


def _clip_lines(meta: dict, key: str, prefix: str) -> list[str]:
    if prefix:  # an EgoMCQ choice: its video and span are listed in the question's metadata
        choice = int(prefix[1:])
        meta, key = meta["choices"][choice], f"{key} choice {choice}"
    return [line for line in caption(meta, key, LABEL_W // 7) if line and line != "(no tags)"]


def query_views(ranking: Ranking, queries: list[int], decoder: ClipDecoder, top_k: int = TOP_K) -> list[QueryView]:
    """Each chosen query with its top `top_k` clips decoded (every sample read once)."""
    samples: dict[str, tuple[dict, dict]] = {}
    views = []
    for q in queries:
        clips = []
        for position, c in enumerate(ranking.order(q)[:top_k]):
            ref, prefix = ranking.clip(q, int(c))
            if ref.key not in samples:
                samples[ref.key] = read_sample(ref)
            meta, members = samples[ref.key]
            frames = decoder(meta, members, prefix).permute(0, 2, 3, 1).numpy()
            clips.append(RankedClip(position + 1, float(ranking.scores[q, c]), float(ranking.relevance[q, c]),
                                    _clip_lines(meta, ref.key, prefix), frame_strip(list(frames))))
        views.append(QueryView(q, ranking.query_text(q), ranking.scores.shape[1], ranking.first_correct_rank(q), clips))
    return views


def correct_note(view: QueryView) -> str:
    if view.first_correct is None:
        return f"no correct clip among the {view.num_candidates} candidates"
    return f"first correct clip at rank {view.first_correct} of {view.num_candidates}"


def draw_sheet(views: list[QueryView], score_name: str) -> Image.Image:
    """retrieval.png: per query, its text and first correct rank, then its clips as rows of frames."""
    clips_per_query = max((len(v.clips) for v in views), default=0)
    width, height = sheet_size(len(views), clips_per_query)
    sheet = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(sheet), label_font()
    query_h = height // max(len(views), 1)
    for i, view in enumerate(views):
        y = i * query_h
        text = textwrap.wrap(f"query {view.index}: {view.text}", width // 7)[:HEADER_LINES - 1]
        for n, line in enumerate(text + [f"{correct_note(view)}; {score_name}"]):
            draw.text((PAD, y + n * LINE_H), line, fill="black", font=font)
        y += HEADER_LINES * LINE_H
        for clip in view.clips:
            x = LABEL_W + PAD
            colour = CORRECT if clip.relevance >= 1 else RELATED if clip.relevance > 0 else None
            if colour:
                draw.rectangle((x - PAD, y, x + clip.strip.width + PAD - 1, y + TILE_H + 2 * PAD - 1), fill=colour)
            sheet.paste(clip.strip, (x, y + PAD))
            label = [f"#{clip.rank}  {clip.score:.3f}  {relevance_note(clip.relevance)}", *clip.lines]
            for n, line in enumerate(label[:ROW_LINES]):
                draw.text((PAD, y + PAD + n * LINE_H), line, fill=colour or "black", font=font)
            y += TILE_H + 2 * PAD
    return sheet


def _data_uri(image: Image.Image) -> str:
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.getvalue()).decode("ascii")


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#111}table{border-collapse:collapse;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#eee}
table.ranked td{border:none;border-bottom:1px solid #eee}tr.correct img{outline:4px solid rgb(0,150,60)}
tr.related img{outline:4px solid rgb(230,140,0)}tr.correct .mark{color:rgb(0,150,60);font-weight:bold}
tr.related .mark{color:rgb(230,140,0)}img{display:block}"""


def report_page(task: str, results: dict, info: dict, views: list[QueryView], score_name: str) -> str:
    """index.html: the run, its metrics beside the paper's, and the queries with their ranked clips."""
    e = html.escape
    header, rows = table_rows(task, results)
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\">"
             f"<title>{e(task)} evaluation</title><style>{STYLE}</style></head><body>",
             f"<h1>{e(task)} evaluation</h1><ul>",
             *(f"<li>{e(str(k))}: <code>{e(str(v))}</code></li>" for k, v in info.items()),
             "</ul><h2>Metrics</h2><table><tr>", *(f"<th>{e(h)}</th>" for h in header), "</tr>",
             *("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows), "</table>",
             f"<h2>What the model retrieves</h2><p>The top {TOP_K} clips of {len(views)} queries by {e(score_name)}; "
             f"the same as one picture: <a href=\"retrieval.png\">retrieval.png</a>.</p>"]
    for view in views:
        parts.append(f"<section><h3>query {view.index}: {e(view.text)}</h3><p>{e(correct_note(view))}</p>"
                     f"<table class=\"ranked\">")
        for clip in view.clips:
            kind = "correct" if clip.relevance >= 1 else "related" if clip.relevance > 0 else "other"
            parts.append(f"<tr class=\"{kind}\"><td>#{clip.rank}<br>{clip.score:.3f}<br><span class=\"mark\">"
                         f"{e(relevance_note(clip.relevance))}</span></td><td><img src=\"{_data_uri(clip.strip)}\" "
                         f"width=\"{clip.strip.width}\" height=\"{clip.strip.height}\" alt=\"rank {clip.rank} frames\">"
                         f"</td><td>{'<br>'.join(e(line) for line in clip.lines)}</td></tr>")
        parts.append("</table></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_retrieval_report(out_dir: str | Path, task: str, results: dict, info: dict, ranking: Ranking, data_cfg,
                           num_queries: int = DEFAULT_QUERIES, seed: int = 0) -> list[int]:
    """Write `out_dir`/retrieval.png and `out_dir`/index.html; returns the queries shown (their indices)."""
    out_dir = Path(out_dir)
    queries = ranking.choose_queries(num_queries, seed)
    decoder = ClipDecoder(REPORT_FRAMES, data_cfg.img_size, decode_backend=data_cfg.decode_backend,
                          decode_timeout_s=data_cfg.decode_timeout_s, eval_resize=data_cfg.eval_resize)
    views = query_views(ranking, queries, decoder)
    save_png(draw_sheet(views, ranking.score_name), out_dir / "retrieval.png")
    atomic_write_text(out_dir / "index.html", report_page(task, results, info, views, ranking.score_name))
    return queries
