"""The retrieval report: retrieval.png laid out as documented, its content following the queries, the
correct clips framed, and index.html opening from disk in headless Chromium with every image shown."""
import numpy as np
import pytest
import torch
from PIL import Image

from egovlpv2.data import DataConfig
from egovlpv2.data.tokenizer import load_tokenizer
from egovlpv2.errors import UsageError
from egovlpv2.eval.retrieval_report import (CORRECT, HEADER_LINES, LABEL_W, PAD, REPORT_FRAMES, TOP_K, draw_sheet,
                                            query_views)
from egovlpv2.eval.run import EvalRun, evaluate
from egovlpv2.eval.runtime import current_context
from egovlpv2.data.random_access import ClipDecoder, read_sample
from egovlpv2.eval.benchmarks import HEADLINE, headline, rank_task
from egovlpv2.shards.contact_sheet import LINE_H, TILE_H, TILE_W
from tests.eval import synthetic_benchmarks as synth
from tests.eval.headless_chromium import load_page

pytestmark = pytest.mark.slow
BENCH_KEY = {"epic_mir": "epic", "egomcq": "mcq", "charades_ego": "charades"}
ROW_H = TILE_H + 2 * PAD
QUERY_H = HEADER_LINES * LINE_H + TOP_K * ROW_H

PAGE_STATE = """({
  images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  queries: Array.from(document.querySelectorAll('section h3')).map(h => h.textContent),
  correct: document.querySelectorAll('tr.correct').length,
  metrics: Array.from(document.querySelector('table').rows).map(r => Array.from(r.cells).map(c => c.textContent)),
})"""


def expected_size(num_queries: int) -> tuple[int, int]:
    """The documented layout: a label column and REPORT_FRAMES tiles wide; per query, HEADER_LINES text lines
    and TOP_K framed rows."""
    return LABEL_W + REPORT_FRAMES * TILE_W + 2 * PAD, num_queries * QUERY_H


def query_texts(bench, task: str) -> list[str]:
    if task == "epic_mir":
        return bench["epic"]["captions"]
    if task == "charades_ego":
        return bench["charades"]["classes"]
    return [q["query"]["clip_text"] for q in bench["mcq"]["questions"].values()]


@pytest.mark.parametrize("task", ["epic_mir", "egomcq", "charades_ego"])
def test_evaluate_writes_a_report_that_opens_from_disk(bench, task, tmp_path):
    queries = 3
    results = synth.evaluate_bench(bench, task, bench[BENCH_KEY[task]]["shards"], bench["ours"], tmp_path / "r.json",
                                   "--report", str(tmp_path / "report"), "--report-queries", str(queries))
    with Image.open(tmp_path / "report" / "retrieval.png") as png:
        assert png.size == expected_size(queries)

    page = tmp_path / "report" / "index.html"
    loaded = load_page(page, PAGE_STATE, tmp_path)
    assert loaded.errors == []
    assert all(url == page.resolve().as_uri() or url.startswith("data:") for url in loaded.requests), loaded.requests
    state = loaded.value
    assert len(state["images"]) == queries * TOP_K
    assert all(image == [True, REPORT_FRAMES * TILE_W, TILE_H] for image in state["images"]), state["images"]
    texts = query_texts(bench, task)
    assert len(state["queries"]) == queries
    assert all(any(h3.endswith(f": {text}") for text in texts) for h3 in state["queries"]), state["queries"]
    metric = "/".join(HEADLINE[task])
    assert [metric, f"{headline(task, results):.2f}"] in [row[:2] for row in state["metrics"]], state["metrics"]
    if task == "egomcq":  # each question has exactly one correct clip among its five, all shown
        assert state["correct"] == queries


@pytest.fixture(scope="module")
def charades_ranking(bench):
    shards = bench["charades"]["shards"]
    cfg = DataConfig(shards=str(shards), tokenizer=str(bench["tokenizer"]), num_frames=synth.BENCH_FRAMES, img_size=64)
    _, ranking = rank_task("charades_ego", bench["model"], shards, cfg, load_tokenizer(bench["tokenizer"]),
                           current_context(torch.device("cpu")), batch_size=6, num_workers=0)
    return ranking, ClipDecoder(REPORT_FRAMES, cfg.img_size)


def sheet(ranking, decoder, queries: list[int]) -> np.ndarray:
    return np.asarray(draw_sheet(query_views(ranking, queries, decoder), ranking.score_name))


def labelled(ranking, query: int, candidate: int) -> set[int]:
    """The classes of the synthetic Charades-Ego video EGO{k:03d} a candidate is: verb k // 4, noun 3 + k % 4."""
    ref, _ = ranking.clip(query, candidate)
    k = int(read_sample(ref, members=())[0]["video_id"].removeprefix("EGO"))
    return {k // 4, 3 + k % 4}


def test_sheet_follows_the_queries_and_frames_the_correct_clips(bench, charades_ranking):
    ranking, decoder = charades_ranking
    chosen = ranking.choose_queries(4, seed=0)
    # The class no video has ("sleeping", the last) is never drawn: it has no correct clip to show.
    assert len(chosen) == 4 and len(set(chosen)) == 4 and len(bench["charades"]["classes"]) - 1 not in chosen
    assert ranking.choose_queries(4, seed=0) == chosen and ranking.choose_queries(100) == list(range(7))

    together = sheet(ranking, decoder, chosen[:2])
    first, second = sheet(ranking, decoder, chosen[:1]), sheet(ranking, decoder, chosen[1:2])
    assert together.shape == (2 * QUERY_H, expected_size(2)[0], 3)
    assert np.array_equal(together, np.concatenate([first, second]))  # each query's block is its own
    assert not np.array_equal(first, second)
    assert not np.array_equal(together, sheet(ranking, decoder, chosen[2:4]))

    marks = []
    for block, query in zip((first, second), chosen[:2]):
        order = np.argsort(-ranking.scores[query], kind="stable")[:TOP_K]
        framed = [tuple(block[HEADER_LINES * LINE_H + rank * ROW_H + 1, LABEL_W + 1]) == CORRECT
                  for rank in range(TOP_K)]
        assert framed == [query in labelled(ranking, query, int(video)) for video in order]
        marks += framed
    assert any(marks) and not all(marks)  # both kinds of row were checked


def test_report_needs_a_query(bench, tmp_path):
    run = EvalRun(task="epic_mir", checkpoint=str(bench["ours"]), data=str(bench["epic"]["shards"]),
                  tokenizer=str(bench["tokenizer"]), report=str(tmp_path / "report"), report_queries=0)
    with pytest.raises(UsageError, match="--report-queries 0"):
        evaluate(run)
    assert not (tmp_path / "report").exists()
