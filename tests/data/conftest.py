import pytest

from egovlpv2.data.config import DataConfig


@pytest.fixture
def data_cfg(egoclip_shards, synthetic_dir):
    return DataConfig(shards=str(egoclip_shards), tokenizer=str(synthetic_dir / "tokenizer"), num_frames=4,
                      img_size=32, batch_size=4, num_workers=0, shuffle_buffer=8)
