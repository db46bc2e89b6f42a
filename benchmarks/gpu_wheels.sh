#!/usr/bin/env bash
# Prepare .whl/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU machine that has Python 3.12,
# torch, timm and transformers but no network: DeepSpeed built from its sdist (pure Python, ops JIT-built on
# use) and binary wheels of the packages DeepSpeed and our imports need beyond that image, at the versions
# this environment runs, and torchcodec (its PyPI wheel is the CUDA 13 build, with NVDEC) with PyAV, whose wheel
# bundles the FFmpeg 8 libraries torchcodec links. Carry .whl/ with the run (about 60 MB of the 64 MiB a run
# carries: decord's wheel does not fit, so the GPU machine compares NVDEC with PyAV and torchcodec on its CPU);
# gpu_check.sh installs it with --no-index.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
mkdir -p "$DEST"
version() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
# DeepSpeed's setup.py imports torch: build against the installed one instead of an isolated download.
python3 -m pip wheel -q --no-deps --no-build-isolation "deepspeed==$(version deepspeed)" -w "$DEST"
for pkg in hjson py-cpuinfo msgpack ninja psutil einops pydantic pydantic-core annotated-types typing-inspection \
           webdataset braceexpand pyyaml; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --implementation cp "$pkg==$(version "$pkg")" -d "$DEST"
done
# Wheels built for glibc 2.28 (manylinux_2_28), like the torch wheels the GPU machine runs.
for pkg in torchcodec av; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
    --implementation cp "$pkg==$(version "$pkg")" -d "$DEST"
done
ls -l "$DEST"
du -sh "$DEST"
