"""`egovlpv2-finetune` (egovlpv2/cli/finetune.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.finetune import cli

if __name__ == "__main__":
    raise SystemExit(cli())
