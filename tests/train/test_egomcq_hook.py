"""EgoMCQ scoring during training on a hand-made case."""
import pytest
import torch

from egovlpv2.eval.egomcq import accuracies
from egovlpv2.train.egomcq_hook import flatten


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
