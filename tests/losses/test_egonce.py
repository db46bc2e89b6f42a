"""EgoNCE against a direct, loop-by-loop computation of its definition."""
import math

import pytest
import torch

from egovlpv2.losses.egonce import egonce, positive_mask


def naive_egonce(v, t, verb, noun, temperature, rule):
    v = v / v.norm(dim=1, keepdim=True)
    t = t / t.norm(dim=1, keepdim=True)
    n = v.shape[0]

    def is_positive(i, j):
        if i == j:
            return True
        shares_verb = any(verb[i, k] > 0 and verb[j, k] > 0 for k in range(verb.shape[1]))
        shares_noun = any(noun[i, k] > 0 and noun[j, k] > 0 for k in range(noun.shape[1]))
        return {"action": shares_verb and shares_noun, "verb": shares_verb, "noun": shares_noun,
                "infonce": False}[rule]

    total = 0.0
    for a, b in ((v, t), (t, v)):
        for i in range(n):
            exps = [math.exp(float(a[i] @ b[j]) / temperature) for j in range(n)]
            total -= math.log(sum(e for j, e in enumerate(exps) if is_positive(i, j)) / sum(exps)) / n
    return total


@pytest.mark.parametrize("rule", ["action", "verb", "noun", "infonce"])
def test_matches_naive_definition(rule):
    g = torch.Generator().manual_seed(0)
    n = 7
    v, t = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g, dtype=torch.float64)
    verb = (torch.rand(n, 3, generator=g) < 0.4).float()
    noun = (torch.rand(n, 4, generator=g) < 0.4).float()
    out = egonce(v, t, verb, noun, temperature=0.05, rule=rule)
    assert out.loss.item() == pytest.approx(naive_egonce(v, t, verb, noun, 0.05, rule), rel=1e-9)
    if rule == "action":
        assert (out.positives.sum(1) > 1).any(), "the case must include rows with several positives"


def test_positive_mask_with_offset_and_empty_tags():
    verb = torch.tensor([[1, 0], [0, 0], [1, 1]]).float()
    noun = torch.tensor([[1, 0], [1, 0], [0, 1]]).float()
    mask = positive_mask(verb[1:], noun[1:], verb, noun, row_offset=1)
    # Row 1 has no verb: only itself. Row 2 shares a verb with 0 but no noun: only itself.
    assert mask.tolist() == [[False, True, False], [False, False, True]]
    with pytest.raises(ValueError):
        positive_mask(verb, noun, verb, noun, 0, rule="both")


def test_loss_is_zero_sensitive_to_temperature_and_accuracy_counts_positives():
    v = torch.eye(4, dtype=torch.float64)
    out = egonce(v, v.clone(), torch.zeros(4, 2), torch.zeros(4, 2))
    assert out.accuracy.item() == 1.0
    # Perfect alignment: loss = 2 * log(1 + 3 exp(-1/T)), tiny at T=0.05.
    assert out.loss.item() == pytest.approx(2 * math.log(1 + 3 * math.exp(-20)), rel=1e-6)
