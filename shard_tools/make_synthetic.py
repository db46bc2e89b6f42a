"""Generate the synthetic EgoClip-format dataset (csv, videos, egomcq.json, tokenizer) used by the demo and tests."""
import sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
from dataclasses import fields  # noqa: E402

from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    for f in fields(SyntheticSpec):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default)
    p.add_argument("--no-progress", action="store_true")
    a = vars(p.parse_args(argv))
    spec = SyntheticSpec(**{f.name: a[f.name] for f in fields(SyntheticSpec)})
    info = make_synthetic(a["out"], spec, progress=not a["no_progress"])
    print(f"{info['clips']} clips from {info['videos']} videos, {info['mcq_questions']} EgoMCQ questions -> {info['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
