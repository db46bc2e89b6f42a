"""`egovlpv2-evaluate` (egovlpv2/cli/evaluate.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.evaluate import cli

if __name__ == "__main__":
    raise SystemExit(cli())
