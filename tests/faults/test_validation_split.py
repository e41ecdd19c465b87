"""Fault campaign round three (issue 24 items 12, 14): a validation split smaller than one batch per rank is refused
at start-up; the count of validation samples that could not be scored reaches metrics.json and train_log.jsonl."""

import os

import pytest

from scaling.config import load_config
from scaling.config.base import ConfigError
from scaling.training.validate import plan_run


def test_a_validation_split_smaller_than_one_batch_per_rank_is_refused_at_start_up(tmp_path, caption_shards):
    d = caption_shards(str(tmp_path), 3, "val")
    cfg = load_config(None, ["data.train=toy://colours?n=64", f"data.val={d}", "train.micro_batch=4",
                             "train.global_batch=8", f"train.output_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match=r"holds 3 sample\(s\), fewer than one validation batch per rank \(world size 1 "
                                          r"x train.micro_batch 4 = 4\)"):
        plan_run(cfg, 1, "cpu")
    ok = load_config(None, ["data.train=toy://colours?n=64", f"data.val={d}", "train.micro_batch=2",
                            "train.global_batch=8", f"train.output_dir={tmp_path / 'run'}"])
    plan_run(ok, 1, "cpu")
    with pytest.raises(ConfigError, match="world size 2 x train.micro_batch 2 = 4"):
        plan_run(ok, 2, "cpu")


def test_the_unscorable_validation_count_reaches_metrics_json_and_the_log(tmp_path, caption_shards):
    import json

    from scaling.data.toy import tiny_run_overrides
    from scaling.models.tiny import save_tiny_llm
    from scaling.training.loop import read_log, train

    train_dir = caption_shards(str(tmp_path / "train"), 16, "train")
    val_dir = caption_shards(str(tmp_path / "val"), 8, "val", unanswered={1, 4, 6})
    llm = save_tiny_llm(str(tmp_path / "llm"), "llama")
    out = str(tmp_path / "run")
    cfg = load_config(None, tiny_run_overrides(out, 2, global_batch=4, micro_batch=4, eval_every=2) + [
        f"model.llm={llm}", f"data.train={train_dir}", f"data.val={val_dir}", "data.num_workers=0",
        "eval.batch_size=4", "eval.max_new_tokens=2"])
    from scaling.evaluation.hook import build_evaluate_fn

    result = train(cfg, evaluate_fn=build_evaluate_fn(cfg))  # what `scaling train` passes
    assert result.exit_code == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    # a count beside the scores at the top level (like `scaling eval`'s "skipped"), never among the scores
    assert metrics["unscorable_samples"] == 3 and "unscorable_samples" not in metrics["metrics"]
    assert metrics["metrics"]  # the scores themselves
    evals = [r for r in read_log(out, "eval") if "eval/unscorable_samples" in r]
    assert evals and evals[-1]["eval/unscorable_samples"] == 3
