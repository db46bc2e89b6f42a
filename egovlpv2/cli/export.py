"""Export weights: a training run as one weights file for egovlpv2.create_model(checkpoint=...), or a run,
a weights file or a released checkpoint as a Hub-format directory for egovlpv2.EgoVLPv2.from_pretrained.

    egovlpv2-export runs/demo/train --out runs/demo/egovlpv2-tiny.safetensors
    python -m egovlpv2.cli.export runs/egoclip --tag step00010000 --layout released --out EgoVLPv2_ours.pth
    egovlpv2-export EgoVLPv2.pth --format hub --out egovlpv2-base
    egovlpv2-export runs/egoclip --format hub --out egovlpv2-egoclip --license cc-by-nc-4.0

--format weights (the default): SOURCE is a run directory (holding config.yaml and checkpoints/) or a
checkpoints directory; the model config comes from the run's config.yaml unless --config names a
pre-training recipe. The file is loaded back into a fresh model, strictly, before the command reports success.

--format hub: SOURCE is a run directory, our .safetensors export, or a released EgoVLPv2.pth /
EgoVLPv2_smallproj.pth. OUT gets config.json, model.safetensors and a README.md model card (with the sha256
of every file). For a file, --config names a model recipe (default: the export's metadata, else the recipe
whose every key and shape the file matches); any unmatched key is reported.
"""
import argparse
import sys
from pathlib import Path

import egovlpv2
from egovlpv2.cli import run_cli
from egovlpv2.errors import UsageError
from egovlpv2.train.export import export, resolve_run
from egovlpv2.train.hub_export import convert_to_hub


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="run directory or its checkpoints/; with --format hub also a "
                                                  "weights file (.safetensors export, released .pth)")
    parser.add_argument("--out", type=Path, required=True,
                        help="weights: .safetensors (or .pth with --layout released); hub: a directory")
    parser.add_argument("--format", choices=["weights", "hub"], default="weights")
    parser.add_argument("--tag", help="checkpoint tag, e.g. step00001000 (default: latest)")
    parser.add_argument("--layout", choices=["ours", "released"], default="ours", help="weights format only")
    parser.add_argument("--config", help="pre-training recipe the run used (default: RUN/config.yaml); "
                                         "for a weights file, its model recipe")
    parser.add_argument("--license", help="hub format: the card's licence id (default: mit for the released "
                                          "files, else other)")
    args = parser.parse_args(argv)

    if args.format == "hub":
        if args.layout != "ours":
            raise UsageError("--layout applies to --format weights only")
        result = convert_to_hub(args.source, args.out, args.config, args.tag, args.license)
        print(f"wrote {result.out} (Hub format, {result.config.name}, {result.parameters / 1e6:.1f}M parameters; "
              f"sha256 of every file in its README.md); load it with "
              f"egovlpv2.EgoVLPv2.from_pretrained({str(result.out)!r})")
        return 0
    if args.license:
        raise UsageError("--license applies to --format hub only")
    ckpt_dir, cfg = resolve_run(args.source, args.config)
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
