"""`egovlpv2-pretrain` (egovlpv2/cli/pretrain.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.pretrain import cli

if __name__ == "__main__":
    raise SystemExit(cli())
