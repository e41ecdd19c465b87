"""`scaling eval`'s default output directory: outside a run's checkpoints, which pruning deletes."""

from __future__ import annotations

import json
import os

from scaling.cli.eval import default_out_dir
from scaling.training import checkpoint as ckpt
from scaling.training import manifest


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


def test_a_loose_adapter_evaluates_into_a_folder_named_with_its_step(tmp_path):
    import torch

    adapter = tmp_path / "coco.safetensors"
    ckpt.save_adapter(str(adapter), {"w": torch.zeros(2)}, {"model": {"method": "depalm"}}, {}, step=210)
    assert default_out_dir(str(adapter), "test", ["limit4"]) == str(tmp_path / "eval_coco_step_210_test_limit4")


def test_checkpoint_run_means_the_newest_checkpoint_never_a_loose_file(tmp_path):
    """`--checkpoint RUN` after training resumed past a stale export in the run folder: the newest step wins."""
    import pytest
    import torch

    run = tmp_path / "run"
    for step in (200, 210):
        d = run / "checkpoints" / ckpt.step_name(step)
        d.mkdir(parents=True)
        ckpt.save_adapter(str(d / "adapter.safetensors"), {"w": torch.full((2,), float(step))}, {}, {}, step=step)
        (d / ckpt.STATE).write_text(json.dumps({"step": step}))
        for name in ("rng_rank00000.pt", "data_rank00000.pt", "optimizer.pt", "scheduler.pt"):
            torch.save({}, d / name)  # the resume files a real checkpoint holds
        manifest.write(str(d))
    stale = run / "adapter.safetensors"
    ckpt.save_adapter(str(stale), {"w": torch.zeros(2)}, {}, {}, step=200)
    with pytest.warns(UserWarning, match="is ignored"):
        chosen = ckpt.resolve_adapter_path(str(run))
    assert chosen == str(run / "checkpoints" / ckpt.step_name(210) / "adapter.safetensors")
    assert ckpt.read_adapter_meta(chosen)["step"] == 210
