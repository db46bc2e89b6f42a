#!/usr/bin/env bash
# One GPU session, in one call (carry .whl/, prepared by benchmarks/gpu_wheels.sh): install the carried
# wheels, check the CUDA path against the CPU, then on egovlpv2-base (4 frames, 32+32 pairs, bf16) time the
# training step eager and compiled (train.compile=blocks), under DeepSpeed ZeRO-2 and as a plain AMP step,
# with activation checkpointing (each mode profiled) and without; then timm's vit_base_patch16_224 at the
# same patch-token count, eager and compiled; then a summary against the targets (our MFU >= timm's and
# >= 35%, DeepSpeed overhead <= 10%). Figures go to $OUT (default /tmp/gpu_check). Budget: under 8 minutes
# on an H100/H200 after the machine starts (the step timeouts add up to 7.6). Compare with RESULTS.md.
#
#   GPU_CHECK_DRY_RUN=1 benchmarks/gpu_check.sh   # every Python step, tiny and on the CPU: the plumbing only
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# One Inductor cache for every step: later steps reuse the kernels earlier ones compiled.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$OUT/inductor_cache}
if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
  STEP=(--model egovlpv2-tiny --pairs 2 --steps 1 --warmup 1); VIT=(--cpu-smoke --compile off); PROFILE=3
else
  STEP=(--gpu --steps 5 --warmup 2); VIT=(--gpu); PROFILE=15
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
python3 -c "import torch, transformers, timm, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__, 'deepspeed', deepspeed.__version__)" 2>&1 | grep -v Warning | tee -a "$OUT/gpu.txt"

if [ "${GPU_CHECK_DRY_RUN:-0}" != 1 ]; then
  echo "== parity"
  timeout 75 python3 benchmarks/gpu_parity.py 2>&1 | grep -v Warning | tee "$OUT/parity.txt"
fi
echo "== training step with activation checkpointing: eager and compiled, DeepSpeed and plain"
timeout 190 python3 benchmarks/bench_step.py "${STEP[@]}" --compile blocks --modes deepspeed,plain --profile "$PROFILE" \
  --json "$OUT/step_ckpt.json" 2>&1 | grep -v -i "warn" | tee "$OUT/step_ckpt.txt"
echo "== training step without activation checkpointing"
timeout 105 python3 benchmarks/bench_step.py "${STEP[@]}" --no-grad-checkpointing --compile blocks --modes deepspeed,plain \
  --json "$OUT/step_no_ckpt.json" 2>&1 | grep -v -i "warn" | tee "$OUT/step_no_ckpt.txt"
echo "== timm vit_base_patch16_224 at the same token count"
timeout 85 python3 benchmarks/bench_vit.py "${VIT[@]}" --json "$OUT/vit.json" 2>&1 | grep -v -i "warn" | tee "$OUT/vit.txt"
echo "== summary"
python3 benchmarks/gpu_summary.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
