import pytest

from tests.eval import synthetic_benchmarks as synth


@pytest.fixture(scope="package")
def bench(tmp_path_factory):
    """The synthetic benchmarks and the tiny model, built once for every evaluation test."""
    return synth.make_bench(tmp_path_factory.mktemp("bench"))
