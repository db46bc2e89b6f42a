"""`egovlpv2-submit` (egovlpv2/cli/submit.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.submit import cli

if __name__ == "__main__":
    raise SystemExit(cli())
