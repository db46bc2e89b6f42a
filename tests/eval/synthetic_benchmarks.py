"""Tiny benchmark sources in the real annotation formats (EgoMCQ json, EK-100 retrieval csvs + relevancy
pickle, Charades-Ego csv + classes), videos whose content follows the text, and their shards."""
from __future__ import annotations

import csv
import json
import pickle
import re
from pathlib import Path

import cv2
import numpy as np
import torch

from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.synthetic import write_video
from egovlpv2.data.tokenizer import build_bpe_tokenizer
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.model.loading import RELEASED_KEY_TABLE, map_released_key

VERBS = ("lift", "lower", "shake")
NOUNS = (("red", (230, 30, 30)), ("green", (30, 200, 40)), ("blue", (40, 60, 235)), ("yellow", (240, 220, 20)))
FPS, SIZE, CLIP_S = 8.0, 64, 1.0


def caption(verb: int, noun: int) -> str:
    return f"{VERBS[verb]} the {NOUNS[noun][0]} ball"


def render(verb: int, noun: int, seconds: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, size=(SIZE, SIZE, 3)).astype(np.uint8)
    frames = []
    for n in range(int(seconds * FPS)):
        u = (n % int(CLIP_S * FPS)) / (CLIP_S * FPS)
        x, y = SIZE // 2, SIZE // 2
        if verb == 0:
            y = int(SIZE * (0.75 - 0.5 * u))
        elif verb == 1:
            y = int(SIZE * (0.25 + 0.5 * u))
        else:
            x = int(SIZE * (0.5 + 0.25 * np.sin(4 * np.pi * u)))
        image = background.copy()
        cv2.circle(image, (x, y), SIZE // 6, NOUNS[noun][1], -1)
        frames.append(image)
    return frames


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _shard(task: str, out: Path, videos: Path, **kwargs) -> Path:
    run = ShardRun(task=task, videos=str(videos), out=str(out), workers=1, progress=False,
                   encode=EncodeOptions(short_side=0, gop=4, preset="ultrafast"), **kwargs)
    manifest, ok = make_shards(run)
    assert ok and not manifest["failures"], manifest["failures"]
    return out


def make_epic_mir(root: Path, repeats: int = 2, seed: int = 0) -> dict:
    """Clips of every (verb, noun) `repeats` times; relevancy = (same verb + same noun) / 2."""
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    pairs = [(v, n) for v in range(len(VERBS)) for n in range(len(NOUNS))]
    rows, meta = [], []
    for r in range(repeats):
        vid = f"P01_{r + 1:02d}"
        write_video(videos / f"{vid}.mp4", [f for k, (v, n) in enumerate(pairs) for f in
                                             render(v, n, CLIP_S, seed + 100 * r + k)], FPS, gop=4)
        for k, (v, n) in enumerate(pairs):
            start, stop = k * CLIP_S + 0.05, (k + 1) * CLIP_S - 0.05
            rows.append([f"{vid}_{k}", "P01", vid, f"00:00:{start:05.2f}", f"00:00:{start:05.2f}",
                         f"00:00:{stop:05.2f}", 0, 0, caption(v, n), VERBS[v], v, NOUNS[n][0], n, "[]", "[]"])
            meta.append((v, n))
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
              "noun_class", "all_nouns", "all_noun_classes"]
    _write_csv(root / "EPIC_100_retrieval_test.csv", header, rows)
    _write_csv(root / "EPIC_100_retrieval_test_sentence.csv", ["index", "narration"],
               [[i, caption(v, n)] for i, (v, n) in enumerate(pairs)])
    relevancy = np.array([[(cv == v) * 0.5 + (cn == n) * 0.5 for (v, n) in pairs] for (cv, cn) in meta])
    with open(root / "caption_relevancy_EPIC_100_retrieval_test.pkl", "wb") as f:
        pickle.dump(relevancy, f)
    shards = _shard("epic_mir", root / "shards_epic", videos, csv=str(root / "EPIC_100_retrieval_test.csv"),
                    sentence_csv=str(root / "EPIC_100_retrieval_test_sentence.csv"),
                    relevancy=str(root / "caption_relevancy_EPIC_100_retrieval_test.pkl"))
    return {"shards": shards, "relevancy": relevancy, "captions": [caption(v, n) for v, n in pairs]}


def make_charades_ego(root: Path, seed: int = 0) -> dict:
    """One video per (verb, noun); classes are the verbs and the nouns (two labels per video), plus one
    class that no video has."""
    videos = root / "videos_charades"
    videos.mkdir(parents=True, exist_ok=True)
    names = [f"{v} something" for v in VERBS] + [f"the {c} ball" for c, _ in NOUNS] + ["sleeping"]
    rows = []
    for k, (v, n) in enumerate((v, n) for v in range(len(VERBS)) for n in range(len(NOUNS))):
        vid = f"EGO{k:03d}"
        write_video(videos / f"{vid}.mp4", render(v, n, 2 * CLIP_S, seed + k), FPS, gop=4)
        actions = f"c{v:03d} 0.0 2.0;c{len(VERBS) + n:03d} 0.0 2.0"
        rows.append([vid, "S1", "Kitchen", 6, 7, "Yes", "script", "ball", "desc", actions, 2.0])
    header = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
              "actions", "length"]
    _write_csv(root / "CharadesEgo_v1_test_only1st.csv", header, rows)
    (root / "Charades_v1_classes.txt").write_text("".join(f"c{i:03d} {name}\n" for i, name in enumerate(names)))
    shards = _shard("charades_ego", root / "shards_charades", videos, csv=str(root / "CharadesEgo_v1_test_only1st.csv"),
                    classes=str(root / "Charades_v1_classes.txt"))
    return {"shards": shards, "classes": names}


