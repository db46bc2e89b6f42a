"""make_shards on a csv of the full EgoClip size: time and peak memory of planning, time to the fail-fast
errors, and the size of the manifest at that scale.

  python benchmarks/bench_make_shards_scale.py --work /tmp/egoclip_scale [--rows 3850000]

Generates an EgoClip-format csv (tab-separated, the EgoClip columns, Python-list tags) of ``--rows`` rows
over ``--videos`` videos, then runs shard_tools/make_shards.py in child processes:
1. a mistyped --videos root (the directory does not exist);
2. a root that exists but holds none of the csv's videos;
3. --plan-only against a root holding half the videos (empty stand-in files: planning only checks that
   they exist), the partial-download case: plan time, peak RSS, plan failures and summary;
4. the merge of that plan as if every planned shard had been written (records of the planned sizes),
   for the size of manifest.json and failures.jsonl at full scale.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERBS = ("picks", "puts", "cuts", "opens", "closes", "holds", "washes", "stirs", "moves", "looks at")
NOUNS = ("knife", "onion", "cup", "door", "plate", "bowl", "tap", "phone", "box", "spoon", "bag", "paper")
COLUMNS = ("clip_idx", "video_uid", "video_dur", "narration_source", "narration_ind", "narration_time",
           "clip_start", "clip_end", "clip_text", "tag_verb", "tag_noun")


def generate_csv(path: Path, rows: int, videos: int, seed: int = 0) -> list[str]:
    """An EgoClip-format csv; returns the video ids in order. Narrations are a few seconds apart."""
    rng = random.Random(seed)
    uids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(videos)]
    per_video = [rows // videos + (1 if i < rows % videos else 0) for i in range(videos)]
    idx = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("\t".join(COLUMNS) + "\n")
        for uid, count in zip(uids, per_video):
            times = [1.0]
            for _ in range(count - 1):
                times.append(times[-1] + rng.uniform(0.4, 5.0))
            duration = round(times[-1] + 30.0, 3)
            lines = []
            for k, t in enumerate(times):
                verb, noun = rng.randrange(len(VERBS)), rng.randrange(len(NOUNS))
                start, end = max(0.0, t - 0.5), t + rng.uniform(0.5, 1.5)
                lines.append(f"{idx}\t{uid}\t{duration}\tnarration_pass_{1 + k % 2}\t{k}\t{t:.3f}\t{start:.3f}\t{end:.3f}\t"
                             f"#C C {VERBS[verb]} the {NOUNS[noun]}\t[{verb}]\t[{noun}, {rng.randrange(582)}]\n")
                idx += 1
            f.writelines(lines)
    return uids


def run_child(args: list[str]) -> dict:
    """Run make_shards.py; wall time, exit status, the first stderr line, and the child's own peak RSS."""
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "shard_tools" / "make_shards.py"), *args, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": round(time.perf_counter() - began, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "stderr": err.strip().splitlines()[:1],
            "stdout": out.strip().splitlines()}


def merge_as_written(out: Path) -> dict:
    """Records for every planned shard as if written (planned sample counts, ~130 kB per sample), then merge."""
    from egovlpv2.fileio import atomic_write_json
    from egovlpv2.shards.merge import merge, read_plan
    from egovlpv2.shards.writer import record_path

    plan = read_plan(out)
    for name, digest, size in zip(plan["shards"], plan["hashes"], plan["sizes"]):
        atomic_write_json(record_path(out, name), {"name": f"{name}.tar", "samples": size, "bytes": size * 130_000,
                                                   "failures": [], "plan_hash": digest, "source_s": size * 1.0,
                                                   "cpu_s": size * 0.13})
    began = time.perf_counter()
    manifest, summary, _ = merge(out, 1.0)
    return {"merge_s": round(time.perf_counter() - began, 2), "shards": len(manifest["shards"]),
            "manifest_bytes": (out / "manifest.json").stat().st_size,
            "failures_jsonl_bytes": (out / "failures.jsonl").stat().st_size,
            "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True)
    p.add_argument("--rows", type=int, default=3_850_000)
    p.add_argument("--videos", type=int, default=9_600)
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "egoclip.csv"
    began = time.perf_counter()
    uids = generate_csv(csv_path, a.rows, a.videos)
    print(f"generated {a.rows} rows over {a.videos} videos in {time.perf_counter() - began:.1f} s: "
          f"{csv_path.stat().st_size / 1e6:.0f} MB")
    empty, half = work / "videos_none", work / "videos_half"
    empty.mkdir(exist_ok=True)
    half.mkdir(exist_ok=True)
    for uid in uids[::2]:
        (half / f"{uid}.mp4").touch()
    common = ["--csv", str(csv_path), "--workers", "1"]
    results = {
        "typo_root": run_child([*common, "--videos", str(work / "vidoes"), "--out", str(work / "out_typo")]),
        "no_videos": run_child([*common, "--videos", str(empty), "--out", str(work / "out_none")]),
        "plan_half": run_child([*common, "--videos", str(half), "--out", str(work / "out_half"), "--plan-only"]),
    }
    for name, result in results.items():
        print(f"{name}: {json.dumps(result)}")
    merged = merge_as_written(work / "out_half")
    print(f"merge as written: {json.dumps(merged)}")


if __name__ == "__main__":
    main()
