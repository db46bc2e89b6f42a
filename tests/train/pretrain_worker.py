"""run_pretraining in a real (torchrun-launched) process, then reference outputs of the trained model.

Usage: pretrain_worker.py RECIPE DS_CONFIG [overrides...]
Writes <output_dir>/result_rank<r>_<pid>.json (step, history) and, on rank 0, <output_dir>/reference.pt:
a fixed input and the trained model's dual embeddings and VTM scores on it (for the export test).
With PRETRAIN_WORKER_KILL_AT_BATCH=N in the environment, rank 1 SIGKILLs itself as it takes its N-th batch.
INDUCTOR_FALLBACK_RANDOM=1 sets ``torch._inductor.config.fallback_random``.
"""
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from egovlpv2.dist.signals import install_stop_handlers  # noqa: E402
from egovlpv2.train.config import load_pretrain_config  # noqa: E402
from egovlpv2.train.engine import unwrap_model  # noqa: E402
from egovlpv2.train.pretrain import run_pretraining  # noqa: E402


def reference_outputs(model, inputs):
    video, ids, mask = inputs
    return {"video": model.encode_video(video).float(), "text": model.encode_text(ids, mask).float(),
            "vtm": model.match_score(video, ids, mask).float()}


def kill_rank1_at_batch(n: int) -> None:
    from egovlpv2.data.pipeline import PretrainLoader

    iterate = PretrainLoader.__iter__

    def iterate_then_die(self):
        for batch in iterate(self):
            if self.batches_done == n and self.rank == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

    PretrainLoader.__iter__ = iterate_then_die


def main():
    recipe, ds_config, *overrides = sys.argv[1:]
    if os.environ.get("PRETRAIN_WORKER_KILL_AT_BATCH"):
        kill_rank1_at_batch(int(os.environ["PRETRAIN_WORKER_KILL_AT_BATCH"]))
    # Compiled dropout draws what eager dropout draws (for comparing compiled runs with eager ones).
    torch._inductor.config.fallback_random = os.environ.get("INDUCTOR_FALLBACK_RANDOM") == "1"
    cfg = load_pretrain_config(recipe, overrides)
    install_stop_handlers()
    captured = {}
    import egovlpv2.train.pretrain as pretrain

    build = pretrain.build_engine

    def build_and_keep(*args, **kwargs):
        captured["engine"] = build(*args, **kwargs)
        return captured["engine"]

    pretrain.build_engine = build_and_keep
    result = run_pretraining(cfg, ds_config)
    engine = captured["engine"]
    out = Path(cfg.train.output_dir)
    rank = int(os.environ.get("RANK", 0))
    (out / f"result_rank{rank}_{os.getpid()}.json").write_text(json.dumps(
        {"step": result.step, "finished": result.finished, "history": result.history,
         "evaluations": {str(k): v for k, v in result.evaluations.items()}, "scalars": result.last_scalars}))
    g = torch.Generator().manual_seed(0)
    m = cfg.model
    dtype = next(p.dtype for p in engine.module.parameters())
    video = torch.randn(3, m.video.num_frames, 3, m.video.img_size, m.video.img_size, generator=g)
    ids = torch.randint(5, 100, (3, 8), generator=g)
    ids[:, 0] = 0
    mask = torch.ones_like(ids)
    engine.eval()
    with torch.no_grad():  # through the engine: under ZeRO-3 every rank takes part in the gathers
        outputs = engine((video.to(dtype), ids, mask), call=reference_outputs)
    model = unwrap_model(engine)
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):  # a no-op below ZeRO-3
        params = {name: p.detach().clone() for name, p in model.named_parameters()}
    if rank == 0:
        torch.save({"inputs": (video, ids, mask), "outputs": outputs, "params": params,
                    "zero_stage": engine.zero_optimization_stage()}, out / "reference.pt")


if __name__ == "__main__":
    main()
