"""VTM negative sampling: never a positive, hardest most often, half positive, local pool stays local."""
import torch

from egovlpv2.losses.vtm import draw_from_cdf, plan_vtm, vtm_inputs


def _random_case(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    sim = torch.randn(n, n, generator=g)
    positives = torch.eye(n, dtype=torch.bool) | (torch.rand(n, n, generator=g) < 0.3)
    positives = positives | positives.T
    return sim, positives


def test_never_draws_a_positive_and_half_the_slots_are_positive():
    sim, positives = _random_case()
    n = len(sim)
    labels = []
    for step in range(200):
        plan = plan_vtm(sim, sim.T.contiguous(), positives, [n], seed=0, step=step)
        rows = torch.arange(n)
        neg = plan.labels == 0
        swapped = torch.where(plan.video_source != rows, plan.video_source, plan.text_source)
        assert torch.all(swapped[neg] != rows[neg])
        assert not positives[rows[neg], swapped[neg]].any()
        assert torch.equal(plan.video_source[~neg], rows[~neg]) and torch.equal(plan.text_source[~neg], rows[~neg])
        # Exactly one of video/text is replaced in a negative slot.
        assert torch.all((plan.video_source[neg] == rows[neg]) ^ (plan.text_source[neg] == rows[neg]))
        labels.append(plan.labels)
    labels = torch.stack(labels).float()
    assert labels.mean().item() == 0.5


def test_forced_similarity_picks_the_hardest_negative_most_often():
    n = 6
    sim = torch.zeros(n, n)
    sim[:, 3] = 0.5  # column 3 is the most similar to every row ...
    sim[3, 4] = 0.5  # ... and row 3 (which cannot pick itself) prefers column 4
    positives = torch.eye(n, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = True
    counts = torch.zeros(n, n)
    for step in range(300):
        plan = plan_vtm(sim, sim, positives, [n], seed=1, step=step)
        rows = torch.arange(n)
        neg = plan.labels == 0
        swapped = torch.where(plan.video_source != rows, plan.video_source, plan.text_source)
        counts[rows[neg], swapped[neg]] += 1
    assert counts.argmax(1).tolist() == [3, 3, 3, 4, 3, 3]
    # softmax(0.5 / 0.05) makes the hard negative win by e^10 against each easy one.
    assert (counts[:, 3].sum() + counts[3, 4]) / counts.sum() > 0.99
    assert counts[positives].sum() == 0


def test_slot_without_candidates_stays_positive_and_cdf_skips_zero_weights():
    positives = torch.ones(2, 2, dtype=torch.bool)
    for step in range(4):
        plan = plan_vtm(torch.zeros(2, 2), torch.zeros(2, 2), positives, [2], seed=0, step=step)
        assert plan.labels.tolist() == [1, 1]
    weights = torch.tensor([[0.0, 1.0, 0.0, 1.0]]).repeat(4, 1).double()
    picks = draw_from_cdf(weights, torch.tensor([0.0, 0.49, 0.5, 0.999], dtype=torch.float64))
    assert picks.tolist() == [1, 1, 3, 3]


def test_local_pool_and_inputs_follow_the_plan():
    sim, positives = _random_case(n=8, seed=2)
    plan = plan_vtm(sim, sim, positives, [8], seed=0, step=0, pool="local")
    states = torch.arange(8.0)[:, None]
    video, text = vtm_inputs(states, states * 10, plan, [8], pool="local")
    assert torch.equal(video[:, 0], plan.video_source.float())
    assert torch.equal(text[:, 0], plan.text_source.float() * 10)
