#!/usr/bin/env bash
# One GPU session, in one call (carry .whl/, prepared by benchmarks/gpu_wheels.sh): install the carried
# wheels, check the CUDA path against the CPU, then on egovlpv2-base (4 frames, 32+32 pairs, bf16) time the
# training step eager and compiled (train.compile=blocks), under DeepSpeed ZeRO-2 and as a plain AMP step,
# with activation checkpointing (each mode profiled) and without; then timm's vit_base_patch16_224 at the
# same patch-token count, eager and compiled; NVDEC decoding through torchcodec against the CPU backends on
# the same shards (benchmarks/bench_gpu_decode.py); then a summary against the targets (our MFU >= timm's and
# >= 35%, DeepSpeed overhead <= 10%). Figures go to $OUT (default /tmp/gpu_check). Budget: under 8 minutes
# on an H100/H200 after the machine starts: every step's timeout is cut to what is left of GPU_CHECK_BUDGET_S
# (470 s, counted from the start of this script). Compare with RESULTS.md.
#
#   GPU_CHECK_DRY_RUN=1 benchmarks/gpu_check.sh   # every Python step, tiny and on the CPU: the plumbing only
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# One Inductor cache for every step: later steps reuse the kernels earlier ones compiled.
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$OUT/inductor_cache}
BUDGET=${GPU_CHECK_BUDGET_S:-470}
# A step's timeout: its own bound, or what is left of the budget (at least 5 s) when that is less.
left() { local rest=$((BUDGET - SECONDS)); [ "$rest" -lt 5 ] && rest=5; echo $(( $1 < rest ? $1 : rest )); }
if [ "${GPU_CHECK_DRY_RUN:-0}" = 1 ]; then
  STEP=(--model egovlpv2-tiny --pairs 2 --steps 1 --warmup 1); VIT=(--cpu-smoke --compile off); PROFILE=3
  DECODE=(--cpu-smoke --work "$OUT/decode_work")
else
  STEP=(--gpu --steps 5 --warmup 2); VIT=(--gpu); PROFILE=15; DECODE=(--work "$OUT/decode_work")
  if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
  # torchcodec links FFmpeg's libraries by their sonames; without system ones, use the FFmpeg that the PyAV
  # wheel bundles (its files keep their hashed names, so they are linked together under one directory).
  if ! ldconfig -p | grep -q "libavutil.so"; then
    AVLIBS=$(python3 -c "import av, pathlib; print(pathlib.Path(av.__file__).parent.parent / 'av.libs')")
    mkdir -p /tmp/ffmpeg_libs && ln -sf "$AVLIBS"/* /tmp/ffmpeg_libs/
    for lib in "$AVLIBS"/lib{avcodec,avformat,avutil,avdevice,avfilter,swscale,swresample}-*.so.*; do
      name=$(basename "$lib"); major=$(echo "$name" | sed -E 's/.*\.so\.([0-9]+).*/\1/')
      ln -sf "$lib" "/tmp/ffmpeg_libs/${name%%-*}.so.$major"
    done
    export LD_LIBRARY_PATH=/tmp/ffmpeg_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
fi
python3 -c "import torch, transformers, timm, deepspeed, torchcodec; print('torch', torch.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__, 'deepspeed', deepspeed.__version__, 'torchcodec', torchcodec.__version__)" 2>&1 | grep -v Warning | tee -a "$OUT/gpu.txt"

if [ "${GPU_CHECK_DRY_RUN:-0}" != 1 ]; then
  echo "== parity"
  timeout "$(left 75)" python3 benchmarks/gpu_parity.py 2>&1 | grep -v Warning | tee "$OUT/parity.txt"
fi
echo "== decoding: NVDEC (torchcodec, device=cuda) against the CPU backends, and beside the training step"
timeout "$(left 80)" python3 benchmarks/bench_gpu_decode.py "${DECODE[@]}" --json "$OUT/decode.json" 2>&1 \
  | grep -v -i "warn" | tee "$OUT/decode.txt"
echo "== training step with activation checkpointing: eager and compiled, DeepSpeed and plain"
timeout "$(left 190)" python3 benchmarks/bench_step.py "${STEP[@]}" --compile blocks --modes deepspeed,plain --profile "$PROFILE" \
  --json "$OUT/step_ckpt.json" 2>&1 | grep -v -i "warn" | tee "$OUT/step_ckpt.txt"
echo "== training step without activation checkpointing"
timeout "$(left 105)" python3 benchmarks/bench_step.py "${STEP[@]}" --no-grad-checkpointing --compile blocks --modes deepspeed,plain \
  --json "$OUT/step_no_ckpt.json" 2>&1 | grep -v -i "warn" | tee "$OUT/step_no_ckpt.txt"
echo "== timm vit_base_patch16_224 at the same token count"
timeout "$(left 85)" python3 benchmarks/bench_vit.py "${VIT[@]}" --json "$OUT/vit.json" 2>&1 | grep -v -i "warn" | tee "$OUT/vit.txt"
echo "== summary"
python3 benchmarks/gpu_summary.py "$OUT" 2>&1 | tee "$OUT/summary.txt"
