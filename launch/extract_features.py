"""`egovlpv2-extract-features` (egovlpv2/cli/extract_features.py) as a script; `--help` lists its arguments."""
from egovlpv2.cli.extract_features import cli

if __name__ == "__main__":
    raise SystemExit(cli())
