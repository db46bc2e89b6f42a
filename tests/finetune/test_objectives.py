"""Fine-tuning losses against direct loop computations."""
import math

import pytest
import torch

from egovlpv2.finetune.objectives import adaptive_max_margin_loss, symmetric_infonce


def naive_max_margin(sim, weight, margin):
    n = len(sim)
    terms = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            terms.append(max(0.0, weight[i] * margin - (sim[i][i] - sim[i][j])))
            terms.append(max(0.0, weight[i] * margin - (sim[i][i] - sim[j][i])))
    return sum(terms) / len(terms)


def naive_infonce(sim, temperature):
    n = len(sim)
    total = 0.0
    for i in range(n):
        row = [sim[i][j] / temperature for j in range(n)]
        col = [sim[j][i] / temperature for j in range(n)]
        total += -row[i] + math.log(sum(math.exp(x) for x in row)) - col[i] + math.log(sum(math.exp(x) for x in col))
    return total / n


@pytest.mark.parametrize("seed", range(4))
def test_adaptive_max_margin_matches_loop(seed):
    g = torch.Generator().manual_seed(seed)
    sim = torch.rand(6, 6, generator=g, dtype=torch.float64) * 2 - 1
    weight = torch.rand(6, generator=g, dtype=torch.float64)
    got = adaptive_max_margin_loss(sim, weight, margin=0.2)
    assert got.item() == pytest.approx(naive_max_margin(sim.tolist(), weight.tolist(), 0.2))


def test_max_margin_weight_scales_margin():
    # Positive beats each negative by 0.1: inside a margin of 0.2 at weight 1, outside at weight 0.25.
    sim = torch.tensor([[0.5, 0.4], [0.4, 0.5]])
    assert adaptive_max_margin_loss(sim, torch.ones(2), 0.2).item() == pytest.approx(0.1)
    assert adaptive_max_margin_loss(sim, torch.full((2,), 0.25), 0.2).item() == 0.0
    assert adaptive_max_margin_loss(torch.ones(1, 1), torch.ones(1)).item() == 0.0


def test_symmetric_infonce_matches_loop():
    sim = torch.rand(5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert symmetric_infonce(sim, 0.05).item() == pytest.approx(naive_infonce(sim.tolist(), 0.05))
