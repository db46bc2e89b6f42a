"""Checking written shards: counts against the manifest, a full decode of every sample, size statistics."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from egovlpv2.data.manifest import read_manifest
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.data.video_io import FrameDecoder, SampleError
from egovlpv2.storage import join

VIDEO_EXTS = ("mp4", "jpgs")


def _video_members(sample: dict) -> list[str]:
    return sorted(k for k in sample if k.split(".")[-1] in VIDEO_EXTS)


def inspect_shards(shard_dir: str | Path, decode: bool = True, backend: str = "auto", progress: bool = True) -> dict:
    """Per-shard sample counts (and mismatches with the manifest), bad samples with reasons, and the
    clip durations (s) and sample sizes (bytes) for histograms."""
    from tqdm import tqdm

    manifest = read_manifest(shard_dir)
    decoder = FrameDecoder(backend)
    shards, bad, durations, sizes = [], [], [], []
    bar = tqdm(total=manifest["total_samples"], unit="sample", desc="inspect", disable=not progress)
    for entry in manifest["shards"]:
        count = 0
        try:
            for sample in read_tar(join(str(shard_dir), entry["name"])):
                count += 1
                bar.update(1)
                key = sample["__key__"]
                sizes.append(sum(len(v) for k, v in sample.items() if not k.startswith("__")))
                try:
                    meta = parse_meta(sample)
                    members = _video_members(sample)
                    if not members:
                        raise SampleError("missing_video")
                    for name in members:
                        timing = meta.get("clips", {}).get(name, {})
                        if timing.get("fps"):
                            durations.append(timing["num_frames"] / timing["fps"])
                        if decode:
                            decoder(name.split(".")[-1], sample[name], lambda n: list(range(n)),
                                    int(timing.get("num_frames", 0)))
                except (ValueError, SampleError) as exc:
                    bad.append({"shard": entry["name"], "id": key, "reason": str(exc)})
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            bad.append({"shard": entry["name"], "id": None, "reason": f"unreadable shard: {exc}"})
        shards.append({"name": entry["name"], "samples": count, "manifest": entry["samples"],
                       "ok": count == entry["samples"]})
    bar.close()
    return {"task": manifest["task"], "shards": shards, "bad": bad, "durations": durations, "sizes": sizes,
            "samples": sum(s["samples"] for s in shards), "manifest_failures": manifest["rows_failed"]}


def histogram(values: list[float], bins: int = 10, width: int = 40, unit: str = "") -> list[str]:
    """Text histogram lines: ``[lo, hi) count bar``."""
    if not values:
        return ["  (none)"]
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    top = max(counts.max(), 1)
    return [f"  [{edges[i]:10.3f}, {edges[i + 1]:10.3f}){unit} {counts[i]:7d} {'#' * round(width * counts[i] / top)}"
            for i in range(len(counts))]
