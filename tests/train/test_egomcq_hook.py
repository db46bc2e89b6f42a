"""EgoMCQ scoring during training on a hand-made case, and the equal-work split ZeRO-3 needs."""
import pytest
import torch

from egovlpv2.eval.egomcq import accuracies
from egovlpv2.train.egomcq_hook import flatten, padded_share


def test_hand_made_questions():
    # 4 questions, answer index in `answers`; types: 1 inter, 2 intra.
    dual = torch.tensor([[0.9, 0.1, 0.0, 0.0, 0.0],   # right (answer 0)
                         [0.1, 0.8, 0.0, 0.0, 0.0],   # wrong (answer 2)
                         [0.0, 0.0, 0.3, 0.2, 0.0],   # right (answer 2) but only just
                         [0.5, 0.0, 0.0, 0.0, 0.4]])  # wrong (answer 4)
    vtm = torch.tensor([[0.2, 0.9, 0.0, 0.0, 0.0],    # wrong alone; ensemble 1.1 > 1.0: right
                        [0.0, 0.0, 0.9, 0.0, 0.0],    # right alone; ensemble 0.9 > 0.8: right
                        [0.0, 0.0, 0.0, 0.5, 0.0],    # wrong alone; ensemble 0.3 < 0.7: wrong
                        [0.0, 0.0, 0.0, 0.0, 0.6]])   # right alone; ensemble 1.0 > 0.5: right
    answers = torch.tensor([0, 2, 2, 4])
    types = torch.tensor([1, 1, 2, 2])
    got = flatten(accuracies(dual, vtm, answers, types))
    assert got == pytest.approx({"dual_inter": 50.0, "dual_intra": 50.0, "vtm_inter": 50.0, "vtm_intra": 50.0,
                                 "ensemble_inter": 100.0, "ensemble_intra": 50.0})


@pytest.mark.parametrize("count, world", [(10, 3), (2, 4), (7, 1), (8, 2)])
def test_every_rank_runs_the_same_number_of_questions_and_each_counts_once(count, world):
    shares = [padded_share(count, r, world) for r in range(world)]
    assert len({len(share) for share, _ in shares}) == 1  # ZeRO-3 forwards are collective
    counted = sorted(i for share, real in shares for i in share[:real])
    assert counted == list(range(count))
