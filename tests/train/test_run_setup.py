"""Pre-training and fine-tuning build their process group, compile mode and loop from one shared set-up
(egovlpv2.train.run_setup), so an option of the train, checkpoint and logging sections reaches both or
neither (tests/test_every_option.py shows each field changing both runs)."""
import inspect

import egovlpv2.finetune.run
import egovlpv2.train.pretrain
from egovlpv2.finetune.config import load_finetune_config
from egovlpv2.model.compile import CompileMode
from egovlpv2.train.run_setup import run_setup


def test_both_entry_points_build_from_the_shared_setup():
    for module in (egovlpv2.train.pretrain, egovlpv2.finetune.run):
        source = inspect.getsource(module)
        assert "run_setup(cfg)" in source and "setup.start_distributed()" in source
        assert "setup.loop_settings(" in source and "setup.compile" in source and "LoopSettings(" not in source


def test_fine_tuning_takes_the_five_options_it_used_to_ignore():
    cfg = load_finetune_config("epic_mir", ["train.compile=blocks", "train.collective_timeout_s=42",
                                            "train.max_nonfinite_steps=7", "train.peer_timeout_s=9",
                                            "train.stop_timeout_s=11"])
    setup = run_setup(cfg)
    assert setup.compile is CompileMode.BLOCKS and setup.collective_timeout_s == 42
    loop = setup.loop_settings(100, None, True)
    assert (loop.max_nonfinite_steps, loop.peer_timeout_s, loop.stop_timeout_s, loop.total_steps) == (7, 9, 11, 100)
