# The synthetic data set and shards of the loader tests, shared by the shard-writing tests.
from tests.data.conftest import egoclip_shards, synthetic_dir  # noqa: F401
