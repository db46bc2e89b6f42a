"""The toy task on real ranks for elastic resume: train and stop, or resume at another world size / ZeRO stage.

Usage: elastic_worker.py DS_CONFIG OUTPUT_DIR TOTAL_STEPS DUMP_PREFIX [--stop-after N | --resume-at N]

``--stop-after N`` trains N steps, saves, then dumps the consolidated state as ``DUMP_PREFIX.saved.pt``.
``--resume-at N`` resumes (at whatever world size this run has), dumps the state as loaded
(``DUMP_PREFIX.loaded.pt``), trains to TOTAL_STEPS and dumps again (``DUMP_PREFIX.final.pt``).
"""
import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

import deepspeed  # noqa: E402
import torch  # noqa: E402
from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state  # noqa: E402

from egovlpv2.dist.env import init_distributed  # noqa: E402
from egovlpv2.train.config import OptimConfig  # noqa: E402
from egovlpv2.train.engine import build_engine, load_ds_config, precision_dtype, reconcile_ds_config  # noqa: E402
from egovlpv2.train.loop import LoopComponents, LoopSettings, run_loop  # noqa: E402
from toy import ToyModel, ToyObjective, ToySource  # noqa: E402


def consolidated(engine) -> dict:
    """Whole fp32 weights, AdamW moments and module weights by name, plus the step counters and LR."""
    params = {}
    for name, p in engine.module.named_parameters():
        with deepspeed.zero.GatheredParameters([p]):
            module_weight = p.detach().float().clone()
        params[name] = {"fp32": safe_get_full_fp32_param(p).float().reshape(module_weight.shape).clone(),
                        "exp_avg": safe_get_full_optimizer_state(p, "exp_avg").float().reshape(module_weight.shape).clone(),
                        "exp_avg_sq": safe_get_full_optimizer_state(p, "exp_avg_sq").float().reshape(module_weight.shape).clone(),
                        "module": module_weight}
    basic = engine.optimizer.optimizer
    return {"params": params, "global_steps": engine.global_steps, "lr": engine.get_lr()[0],
            "adam_step": sorted({float(s["step"]) for s in basic.state.values()})}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("ds_config")
    parser.add_argument("output_dir")
    parser.add_argument("total_steps", type=int)
    parser.add_argument("dump_prefix")
    parser.add_argument("--stop-after", type=int)
    parser.add_argument("--resume-at", type=int)
    args = parser.parse_args()

    env = init_distributed()
    torch.manual_seed(0)
    model = ToyModel()
    ds = reconcile_ds_config(load_ds_config(args.ds_config), 4, 2, env.world_size)
    torch.manual_seed(1 + env.rank)
    engine = build_engine(model, ToyObjective(model), ds, OptimConfig(lr=1e-2), args.total_steps)
    dtype = precision_dtype(ds)

    def make_loader(state):
        if state and "resharded_from" in state:  # the toy source has no samples to re-deal: take rank 0's place
            state = state["resharded_from"][0]
        return ToySource(state, env.rank)

    components = LoopComponents(objective=None, make_loader=make_loader,
                                prepare=lambda b, device: {k: v.to(device, dtype) for k, v in b.items()},
                                count_clips=lambda b: len(b["x"]))

    def loop(total, stop_after=None):
        settings = LoopSettings(output_dir=args.output_dir, total_steps=total, grad_accum_steps=2, checkpoint_every=100,
                                checkpoint_at_end=False, stop_after_steps=stop_after, tensorboard=False,
                                progress_bar=False)
        return run_loop(engine, components, settings, torch.device("cpu"))

    def dump(label):
        state = consolidated(engine)  # collective
        if env.rank == 0:
            torch.save(state, f"{args.dump_prefix}.{label}.pt")

    if args.stop_after:
        loop(args.total_steps, args.stop_after)
        dump("saved")
    else:
        assert loop(args.resume_at).step == args.resume_at  # loads the checkpoint, trains nothing
        dump("loaded")
        assert loop(args.total_steps).finished
        dump("final")


if __name__ == "__main__":
    main()
