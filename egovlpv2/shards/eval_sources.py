"""Planning evaluation shards from the benchmarks' own metadata files.

- EgoMCQ (``egomcq.json``): one sample per question with the five candidate clips as members c0..c4.
- EPIC-KITCHENS-100 MIR (``EPIC_100_retrieval_test.csv``): one sample per clip, in csv order, plus the
  unique captions (``..._sentence.csv``) copied next to the shards and the relevancy pickle's path.
- Charades-Ego (``CharadesEgo_v1_test_only1st.csv``): one sample per whole video with its action classes,
  plus the class names (``Charades_v1_classes.txt``) copied next to the shards.
Bad rows become failures with reasons, like the EgoClip rows.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from egovlpv2.data.manifest import CAPTIONS_FILE, CLASSES_FILE
from egovlpv2.errors import UserError
from egovlpv2.fileio import atomic_write_json
from egovlpv2.safe_pickle import load_pickled_array
from egovlpv2.shards.egoclip_csv import sanitize_key
from egovlpv2.shards.writer import ClipSpec, SampleSpec


def _seconds(value) -> float:
    """Seconds from a number or an ``HH:MM:SS.ff`` timestamp."""
    text = str(value).strip()
    if ":" in text:
        hours, minutes, seconds = text.split(":")
        result = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    else:
        result = float(text)
    if not math.isfinite(result) or result < 0:
        raise ValueError(f"bad time {value!r}")
    return result


def _clip(row: dict, where: str) -> ClipSpec:
    start, end = _seconds(row["clip_start"]), _seconds(row["clip_end"])
    if end <= start:
        raise ValueError(f"{where}: non-positive length [{start}, {end}]")
    return ClipSpec(str(row["video_uid"]), start, end)


def plan_egomcq(path: str) -> tuple[list[SampleSpec], list[dict]]:
    questions = json.loads(Path(path).read_text(encoding="utf-8"))
    samples, failures = [], []
    for qid, q in questions.items():
        try:
            text = str(q["query"]["clip_text"]).strip()
            if not text:
                raise ValueError("empty query text")
            answer, kind = int(q["answer"]), int(q["types"])
            if not 0 <= answer < 5 or kind not in (1, 2):
                raise ValueError(f"answer {answer} or type {kind} out of range")
            choices = [q["choices"][str(i)] for i in range(5)]
            clips = {f"c{i}": _clip(c, f"choice {i}") for i, c in enumerate(choices)}
        except (KeyError, TypeError, ValueError) as exc:
            failures.append({"id": str(qid), "reason": "bad_row", "detail": f"bad question: {exc}"})
            continue
        meta = {"id": sanitize_key(f"q{qid}"), "question_id": str(qid), "text": text, "answer": answer, "type": kind,
                "choices": [{"video_uid": c["video_uid"], "clip_start": s.start, "clip_end": s.end}
                            for c, s in zip(choices, clips.values())]}
        samples.append(SampleSpec(meta["id"], meta, clips))
    return samples, failures


def _read_csv(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def plan_epic_mir(path: str, sentence_csv: str, relevancy: str, out: str) -> tuple[list, list, dict]:
    if not sentence_csv:
        raise UserError("task epic_mir needs --sentence-csv (the unique captions)")
    samples, failures = [], []
    for i, row in enumerate(_read_csv(path)):
        nid = (row.get("narration_id") or "").strip() or f"row{i}"
        try:
            start, stop = _seconds(row["start_timestamp"]), _seconds(row["stop_timestamp"])
            if stop <= start:
                raise ValueError(f"non-positive length [{start}, {stop}]")
            vid, pid = row["video_id"].strip(), row["participant_id"].strip()
        except (KeyError, AttributeError, ValueError) as exc:
            failures.append({"id": nid, "reason": "bad_row", "detail": f"bad row: {exc}"})
            continue
        meta = {"id": sanitize_key(nid), "narration_id": nid, "video_id": vid, "row": i,
                "text": row.get("narration", ""), "start": start, "stop": stop}
        samples.append(SampleSpec(meta["id"], meta, {"": ClipSpec(vid, start, stop, ("", pid, f"{pid}/videos"))}))
    sentences = _read_csv(sentence_csv)
    column = "narration" if sentences and "narration" in sentences[0] else None
    captions = [(r[column] if column else list(r.values())[-1]) for r in sentences]
    atomic_write_json(Path(out, CAPTIONS_FILE), captions, indent=0)
    if relevancy and not Path(relevancy).is_file():
        raise UserError(f"relevancy pickle not found: {relevancy}")
    if relevancy:
        load_pickled_array(relevancy, ndim=2)  # refuse a bad or hostile file now, not at evaluation time
    extra = {"captions_file": CAPTIONS_FILE, "relevancy": str(Path(relevancy).resolve()) if relevancy else "",
             "num_rows": i + 1 if samples or failures else 0}
    return samples, failures, extra


def read_charades_classes(path: str) -> list[str]:
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            code, _, name = line.strip().partition(" ")
            if code != f"c{len(names):03d}":
                raise UserError(f"{path}: expected class c{len(names):03d}, got {code!r}")
            names.append(name)
    return names


def plan_charades_ego(path: str, classes_path: str, out: str) -> tuple[list, list, dict]:
    if not classes_path:
        raise UserError("task charades_ego needs --classes (Charades_v1_classes.txt)")
    classes = read_charades_classes(classes_path)
    atomic_write_json(Path(out, CLASSES_FILE), classes, indent=0)
    samples, failures = [], []
    for row in _read_csv(path):
        vid = (row.get("id") or "").strip()
        try:
            if not vid:
                raise ValueError("empty id")
            labels = sorted({int(m.group(1)) for m in re.finditer(r"c(\d{3})", row.get("actions") or "")})
            if any(c >= len(classes) for c in labels):
                raise ValueError(f"class outside the {len(classes)} classes")
        except ValueError as exc:
            failures.append({"id": vid or "?", "reason": "bad_row", "detail": f"bad row: {exc}"})
            continue
        meta = {"id": sanitize_key(vid), "video_id": vid, "labels": labels}
        samples.append(SampleSpec(meta["id"], meta, {"": ClipSpec(vid, 0.0, None)}))
    return samples, failures, {"classes_file": CLASSES_FILE, "num_classes": len(classes)}


def plan_eval_task(run) -> tuple[list[SampleSpec], list[dict], dict]:
    if run.task == "egomcq":
        if not run.json:
            raise UserError("task egomcq needs --json (egomcq.json)")
        samples, failures = plan_egomcq(run.json)
        extra = {}
    elif run.task == "epic_mir":
        samples, failures, extra = plan_epic_mir(run.csv, run.sentence_csv, run.relevancy, run.out)
    else:
        samples, failures, extra = plan_charades_ego(run.csv, run.classes, run.out)
    if run.limit is not None:
        samples = samples[:run.limit]
    return samples, failures, extra
