import pytest

from egovlpv2.data.config import DataConfig
from egovlpv2.shards.tasks import ShardRun, make_shards
from egovlpv2.shards.synthetic import SyntheticSpec, make_synthetic
from egovlpv2.shards.transcode import EncodeOptions

# 6 videos x 8 clips, 64 s each (two scene windows), 32 px frames: seconds to build.
TINY = SyntheticSpec(videos=6, mcq_videos=5, clips_per_video=8, clip_spacing_s=8.0, clip_len_s=1.0, fps=10.0,
                     size=48, mcq_questions=6, seed=3)


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, TINY, progress=False)
    return out


@pytest.fixture(scope="session")
def egoclip_shards(synthetic_dir):
    out = synthetic_dir / "shards"
    manifest, ok = make_shards(ShardRun(task="egoclip", csv=str(synthetic_dir / "egoclip.csv"),
                                        videos=str(synthetic_dir / "videos"), out=str(out), workers=1,
                                        samples_per_shard=10, progress=False, encode=EncodeOptions(short_side=0)))
    assert ok and manifest["total_samples"] == 48
    return out


@pytest.fixture
def data_cfg(egoclip_shards, synthetic_dir):
    return DataConfig(shards=str(egoclip_shards), tokenizer=str(synthetic_dir / "tokenizer"), num_frames=4,
                      img_size=32, batch_size=4, num_workers=0, shuffle_buffer=8)
