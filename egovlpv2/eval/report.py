"""Results tables: our figures beside the paper's, printed and written as JSON and Markdown."""
from __future__ import annotations

import json
import math
from pathlib import Path

from egovlpv2.fileio import atomic_write_text

# The paper's results (EgoVLPv2, Pramanick et al., ICCV 2023, result tables): {task: {metric path: {setting: value}}}.
PAPER = {
    "egomcq": {
        "ensemble/inter": {"paper": 91.0},
        "ensemble/intra": {"paper": 60.9},
    },
    "epic_mir": {
        "mAP/avg": {"paper zero-shot": 26.7, "paper fine-tuned": 47.3},
        "nDCG/avg": {"paper zero-shot": 29.1, "paper fine-tuned": 61.9},
    },
    "charades_ego": {
        "mAP": {"paper zero-shot": 26.2, "paper fine-tuned": 34.1},
    },
}


def flatten(results: dict, prefix: str = "") -> dict[str, float]:
    """{"mAP": {"v2t": x}} -> {"mAP/v2t": x}; non-numeric leaves are dropped."""
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        elif isinstance(value, (int, float)):
            flat[name] = value
    return flat


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def table_rows(task: str, results: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the results table: each metric, our figure, the paper's in each setting."""
    paper = PAPER.get(task, {})
    settings = sorted({s for per_metric in paper.values() for s in per_metric})
    rows = [[metric, _cell(value)] + [_cell(paper.get(metric, {}).get(s)) for s in settings]
            for metric, value in flatten(results).items()]
    return ["metric", "ours"] + settings, rows


def markdown_table(task: str, results: dict) -> str:
    header, rows = table_rows(task, results)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(task: str, results: dict, out_json: str | Path, info: dict | None = None) -> str:
    """Write `out_json` and the Markdown table next to it (`.md`); return the table."""
    table = markdown_table(task, results)
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    payload = {"task": task, "results": results, "paper": PAPER.get(task, {}), **(info or {})}
    atomic_write_text(out_json, json.dumps(payload, indent=2, allow_nan=True) + "\n")
    header = f"# {task}\n\n" + "".join(f"- {k}: `{v}`\n" for k, v in (info or {}).items())
    atomic_write_text(out_json.with_suffix(".md"), f"{header}\n{table}\n")
    return table
