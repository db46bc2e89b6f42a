"""Hostile inputs: files and ids that would run code or reach paths outside their root must not."""
import io
import json
import os
import pickle
import stat
import struct
import subprocess
import tarfile

import numpy as np
import pytest
import torch

from egovlpv2.shards.egoclip_csv import write_egoclip
from egovlpv2.shards.make import ShardRun, make_shards
from egovlpv2.shards.transcode import EncodeOptions
from egovlpv2.errors import UserError
from egovlpv2.eval.epic_mir import load_relevancy
from egovlpv2.eval.features import plan_jobs
from egovlpv2.data.random_access import index_shards
from tests.helpers import REPO, liveness, torchrun, egoclip_row, write_numbered_video


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _py2_numpy1_pickle(matrix: np.ndarray) -> bytes:
    """An ndarray pickled as Python 2 with numpy 1 did: protocol 2, numpy.core names, the data as a py2 str."""
    def short_str(text: bytes) -> bytes:
        return b"U" + bytes([len(text)]) + text

    raw = matrix.astype("<f8").tobytes()
    shape = b"(" + b"".join(b"K" + bytes([n]) for n in matrix.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + short_str(b"f8") + b"K\x00K\x01\x87R"
             + b"(K\x03" + short_str(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    return (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + short_str(b"b") + b"\x87R"
            + b"(K\x01" + shape + dtype + b"\x89T" + struct.pack("<i", len(raw)) + raw + b"tb.")


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, 5, "py2"])
def test_relevancy_pickle_yields_array_data_only(tmp_path, protocol):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(_Payload(marker), protocol=2 if protocol == "py2" else protocol))
    with pytest.raises(UserError, match="refusing to load (posix|os).system"):
        load_relevancy(hostile)
    assert not marker.exists()
    # The released files (an ndarray pickled by numpy, Python 2 era or current) still load.
    matrix = np.array([[1.0, 0.5, 0.0], [0.0, 0.25, 1.0]])
    released = tmp_path / "caption_relevancy_EPIC_100_retrieval_test.pkl"
    released.write_bytes(_py2_numpy1_pickle(matrix) if protocol == "py2" else pickle.dumps(matrix, protocol=protocol))
    assert np.array_equal(load_relevancy(released), matrix)


