"""`egovlpv2-make-shards` (egovlpv2/cli/make_shards.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.make_shards import cli

if __name__ == "__main__":
    raise SystemExit(cli())
