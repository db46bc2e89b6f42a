#!/usr/bin/env bash
# Prepare .whl/ (git-ignored) with what benchmarks/gpu_check.sh needs on a GPU machine that has Python 3.12,
# torch, timm and transformers but no network: DeepSpeed built from its sdist (pure Python, ops JIT-built on
# use) and binary wheels of the packages DeepSpeed and our imports need beyond that image, at the versions
# this environment runs. Carry .whl/ with the run (about 15 MB); gpu_check.sh installs it with --no-index.
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
ls -l "$DEST"
du -sh "$DEST"
