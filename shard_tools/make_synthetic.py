"""`egovlpv2-make-synthetic` (egovlpv2/cli/make_synthetic.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.make_synthetic import cli

if __name__ == "__main__":
    raise SystemExit(cli())
