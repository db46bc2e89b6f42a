"""Fine-tuning pairs: EK-100 captions drawn among relevancy > threshold with their relevancy as weight;
Charades-Ego videos paired with one of their own class names."""
import pytest
import torch

from egovlpv2.finetune.config import load_finetune_config
from egovlpv2.finetune.components import build_train_set
from egovlpv2.data.random_access import read_sample
from tests.eval import synthetic_benchmarks as synth


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftdata")
    return {"epic": synth.make_epic_mir(root, repeats=1), "charades": synth.make_charades_ego(root),
            "tokenizer": synth.make_tokenizer(root)}


def _cfg(task, shards, tokenizer, *extra):
    return load_finetune_config(task, [f"data.train_shards={shards}", f"data.tokenizer={tokenizer}",
                                       "data.num_frames=2", "data.img_size=32", "data.eval_resize=64", *extra])


def test_epic_pairs_follow_the_relevancy(sources):
    epic = sources["epic"]
    data = build_train_set(_cfg("epic_mir", epic["shards"], sources["tokenizer"], "data.relevancy_threshold=0.6"))
    relevancy, captions = epic["relevancy"], epic["captions"]
    for index in range(len(data)):
        row = int(read_sample(data.refs[index], members=("json",))[0]["row"])
        for epoch in range(3):
            data.set_epoch(epoch)
            item = data[index]
            column = captions.index(item["text"])
            # Threshold 0.6 leaves only the exact caption (relevancy 1); 0.5-relevant ones are never drawn.
            assert relevancy[row, column] == item["relevancy"] == 1.0
            assert item["video"].shape == (2, 3, 32, 32) and item["video"].dtype == torch.uint8
    data = build_train_set(_cfg("epic_mir", epic["shards"], sources["tokenizer"]))
    drawn = set()
    for epoch in range(6):
        data.set_epoch(epoch)
        drawn |= {data[i]["relevancy"] for i in range(4)}
    assert drawn == {0.5, 1.0}  # with threshold 0.1 the half-relevant captions are drawn too


def test_charades_pairs_name_one_of_the_videos_classes(sources):
    data = build_train_set(_cfg("charades_ego", sources["charades"]["shards"], sources["tokenizer"]))
    names = sources["charades"]["classes"]
    assert len(data) == 12
    for index in range(len(data)):
        labels = read_sample(data.refs[index], members=("json",))[0]["labels"]
        assert data[index]["text"] in [names[c] for c in labels]
