"""Collectives: world size 1 without a process group, and real gloo ranks with uneven batches."""
import pytest
import torch

from egovlpv2.dist import collectives as C
from egovlpv2.dist.local_group import run_on_ranks


def test_single_process_needs_no_process_group():
    assert not C.is_distributed() and C.world_size() == 1 and C.rank() == 0
    x = torch.randn(3, 2, requires_grad=True)
    assert C.all_gather_with_grad(x) is x
    assert C.gather_sizes(3) == [3]
    assert torch.equal(C.all_reduce_sum(x), x.detach())
    rows = C.exchange_rows(x, torch.tensor([2, 0]), [2], [2])
    rows.sum().backward()
    assert torch.equal(x.grad, torch.tensor([[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]))
    assert C.mean_share(torch.tensor(6.0), 3).item() == 2.0
    assert C.mean_share(torch.tensor(0.0), 0).item() == 0.0


SIZES = [2, 3, 1]


def _rank_case():
    r, w = C.rank(), C.world_size()
    torch.manual_seed(100 + r)
    x = torch.randn(SIZES[r], 4, dtype=torch.float64, requires_grad=True)
    weights = torch.arange(sum(SIZES) * 4, dtype=torch.float64).view(-1, 4) * (r + 1)  # differs per rank
    with C.record_traffic() as log:
        sizes = C.gather_sizes(SIZES[r])
        gathered = C.all_gather_with_grad(x, sizes)
        (gathered * weights).sum().backward()
        # Rank r asks rank (r+1) % w for its rows in reverse order.
        peer = (r + 1) % w
        send_to = (r - 1) % w
        send_index = torch.arange(SIZES[r]).flip(0)
        send_counts = [SIZES[r] if d == send_to else 0 for d in range(w)]
        recv_counts = [SIZES[peer] if s == peer else 0 for s in range(w)]
        y = torch.randn(SIZES[r], 3, dtype=torch.float64, requires_grad=True)
        got = C.exchange_rows(y, send_index, send_counts, recv_counts)
        (got * (r + 1)).sum().backward()
        total = C.all_reduce_sum(torch.tensor([float(SIZES[r])]))
    return dict(x=x.detach(), grad=x.grad, sizes=sizes, gathered=gathered.detach(), y=y.detach(), y_grad=y.grad,
                got=got.detach(), total=total, ops=[c.op for c in log], sent=sum(c.contributed for c in log))


@pytest.mark.slow
def test_gather_and_exchange_on_three_uneven_ranks():
    out = run_on_ranks(_rank_case, 3)
    everything = torch.cat([o["x"] for o in out])
    ranks = len(SIZES)
    weight_sum = torch.arange(sum(SIZES) * 4, dtype=torch.float64).view(-1, 4) * sum(r + 1 for r in range(ranks))
    start = 0
    for r, o in enumerate(out):
        assert o["sizes"] == SIZES and o["total"].item() == sum(SIZES)
        assert torch.equal(o["gathered"], everything)
        # The gradient sums every rank's loss: slicing alone would give only (r + 1) * weights.
        assert torch.allclose(o["grad"], weight_sum[start:start + SIZES[r]])
        start += SIZES[r]
        peer = (r + 1) % ranks
        assert torch.equal(o["got"], out[peer]["y"].flip(0))
        # Rank r's rows went to rank r-1, whose loss scales them by r (its rank + 1).
        assert torch.allclose(o["y_grad"], torch.full_like(o["y"], float((r - 1) % ranks + 1)))
        assert o["ops"] == ["all_gather", "all_gather", "reduce_scatter", "all_to_all", "all_to_all", "all_reduce"]
        assert o["sent"] > 0
