#!/usr/bin/env bash
# One GPU session: install carried wheels (.whl/, for packages the GPU image lacks), check the CUDA path
# against the CPU, then time the training step (DeepSpeed ZeRO-2 vs plain AMP vs recomputing schedule,
# with a profile of each), then plain AMP without activation checkpointing (the ceiling without
# recomputation) and DeepSpeed with half the blocks checkpointed, on the base config. Figures go to $OUT
# (default /tmp/gpu_check). Budget: about 7 minutes on an H100 after the machine starts. Compare with
# benchmarks/RESULTS.md; gradient caching has its own command there (benchmarks/bench_grad_cache.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, timm, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v Warning | tee -a "$OUT/gpu.txt"

echo "== parity"
timeout 120 python3 benchmarks/gpu_parity.py 2>&1 | grep -v Warning | tee "$OUT/parity.txt"
echo "== training step"
timeout 240 python3 benchmarks/bench_step.py --gpu --steps 5 --warmup 2 --profile 12 --json "$OUT/bench_step.json" \
  2>&1 | grep -v -i "warn" | tee "$OUT/bench_step.txt"
echo "== training step without activation checkpointing (plain AMP)"
timeout 120 python3 benchmarks/bench_step.py --gpu --no-grad-checkpointing --modes plain --steps 5 --warmup 2 \
  2>&1 | grep -v -i "warn" | tee "$OUT/bench_step_no_ckpt.txt"
echo "== DeepSpeed step checkpointing only the lowest 6 blocks of each tower"
timeout 120 python3 benchmarks/bench_step.py --gpu --checkpoint-blocks 6 --modes deepspeed --steps 5 --warmup 2 \
  2>&1 | grep -v -i "warn" | tee "$OUT/bench_step_ckpt6.txt"
