"""`egovlpv2-inspect-shards` (egovlpv2/cli/inspect_shards.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.inspect_shards import cli

if __name__ == "__main__":
    raise SystemExit(cli())
