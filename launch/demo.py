"""`egovlpv2-demo` (egovlpv2/cli/demo.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.demo import cli

if __name__ == "__main__":
    raise SystemExit(cli())
