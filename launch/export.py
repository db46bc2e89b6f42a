"""`egovlpv2-export` (egovlpv2/cli/export.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.export import cli

if __name__ == "__main__":
    raise SystemExit(cli())
