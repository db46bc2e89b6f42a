"""Evaluation shards and what the evaluator reads from them: EgoMCQ, EPIC-KITCHENS-100 MIR, Charades-Ego."""
import dataclasses
import json
import pickle

import numpy as np
import torch

from egovlpv2.data.eval_data import epic_mir_relevancy_path, load_charades_classes, load_epic_mir_captions
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.shards.make import ShardRun, make_shards
from tests.helpers import gray_number, write_gray_video
from tests.eval.synthetic_benchmarks import read_samples


def _failed_ids(shard_dir):
    return [json.loads(line)["id"] for line in (shard_dir / "failures.jsonl").read_text().splitlines()]


def test_egomcq_questions_with_five_candidates(synthetic_dir, data_cfg, tmp_path):
    questions = json.loads((synthetic_dir / "egomcq.json").read_text())
    questions["broken"] = {**questions["0"], "answer": 7}
    (tmp_path / "egomcq.json").write_text(json.dumps(questions))
    manifest, ok = make_shards(ShardRun(task="egomcq", json=str(tmp_path / "egomcq.json"), out=str(tmp_path / "s"),
                                        videos=str(synthetic_dir / "videos"), workers=1, progress=False,
                                        max_failure_fraction=0.5))
    assert ok and manifest["failures"] == {"bad_row": 1}
    assert json.loads((tmp_path / "s" / "failures.jsonl").read_text()) == {
        "id": "broken", "reason": "bad_row", "detail": "bad question: answer 7 or type 1 out of range"}
    tok = load_tokenizer(data_cfg.tokenizer)
    items = read_samples("egomcq", tmp_path / "s", data_cfg)
    assert len(items) == len(questions) - 1 and {i["type"] for i in items} == {1, 2}
    for item in items:
        q = questions[item["question_id"]]
        assert item["answer"] == q["answer"] and item["type"] == q["types"]
        assert item["video"].shape == (5, 4, 3, 32, 32) and item["video"].dtype == torch.uint8
        assert item["input_ids"].shape == item["attention_mask"].shape == (15,)
        assert tok.decode(item["input_ids"], skip_special_tokens=True) == q["query"]["clip_text"]
        answer = q["choices"][str(q["answer"])]
        assert (answer["video_uid"], answer["clip_start"]) == (q["query"]["video_uid"], q["query"]["clip_start"])
        assert not torch.equal(item["video"][0], item["video"][1])


def test_epic_mir_clips_in_csv_order_with_captions_and_relevancy(tmp_path, data_cfg):
    (tmp_path / "v" / "P01" / "videos").mkdir(parents=True)
    write_gray_video(tmp_path / "v" / "P01" / "videos" / "P01_01.MP4", 60, 20.0)
    header = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,start_frame,"
              "stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes\n")
    rows = ["P01_01_0,P01,P01_01,00:00:01.00,00:00:01.00,00:00:02.00,25,50,open tap,open,3,tap,4,['tap'],[4]\n",
            "P01_01_1,P01,P01_01,00:00:00.10,00:00:00.20,00:00:00.10,5,2,close tap,close,4,tap,4,['tap'],[4]\n",
            "P01_01_2,P01,P01_01,00:00:02.00,00:00:02.40,00:00:03.20,60,80,wash cup,wash,2,cup,5,['cup'],[5]\n"]
    (tmp_path / "test.csv").write_text(header + "".join(rows))
    (tmp_path / "sentence.csv").write_text("narration_id,narration\nP01_01_0,open tap\nP01_01_2,wash cup\n")
    with open(tmp_path / "rel.pkl", "wb") as f:
        pickle.dump(np.eye(3, 2), f)
    manifest, ok = make_shards(ShardRun(task="epic_mir", csv=str(tmp_path / "test.csv"), out=str(tmp_path / "s"),
                                        sentence_csv=str(tmp_path / "sentence.csv"), relevancy=str(tmp_path / "rel.pkl"),
                                        videos=str(tmp_path / "v"), workers=1, progress=False, max_failure_fraction=0.5))
    assert ok and _failed_ids(tmp_path / "s") == ["P01_01_1"]
    cfg = dataclasses.replace(data_cfg, img_size=24, eval_resize=32)
    clips = read_samples("epic_mir", tmp_path / "s", cfg)
    assert [(c["narration_id"], c["row"], c["video_id"]) for c in clips] == [("P01_01_0", 0, "P01_01"), ("P01_01_2", 2, "P01_01")]
    # Segment centres: [1.0, 2.0) holds frames 20..39 -> 4 segments of 5 frames -> 22, 27, 32, 37.
    assert [gray_number(f) for f in clips[0]["video"]] == [22, 27, 32, 37]
    assert clips[0]["video"].shape == (4, 3, 24, 24)
    assert load_epic_mir_captions(str(tmp_path / "s")) == ["open tap", "wash cup"]
    assert epic_mir_relevancy_path(str(tmp_path / "s")) == str((tmp_path / "rel.pkl").resolve())


def test_charades_ego_whole_videos_with_multi_hot_labels(tmp_path, data_cfg):
    (tmp_path / "v").mkdir()
    write_gray_video(tmp_path / "v" / "ABC12.mp4", 40, 20.0)
    (tmp_path / "classes.txt").write_text("\n".join(f"c{i:03d} action {i}" for i in range(5)) + "\n")
    header = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    (tmp_path / "test.csv").write_text(header + "ABC12,S1,Kitchen,6,7,Yes,s,o,d,c001 0.0 1.0;c003 0.5 2.0,2.0\n"
                                       "XYZ99,S1,Kitchen,6,7,Yes,s,o,d,c099 0.0 1.0,2.0\n")
    manifest, ok = make_shards(ShardRun(task="charades_ego", csv=str(tmp_path / "test.csv"), classes=str(tmp_path / "classes.txt"),
                                        out=str(tmp_path / "s"), videos=str(tmp_path / "v"), workers=1,
                                        progress=False, max_failure_fraction=0.5))
    assert ok and _failed_ids(tmp_path / "s") == ["XYZ99"]
    items = read_samples("charades_ego", tmp_path / "s", data_cfg)
    assert len(items) == 1 and items[0]["id"] == "ABC12"
    assert items[0]["label"].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert [gray_number(f) for f in items[0]["video"]] == [5, 15, 25, 35]  # centres of the whole 40 frames
    assert load_charades_classes(str(tmp_path / "s")) == [f"action {i}" for i in range(5)]