def make_egomcq(root: Path, questions: int = 6, seed: int = 0) -> dict:
    """Questions over the EK-style videos: inter (choices from different videos) and intra (one video)."""
    videos = root / "videos_mcq"
    videos.mkdir(parents=True, exist_ok=True)
    pairs = [(v, n) for v in range(len(VERBS)) for n in range(len(NOUNS))]
    uids = [f"vid{k}" for k in range(5)]
    for k, uid in enumerate(uids):
        write_video(videos / f"{uid}.mp4", [f for j, (v, n) in enumerate(pairs[:6]) for f in
                                             render(v, n, CLIP_S, seed + 10 * k + j)], FPS, gop=4)

    def row(uid, j):
        v, n = pairs[j]
        return {"video_uid": uid, "clip_start": j * CLIP_S + 0.05, "clip_end": (j + 1) * CLIP_S - 0.05,
                "clip_text": f"#C C {caption(v, n)}"}

    data = {}
    for q in range(questions):
        answer, kind = q % 5, 1 if q % 2 == 0 else 2
        if kind == 1:  # inter-video: one clip from each of five videos
            choices = [row(uids[i], (q + i) % 6) for i in range(5)]
        else:  # intra-video: five clips of one video
            choices = [row(uids[q % 5], (q + i) % 6) for i in range(5)]
        data[str(q)] = {"query": dict(choices[answer]), "choices": {str(i): c for i, c in enumerate(choices)},
                        "answer": answer, "types": kind}
    (root / "egomcq.json").write_text(json.dumps(data))
    shards = _shard("egomcq", root / "shards_mcq", videos, json=str(root / "egomcq.json"))
    return {"shards": shards, "questions": data}


def make_tokenizer(root: Path) -> Path:
    texts = [f"#C C {caption(v, n)}" for v in range(len(VERBS)) for n in range(len(NOUNS))] * 4
    texts += [f"{v} something" for v in VERBS] + ["sleeping"] * 3
    build_bpe_tokenizer(texts, root / "tokenizer", vocab_size=300)
    return root / "tokenizer"


def _inverse_table() -> list[tuple[str, str]]:
    """Our names -> released names, derived from the model's released-name table."""
    inverse = []
    for pattern, repl in RELEASED_KEY_TABLE:
        groups = re.findall(r"\(([^()]+)\)", pattern)
        inv_pattern = re.escape(re.sub(r"\\(\d)", "@@\\1@@", repl))
        for i, group in enumerate(groups, start=1):
            inv_pattern = inv_pattern.replace(f"@@{i}@@", f"({group})")
        counter = iter(range(1, len(groups) + 1))
        inv_repl = re.sub(r"\([^()]+\)", lambda _: f"\\{next(counter)}", pattern).replace("\\.", ".")
        inverse.append((inv_pattern, inv_repl))
    return inverse


def released_layout(model) -> dict:
    """`model`'s weights as the released files store them: {"state_dict": {"module." + released name}}."""
    table = _inverse_table()
    state = {}
    for name, value in model.state_dict().items():
        released = next(re.sub(f"^{p}$", r, name) for p, r in table if re.fullmatch(p, name))
        assert map_released_key(released) == name, (name, released)
        state["module." + released] = value.clone()
    positions = model.cfg.text.max_positions
    state["module.text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return {"state_dict": state, "epoch": 10}


def run_isolated(main, argv: list[str]):
    """Run a launch script's `main` in this process, then leave no process group or exported
    RANK/MASTER_PORT behind for the tests that follow."""
    import os

    import torch.distributed as dist

    saved = dict(os.environ)
    try:
        return main(argv)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(saved)


def read_samples(task: str, shard_dir, data_cfg) -> list[dict]:
    """Every sample of an eval shard directory through the evaluator's reader, in written order."""
    from egovlpv2.data.tokenizer import load_tokenizer
    from egovlpv2.eval.eval_samples import EvalSamples

    tokenizer = load_tokenizer(data_cfg.tokenizer) if task == "egomcq" else None
    dataset = EvalSamples(task, shard_dir, data_cfg, tokenizer)
    return [dataset[i][1] for i in range(len(dataset))]


BENCH_FRAMES = 2  # frames per clip of the tiny model the benchmarks are evaluated with


def make_bench(root: Path) -> dict:
    """A tiny random model (saved in our and in the released layout), the tokenizer and the three benchmarks."""
    import egovlpv2

    torch.manual_seed(0)
    model = egovlpv2.create_model("egovlpv2-tiny", num_frames=BENCH_FRAMES).eval()
    ours = root / "ours.pt"
    torch.save(model.state_dict(), ours)
    released = root / "EgoVLPv2_tiny_layout.pth"
    torch.save(released_layout(model), released)
    tokenizer = make_tokenizer(root)
    return {"root": root, "model": model, "ours": ours, "released": released, "tokenizer": tokenizer,
            "epic": make_epic_mir(root), "charades": make_charades_ego(root), "mcq": make_egomcq(root)}


def evaluate_bench(bench: dict, task: str, shards, checkpoint, out, *extra: str) -> dict:
    """egovlpv2-evaluate's arguments for the tiny model on `shards`, run in this process."""
    from egovlpv2.cli.evaluate import evaluate

    return run_isolated(evaluate, ["--task", task, "--checkpoint", str(checkpoint), "--data", str(shards),
                                   "--tokenizer", str(bench["tokenizer"]), "--model", "egovlpv2-tiny",
                                   "--num-frames", str(BENCH_FRAMES), "--batch-size", "5", "--num-workers", "0",
                                   "--out", str(out), *extra])
