"""Shards -> evaluate for the three benchmarks on tiny inputs, from our and the released checkpoint layouts."""
import json

import pytest
import torch
import torch.multiprocessing as mp

from egovlpv2.data import DataConfig
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.data.transforms import normalize_video
from egovlpv2.dist.env import free_port
from egovlpv2.eval.eval_samples import MissingSamplesError
from egovlpv2.eval.metrics import charades_map, egomcq_accuracy, mir_map, mir_ndcg
from tests.eval import synthetic_benchmarks as synth

pytestmark = pytest.mark.slow
FRAMES = synth.BENCH_FRAMES


def data_cfg(bench, shards):
    return DataConfig(shards=str(shards), tokenizer=str(bench["tokenizer"]), num_frames=FRAMES, img_size=64)


@torch.no_grad()
def reference_epic(bench):
    """Similarity computed directly from the samples, independent of the evaluator's batching, gathering and metrics."""
    model, tok = bench["model"], load_tokenizer(bench["tokenizer"])
    clips = synth.read_samples("epic_mir", bench["epic"]["shards"], data_cfg(bench, bench["epic"]["shards"]))
    video = model.encode_video(normalize_video(torch.stack([c["video"] for c in clips])))
    enc = tok(bench["epic"]["captions"], padding=True, return_tensors="pt")
    text = model.encode_text(enc["input_ids"], enc["attention_mask"])
    return (video @ text.T).numpy(), bench["epic"]["relevancy"][[c["row"] for c in clips]]


def test_epic_mir_end_to_end_matches_direct_computation(bench, tmp_path):
    results = synth.evaluate_bench(bench, "epic_mir", bench["epic"]["shards"], bench["ours"], tmp_path / "epic.json")
    sim, rel = reference_epic(bench)
    for key, metric in (("mAP", mir_map), ("nDCG", mir_ndcg)):
        expected = metric(sim, rel)
        for direction in ("v2t", "t2v", "avg"):
            assert results[key][direction] == pytest.approx(expected[direction], abs=1e-3)
    saved = json.loads((tmp_path / "epic.json").read_text())
    assert saved["results"]["mAP"]["avg"] == pytest.approx(results["mAP"]["avg"])
    assert saved["paper"]["mAP/avg"]["paper zero-shot"] == 26.7
    table = (tmp_path / "epic.md").read_text()
    assert "| mAP/avg |" in table and "26.70" in table


@torch.no_grad()
def test_egomcq_end_to_end_from_the_released_checkpoint_layout(bench, tmp_path):
    """The checkpoint is in the released key layout ({"state_dict": {"module.video_model...."}}); the
    reference scores come from the model it was written from."""
    results = synth.evaluate_bench(bench, "egomcq", bench["mcq"]["shards"], bench["released"], tmp_path / "mcq.json")
    model = bench["model"]
    dual, vtm, answers, types = [], [], [], []
    for s in synth.read_samples("egomcq", bench["mcq"]["shards"], data_cfg(bench, bench["mcq"]["shards"])):
        video = normalize_video(s["video"])
        ids, mask = s["input_ids"][None], s["attention_mask"][None]
        dual.append((model.encode_video(video) @ model.encode_text(ids, mask).T)[:, 0])
        vtm.append(model.match_score(video, ids.expand(5, -1), mask.expand(5, -1)))
        answers.append(s["answer"])
        types.append(s["type"])
    dual, vtm = torch.stack(dual), torch.stack(vtm)
    for kind, scores in (("dual", dual), ("vtm", vtm), ("ensemble", dual + vtm)):
        assert results[kind] == pytest.approx(egomcq_accuracy(scores, answers, types))
    assert results["num_questions"] == {"inter": 3, "intra": 3}


@torch.no_grad()
def test_charades_ego_end_to_end(bench, tmp_path):
    results = synth.evaluate_bench(bench, "charades_ego", bench["charades"]["shards"], bench["ours"], tmp_path / "ch.json")
    model, tok = bench["model"], load_tokenizer(bench["tokenizer"])
    samples = synth.read_samples("charades_ego", bench["charades"]["shards"], data_cfg(bench, bench["charades"]["shards"]))
    video = model.encode_video(normalize_video(torch.stack([s["video"] for s in samples])))
    enc = tok(bench["charades"]["classes"], padding=True, return_tensors="pt")
    scores = video @ model.encode_text(enc["input_ids"], enc["attention_mask"]).T
    labels = torch.stack([s["label"] for s in samples])
    assert results["num_classes"] == len(bench["charades"]["classes"]) and results["num_videos"] == 12
    assert results["mAP"] == pytest.approx(charades_map(scores, labels), abs=1e-3)


def test_missing_video_is_an_error_naming_it(bench, tmp_path):
    from egovlpv2.shards.make import ShardRun, make_shards

    root = bench["root"]
    csv_path = tmp_path / "with_missing.csv"
    lines = (root / "CharadesEgo_v1_test_only1st.csv").read_text().splitlines()
    csv_path.write_text("\n".join(lines + ["NOVIDEO9,S1,Kitchen,6,7,Yes,s,o,d,c001 0.0 1.0,2.0"]) + "\n")
    make_shards(ShardRun(task="charades_ego", videos=str(root / "videos_charades"), out=str(tmp_path / "shards"),
                         csv=str(csv_path), classes=str(root / "Charades_v1_classes.txt"), workers=1,
                         progress=False, max_failure_fraction=1.0))
    with pytest.raises(MissingSamplesError, match="NOVIDEO9"):
        synth.evaluate_bench(bench, "charades_ego", tmp_path / "shards", bench["ours"], tmp_path / "x.json")
    results = synth.evaluate_bench(bench, "charades_ego", tmp_path / "shards", bench["ours"], tmp_path / "x.json", "--allow-missing")
    assert results["missing"] == 1 and results["num_videos"] == 12



def _rank_main(rank, world, port, bench_paths, out):
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # 23 clips: the ranks get 12 and 11, no padding.
    results = synth.evaluate_bench(bench_paths, "epic_mir", bench_paths["epic"]["shards"], bench_paths["ours"], out, "--limit", "23")
    torch.save(results, f"{out}.rank{rank}")


def test_two_ranks_score_each_clip_once_and_agree(bench, tmp_path):
    single = synth.evaluate_bench(bench, "epic_mir", bench["epic"]["shards"], bench["ours"], tmp_path / "single.json", "--limit", "23")
    paths = {k: bench[k] for k in ("ours", "tokenizer")} | {"epic": {"shards": bench["epic"]["shards"]}}
    mp.start_processes(_rank_main, args=(2, free_port(), paths, str(tmp_path / "multi.json")), nprocs=2,
                       start_method="spawn")
    for rank in range(2):
        multi = torch.load(f"{tmp_path / 'multi.json'}.rank{rank}", weights_only=False)
        assert multi["num_clips"] == single["num_clips"] == 23
        assert multi["mAP"] == pytest.approx(single["mAP"], abs=1e-4)
        assert multi["nDCG"] == pytest.approx(single["nDCG"], abs=1e-4)