def test_make_shards_refuses_a_hostile_relevancy_pickle_up_front(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "rel.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    (tmp_path / "v").mkdir()
    (tmp_path / "test.csv").write_text("narration_id,participant_id,video_id,start_timestamp,stop_timestamp,narration\n"
                                       "P01_01_0,P01,P01_01,00:00:01.00,00:00:02.00,open tap\n")
    (tmp_path / "sentence.csv").write_text("narration_id,narration\nP01_01_0,open tap\n")
    with pytest.raises(UserError, match="refusing"):
        make_shards(ShardRun(task="epic_mir", csv=str(tmp_path / "test.csv"), out=str(tmp_path / "s"),
                             sentence_csv=str(tmp_path / "sentence.csv"), relevancy=str(path),
                             videos=str(tmp_path / "v"), workers=1, progress=False))
    assert not marker.exists()


def test_video_ids_outside_the_video_root_fail_their_row(tmp_path):
    (tmp_path / "v").mkdir()
    write_numbered_video(tmp_path / "v" / "good.mp4", 25, 25.0)
    write_numbered_video(tmp_path / "outside.mp4", 25, 25.0)  # a file a climbing id would reach
    rows = [egoclip_row(0, "good", 0.0, 0.8, dur=1.0), egoclip_row(1, "../outside", 0.0, 0.8, dur=1.0),
            egoclip_row(2, str(tmp_path / "outside"), 0.0, 0.8, dur=1.0)]
    write_egoclip(tmp_path / "e.csv", rows)
    manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(tmp_path / "e.csv"), videos=str(tmp_path / "v"),
                                        out=str(tmp_path / "s"), workers=1, progress=False, max_failure_fraction=1.0,
                                        encode=EncodeOptions(short_side=0)))
    assert manifest["total_samples"] == 1 and manifest["failures"] == {"unsafe_id": 2}
    failures = [json.loads(line) for line in (tmp_path / "s" / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 2 and all("unsafe id" in f["detail"] for f in failures), failures
    assert (tmp_path / "s" / "missing_videos.txt").read_text() == ""  # not a download to fetch


def test_clip_uid_outside_the_roots_is_refused_before_extraction(tmp_path):
    (tmp_path / "videos").mkdir()
    write_numbered_video(tmp_path / "escaped_clip.mp4", 10, 25.0)
    write_numbered_video(tmp_path / "videos" / "vid.mp4", 10, 25.0)
    annotations = {"videos": [{"video_uid": "vid", "clips": [
        {"clip_uid": "../escaped_clip", "video_start_sec": 0.0, "video_end_sec": 0.4,
         "annotations": [{"language_queries": [{"query": "where is the cup"}]}]}]}]}
    (tmp_path / "nlq.json").write_text(json.dumps(annotations))
    with pytest.raises(UserError, match="unsafe id"):
        plan_jobs("egonlq", tmp_path / "videos", tmp_path / "nlq.json")
    (tmp_path / "map.json").write_text(json.dumps({"/tmp/escaped_clip": ["where is the cup"]}))
    with pytest.raises(UserError, match="unsafe id"):
        plan_jobs("egonlq", tmp_path / "videos", tmp_path / "map.json")


def test_manifest_shard_names_outside_the_shard_directory_are_refused(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    with tarfile.open(tmp_path / "elsewhere.tar", "w") as tar:
        info = tarfile.TarInfo("k.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
    manifest = {"format_version": 2, "task": "epic_mir", "total_samples": 1,
                "shards": [{"name": "../elsewhere.tar", "samples": 1, "bytes": 10}]}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="unsafe id"):
        index_shards(shards, "epic_mir")


@pytest.mark.slow
def test_rank_files_hold_data_only_and_a_hostile_one_runs_nothing(tmp_path):
    worker, zero2 = REPO / "tests" / "train" / "toy_worker.py", "zero2"  # the shipped DeepSpeed config
    run = tmp_path / "run"
    torchrun(worker, [zero2, run, 3], nproc=1)
    rank_file = run / "checkpoints" / "step00000003" / "rank_00000.pt"
    state = torch.load(rank_file, weights_only=True)  # RNG states and the loader position, as plain data
    assert {"rng", "loader"} <= set(state)
    marker = tmp_path / "pwned"
    torch.save({"rng": _Payload(marker), "loader": state["loader"]}, rank_file)
    # The tamperer also fixes the completeness record, or resume would just skip the altered checkpoint.
    record = rank_file.parent / "complete.json"
    files = json.loads(record.read_text())
    files["files"][rank_file.name] = rank_file.stat().st_size
    record.write_text(json.dumps(files))
    proc = torchrun(worker, [zero2, run, 6], nproc=1, expect_failure=True)
    assert not marker.exists()
    assert "weights_only" in proc.stderr + proc.stdout


def _ensure_state_dir(path):
    return subprocess.run(["bash", str(REPO / "tests" / "slurm" / "cluster.sh"), "ensure-state-dir", str(path)],
                          capture_output=True, text=True, timeout=liveness(30))


def test_cluster_state_dir_is_created_safely_and_planted_ones_are_refused(tmp_path):
    fresh = tmp_path / "state"
    assert _ensure_state_dir(fresh).returncode == 0
    info = fresh.stat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o755
    assert _ensure_state_dir(fresh).returncode == 0  # an existing, vetted directory is reused

    planted = {"symlink": tmp_path / "link", "writable": tmp_path / "writable"}
    planted["symlink"].symlink_to(fresh)
    planted["writable"].mkdir()
    planted["writable"].chmod(0o777)
    open_parent = tmp_path / "open"
    open_parent.mkdir()
    open_parent.chmod(0o777)
    planted["open parent"] = open_parent / "state"
    if os.getuid() == 0:
        planted["other user"] = tmp_path / "other"
        planted["other user"].mkdir()
        os.chown(planted["other user"], 65534, 65534)
    for what, path in planted.items():
        proc = _ensure_state_dir(path)
        assert proc.returncode != 0 and "refusing" in proc.stderr, (what, proc.stderr)
    assert not (open_parent / "state").exists()
