"""`scaling eval`'s default output directory: outside a run's checkpoints, which pruning deletes."""

from __future__ import annotations

import os

from scaling.cli.eval import default_out_dir
from scaling.training import checkpoint as ckpt


def test_a_run_checkpoint_evaluates_into_run_eval_which_pruning_never_touches(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    for step in (1, 2, 3):
        d = root / ckpt.step_name(step)
        d.mkdir(parents=True)
        (d / "adapter.safetensors").write_bytes(b"")
        (d / ckpt.STATE).write_text("{}")  # what makes a checkpoint complete
    out = default_out_dir(str(root / ckpt.step_name(1) / "adapter.safetensors"), "test")
    assert out == str(tmp_path / "run" / "eval" / f"{ckpt.step_name(1)}_test")
    os.makedirs(out)
    ckpt.prune(str(root), keep_last=1)
    assert not (root / ckpt.step_name(1)).exists(), "the pruning must really have happened"
    assert os.path.isdir(out), "evaluation results must survive the pruning of their checkpoint"


def test_an_adapter_outside_a_run_evaluates_beside_itself(tmp_path):
    (tmp_path / "best").mkdir()
    out = default_out_dir(str(tmp_path / "best" / "adapter.safetensors"), "val")
    assert out == str(tmp_path / "best" / "eval_val")


def test_zero_shot_other_data_and_limited_evaluations_never_take_the_splits_own_folder(tmp_path):
    from scaling.cli.eval import out_dir_qualifiers

    adapter = str(tmp_path / "best" / "adapter.safetensors")
    own = out_dir_qualifiers("caption", "caption", "shards/coco/test-{000000..000004}.tar", None, None)
    assert own == [] and default_out_dir(adapter, "test", own).endswith("eval_test")  # the paper's figure
    assert out_dir_qualifiers("vqa", "vqa", "shards/vqav2#test", "shards/vqav2#test", None) == []
    zero_shot = out_dir_qualifiers("gqa", "vqa", "/data/shards/gqa", "/data/shards/vqav2", None)
    assert default_out_dir(adapter, "test", zero_shot).endswith("eval_test_gqa_gqa")
    other = out_dir_qualifiers("caption", "caption", "/d/nocaps/val-{0..3}.tar", "/d/coco/test-{0..4}.tar", 8)
    assert other == ["nocaps", "limit8"]
