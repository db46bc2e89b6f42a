"""What a benchmark ranked, kept beside its metrics so one can look at it: for each text query, a score and
a relevance for every candidate clip, and where each clip lies in the shards.

- EgoMCQ: a query is a question's narration; its candidates are that question's five clips (members
  ``c0``..``c4`` of the question's sample), scored by the ensemble (dual + VTM).
- EK-100 MIR: a query is a unique caption; its candidates are every test clip (text -> video), relevance
  is the graded relevancy (1: the caption's own action).
- Charades-Ego: a query is a class prompt; its candidates are every video, relevance 1 where labelled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from egovlpv2.data.random_access import SampleRef, read_sample


@dataclass(frozen=True)
class Ranking:
    task: str
    score_name: str               # what `scores` are ("ensemble score", "cosine similarity")
    scores: np.ndarray            # [queries, candidates]
    relevance: np.ndarray         # [queries, candidates]; 1 = a correct clip, graded in (0, 1) on EK-100
    refs: Sequence[SampleRef]     # the evaluated samples, in evaluation order
    queries: Sequence[str] | None  # the query texts; None: query q is the narration of sample q (EgoMCQ)
    # Candidate c is sample candidate_samples[c]; None: candidate c is member "c{c}" of the query's sample.
    candidate_samples: np.ndarray | None

    def __post_init__(self):
        if self.scores.shape != self.relevance.shape:
            raise ValueError(f"scores {self.scores.shape} and relevance {self.relevance.shape} differ in shape")

    @property
    def num_queries(self) -> int:
        return int(self.scores.shape[0])

    def query_text(self, query: int) -> str:
        if self.queries is None:
            return str(read_sample(self.refs[query], members=())[0].get("text", ""))
        return self.queries[query]

    def clip(self, query: int, candidate: int) -> tuple[SampleRef, str]:
        """The sample holding a candidate clip and the clip's member prefix ("" for the sample's own video)."""
        if self.candidate_samples is None:
            return self.refs[query], f"c{candidate}"
        return self.refs[int(self.candidate_samples[candidate])], ""

    def order(self, query: int) -> np.ndarray:
        """The candidates of `query`, best first (ties: lower index first, as the metrics rank)."""
        return np.argsort(-self.scores[query], kind="stable")

    def first_correct_rank(self, query: int) -> int | None:
        """1-based rank of the best-ranked correct clip (relevance 1), None when the query has none."""
        hits = np.flatnonzero(self.relevance[query][self.order(query)] >= 1)
        return int(hits[0]) + 1 if len(hits) else None

    def choose_queries(self, count: int, seed: int = 0) -> list[int]:
        """`count` distinct queries that have a correct clip (all queries if none has), drawn with `seed`,
        in index order."""
        eligible = np.flatnonzero((self.relevance >= 1).any(axis=1))
        if not len(eligible):
            eligible = np.arange(self.num_queries)
        rng = np.random.default_rng(seed)
        return sorted(int(q) for q in rng.choice(eligible, size=min(count, len(eligible)), replace=False))
