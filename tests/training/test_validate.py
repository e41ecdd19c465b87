"""Everything checkable before a model loads is checked, and all problems come in one error with fixes."""

import json
import os
import subprocess
import sys

import pytest

from scaling.config import ConfigError, load_config
from scaling.training import ds_config as dsc
from scaling.training.toy import tiny_run_overrides
from scaling.training.validate import check_batch, check_precision, plan_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cfg_with(tmp_path, *extra):
    return load_config(None, tiny_run_overrides(str(tmp_path / "run")) + list(extra))


def test_accumulation_reaches_the_global_batch():
    cfg = load_config(None, tiny_run_overrides("x", global_batch=128, micro_batch=16))
    assert plan_run(cfg, 8, "cpu").accumulation == 1
    assert plan_run(cfg, 2, "cpu").accumulation == 4
    assert plan_run(cfg, 1, "cpu").accumulation == 8


def test_global_batch_not_divisible_is_an_error_with_the_fix():
    (msg,) = check_batch(128, 16, 3)
    assert "not divisible" in msg and "16 × 3" in msg and "train.micro_batch" in msg
    assert check_batch(128, 16, 4) == []


def test_bf16_on_a_gpu_without_it_says_use_fp16():
    problems, _, _ = check_precision("bf16", "bf16", "cuda", bf16_supported=False)
    assert problems and "fp16" in problems[0] and "zero2_fp16.json" in problems[0]
    problems, precision, _ = check_precision("fp16", "fp16", "cuda", bf16_supported=False)
    assert problems == [] and precision == "fp16"
    problems, _, _ = check_precision("fp16", "bf16", "cuda", bf16_supported=True)
    assert problems and "model.frozen_dtype=fp16" in problems[0]
    problems, precision, notes = check_precision("bf16", "bf16", "cpu")
    assert problems == [] and precision == "fp32" and notes


def test_ds_json_contradicting_the_train_config_is_rejected(tmp_path):
    ds = {"train_batch_size": 64, "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": 4,
          "gradient_clipping": 1.0, "bf16": {"enabled": True}, "zero_optimization": {"stage": 2},
          "optimizer": {"type": "AdamW"}}
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(ds))
    cfg = cfg_with(tmp_path, f"train.deepspeed={path}", "train.global_batch=16", "train.micro_batch=8", "train.clip=0.8")
    with pytest.raises(ConfigError) as err:
        plan_run(cfg, 2, "cpu")
    text = str(err.value)
    # every contradiction is listed, each saying what to set
    assert "train_batch_size is 64" in text and "train.global_batch" in text
    assert "gradient_accumulation_steps is 4" in text
    assert "gradient_clipping is 1.0" in text
    assert "bf16.enabled is true" in text  # CPU computes in fp32
    assert "remove the 'optimizer' section" in text
    assert len(err.value.problems) == 5


def test_auto_values_are_filled_from_the_train_config(tmp_path):
    cfg = cfg_with(tmp_path, f"train.deepspeed={REPO}/ds_configs/zero2_bf16.json", "train.global_batch=32", "train.micro_batch=4")
    plan = plan_run(cfg, 2, "cpu")
    ds = plan.deepspeed
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (32, 4, 4)
    assert ds["gradient_clipping"] == 0.8 and ds["bf16"]["enabled"] is False and ds["fp16"]["enabled"] is False
    assert plan.zero_stage == 2
    owned = dsc.owned_values(128, 16, 8, 0.8, "bf16")
    resolved = dsc.resolve({"bf16": {"enabled": "auto"}}, owned)
    assert resolved["bf16"] == {"enabled": True, "check_grad_overflow": True}


def test_all_problems_at_once_and_placeholders_named(tmp_path):
    cfg = cfg_with(tmp_path, "model.llm=/path/to/llama-7b", "train.global_batch=100", "train.micro_batch=8",
                   f"train.deepspeed={tmp_path}/missing.json")
    with pytest.raises(ConfigError) as err:
        plan_run(cfg, 2, "cpu")
    text = str(err.value)
    assert "not divisible" in text and "/path/to/llama-7b" in text and "placeholder" in text and "missing.json" in text


def test_cli_check_fails_before_loading_any_model(tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": 4, "zero_optimization": {"stage": 2}}))
    args = [sys.executable, "-m", "scaling", "train", *tiny_run_overrides(str(tmp_path / "run")), f"train.deepspeed={ds}"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "train_micro_batch_size_per_gpu is 4" in out.stderr and "train.micro_batch" in out.stderr
    assert not os.path.exists(tmp_path / "run" / "checkpoints")  # stopped before anything was built
    check = subprocess.run(args[:-1] + ["--check", "--world-size", "2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    assert json.loads(check.stdout)["accumulation"] == 1
