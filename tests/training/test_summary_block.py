"""The block `scaling train` prints at the end: a run resumed past its config's step budget says so."""

import types

from scaling.cli.summary import train_block
from scaling.config import load_config
from scaling.data.toy import tiny_run_overrides


def _result(steps, total, tmp_path):
    summary = {"steps": steps, "total_steps": total, "samples_seen": 10, "train_seconds": 1.0, "world_size": 1,
               "strategy": "accelerate", "precision": "fp32", "final_loss": 1.0}
    return types.SimpleNamespace(summary=summary, output_dir=str(tmp_path), interrupted=False, preempted=False,
                                 checkpoint=None)


def test_a_run_past_its_budget_is_not_reported_as_done_with_more_steps_than_total(tmp_path):
    cfg = load_config(None, tiny_run_overrides(str(tmp_path / "run"), 4))
    text = train_block(_result(210, 200, tmp_path), cfg)
    assert "210/200" not in text
    assert "nothing to train" in text and "step 210" in text and "train.max_steps" in text
    assert "training done: 200/200 steps" in train_block(_result(200, 200, tmp_path), cfg)
