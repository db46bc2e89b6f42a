# The synthetic data set of the loader tests, shared by the shard-writing tests.
from tests.data.conftest import TINY, synthetic_dir  # noqa: F401
