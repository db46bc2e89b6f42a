"""Export a DeepSpeed ZeRO-2/3 training checkpoint as one weights file for egovlpv2.create_model(checkpoint=...).

    egovlpv2-export runs/demo/train --out runs/demo/egovlpv2-tiny.safetensors
    python -m egovlpv2.cli.export runs/egoclip --tag step00010000 --layout released --out EgoVLPv2_ours.pth

RUN is a run directory (holding config.yaml and checkpoints/) or a checkpoints directory. The model config
comes from the run's config.yaml unless --config names a pre-training recipe. The file is loaded back
into a fresh model, strictly, before the command reports success.
"""
import argparse
import sys
from pathlib import Path

import egovlpv2
from egovlpv2.cli import run_cli
from egovlpv2.config import load_yaml
from egovlpv2.errors import MissingPathError
from egovlpv2.train.config import load_pretrain_config, pretrain_config_from_dict
from egovlpv2.train.export import export


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run directory or its checkpoints/ directory")
    parser.add_argument("--out", type=Path, required=True, help=".safetensors (or .pth with --layout released)")
    parser.add_argument("--tag", help="checkpoint tag, e.g. step00001000 (default: latest)")
    parser.add_argument("--layout", choices=["ours", "released"], default="ours")
    parser.add_argument("--config", help="pre-training recipe the run used (default: RUN/config.yaml)")
    args = parser.parse_args(argv)

    run = args.run
    ckpt_dir = run / "checkpoints" if (run / "checkpoints").is_dir() else run
    run_dir = ckpt_dir.parent
    if args.config:
        cfg = load_pretrain_config(args.config)
    elif (run_dir / "config.yaml").is_file():
        cfg = pretrain_config_from_dict(load_yaml(run_dir / "config.yaml"), str(run_dir / "config.yaml"))
    else:
        raise MissingPathError(f"no config.yaml in {run_dir}: pass --config with the run's recipe")
    out = export(ckpt_dir, args.out, cfg.model, args.tag, args.layout)
    model_cfg = cfg.model
    model = egovlpv2.create_model(model_cfg, checkpoint=str(out))  # strict: any key mismatch raises
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({args.layout} layout, {count / 1e6:.1f}M parameters); "
          f"load it with egovlpv2.create_model({model_cfg.name!r}, checkpoint={str(out)!r})")
    return 0


def cli() -> int:
    """The console script: a user error is one line on stderr and exit status 2."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
