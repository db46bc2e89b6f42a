"""Generate the synthetic EgoClip-format dataset (csv, videos, egomcq.json, tokenizer) used by the demo and tests."""
import argparse
import sys
from dataclasses import fields

from egovlpv2.cli import run_cli
from egovlpv2.data.synthetic import SyntheticSpec, make_synthetic


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


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
