"""The per-query fields EgoVLPv2's VSLNet head reads beside the features, computed as its data pipeline does.

The head (EgoNLQ/utils/data_loader.py, runner_utils.eval_test) reads ``fused_video_features``,
``dual_text_features[0]``, ``text_token["attention_mask"][0]``, ``s_ind`` / ``e_ind`` / ``v_len`` /
``duration`` (``.item()``), ``vid``, ``annotation_uid`` and ``query_idx``. Its times come from the
episodic-memory preparation (NLQ/VSLNet/utils/prepare_ego4d_dataset.py: 30 / 16 units per second,
truncated), its span indices from ``time_to_index`` (EgoNLQ/utils/data_util.py) over ``v_len`` units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# prepare_ego4d_dataset.py: CANONICAL_VIDEO_FPS / FEATURE_WINDOW_SIZE.
PREPARED_UNITS_PER_SECOND = 30.0 / 16.0


@dataclass(frozen=True)
class NLQQuery:
    text: str  # as annotated
    sample_id: int  # position in the split, the file's name (feat_{sample_id}.pt)
    annotation_uid: str = ""
    query_idx: int = 0  # index within its annotation's language_queries
    start_s: float = 0.0  # in the clip; 0 for the unannotated test split
    end_s: float = 0.0


def canonical_query(text: str) -> str:
    """prepare_ego4d_dataset.process_question, then data_gen's ``.strip().lower()``."""
    return (text.strip(" ").strip("?").lower() + "?").strip().lower()


def _units(seconds: float) -> int:
    return int(seconds * PREPARED_UNITS_PER_SECOND)


def time_to_index(start_s: float, end_s: float, units: int, duration_s: float) -> tuple[int, int]:
    """The (start, end) unit whose span overlaps [start_s, end_s] most, first in start-major order."""
    starts = np.arange(0, units).astype(np.float32) / float(units) * duration_s
    ends = np.arange(1, units + 1).astype(np.float32) / float(units) * duration_s
    s, e = starts.astype(np.float64)[:, None], ends.astype(np.float64)[None, :]
    inter = np.maximum(0.0, np.minimum(e, end_s) - np.maximum(s, start_s))
    union = np.maximum(1e-12, np.maximum(e, end_s) - np.minimum(s, start_s))
    best = int(np.argmax(inter / union))
    return best // units, best % units


def query_record(query: NLQQuery, clip_uid: str, clip_duration_s: float, num_windows: int,
                 max_pos_len: int) -> dict:
    """Everything of a feature file but the features, with the types the head's ``.item()`` calls expect."""
    duration = _units(clip_duration_s) / PREPARED_UNITS_PER_SECOND
    s_time = max(0.0, _units(query.start_s) / PREPARED_UNITS_PER_SECOND)
    e_time = min(_units(query.end_s) / PREPARED_UNITS_PER_SECOND, duration)
    v_len = min(max_pos_len, num_windows)
    s_ind, e_ind = time_to_index(s_time, e_time, v_len, duration) if v_len else (0, 0)

    def long(value: int) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.int64)

    def double(value: float) -> torch.Tensor:
        return torch.tensor(value, dtype=torch.float64)

    return {"sample_id": long(query.sample_id), "vid": clip_uid, "s_time": double(s_time), "e_time": double(e_time),
            "duration": double(duration), "query": canonical_query(query.text), "s_ind": long(s_ind),
            "e_ind": long(e_ind), "v_len": long(v_len), "annotation_uid": query.annotation_uid,
            "query_idx": long(query.query_idx)}
