import pytest
import torch


@pytest.fixture
def one_thread():
    """The single-process references run tiny ops: one thread avoids oversubscribing a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
