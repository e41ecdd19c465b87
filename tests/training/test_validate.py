"""Everything checkable before a model loads is checked, and all problems come in one error with fixes."""

import json
import os
import subprocess
import sys

import pytest

from scaling.config import ConfigError, load_config
from scaling.data.toy import tiny_run_overrides
from scaling.training import ds_config as dsc
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
    check = subprocess.run(args[:-1] + ["--check", "--json", "--world-size", "2"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert check.returncode == 0, check.stderr[-2000:]
    assert json.loads(check.stdout)["accumulation"] == 1


# ---------------------------------------------------------------- data paths (placeholders, missing local shards)


@pytest.fixture
def tiny_shards(tmp_path):
    from scaling.data.synthetic import write_shards

    root = tmp_path / "shards"
    write_shards(str(root), [3, 3], split="train", image_size=24)
    write_shards(str(root), [2], split="val", image_size=24, prefix="v")
    return root


def test_check_refuses_data_placeholders_and_missing_local_sources(tmp_path):
    cfg = cfg_with(tmp_path, "data.train=/path/to/shards/coco", f"data.val={tmp_path}/nope",
                   "data.test=/path/to/shards/coco-test", f"data.index={tmp_path}/missing-index.json")
    with pytest.raises(ConfigError) as err:
        plan_run(cfg, 1, "cpu")
    problems = err.value.problems
    assert len(problems) == 3, problems  # data.test is not read by training (`scaling eval`'s loader checks it)
    text = str(err.value)
    assert "data.train='/path/to/shards/coco' is a placeholder" in text and "data.train=/data/shards/coco" in text
    assert f"data.val='{tmp_path}/nope' does not exist" in text and "scaling data convert" in text
    assert "missing-index.json' does not exist" in text and "data.index=null" in text
    assert "coco-test" not in text
    cfg = cfg_with(tmp_path, f"data.train={tmp_path}/train-{{000000..000003}}.tar")
    with pytest.raises(ConfigError, match=r"matches no existing file.*train-000000\.tar.*scaling data inspect"):
        plan_run(cfg, 1, "cpu")


def test_remote_and_toy_sources_are_not_checked(tmp_path):
    for remote in ("pipe:cat /nowhere/train-{000000..000001}.tar", "https://host/coco/train-{000000..000001}.tar",
                   "s3://bucket/coco/train-000000.tar", "gs://bucket/coco/train-000000.tar"):
        plan_run(cfg_with(tmp_path, f"data.train={remote}", "data.val=toy://colours?n=8", "data.allow_pipe=true"), 1, "cpu")


def test_existing_local_sources_pass_in_every_form(tmp_path, tiny_shards):
    for source in (str(tiny_shards), f"{tiny_shards}/index.json", f"{tiny_shards}/train-{{000000..000001}}.tar",
                   f"{tiny_shards}/train-000000.tar", f"{tiny_shards}#train::{tiny_shards}/train-000001.tar"):
        # (2 validation samples: batches of 2, one per validation)
        plan_run(cfg_with(tmp_path, f"data.train={source}", f"data.val={tiny_shards}#val", "train.micro_batch=2"), 1, "cpu")
    os.remove(tiny_shards / "train-000001.tar")  # one shard missing: skipped and counted at load time, not refused
    plan_run(cfg_with(tmp_path, f"data.train={tiny_shards}"), 1, "cpu")
    with pytest.raises(ConfigError, match="has no split 'test'"):
        plan_run(cfg_with(tmp_path, f"data.train={tiny_shards}", f"data.val={tiny_shards}#test"), 1, "cpu")


def test_encoder_placeholder_error_gives_an_encoder_example():
    from scaling.training.validate import check_backbone

    (msg,) = check_backbone("/path/to/eva-clip-l", "encoder")
    assert "placeholder" in msg and "model.encoder=/data/models/clip-vit-large-patch14" in msg and "llama" not in msg
    (msg,) = check_backbone("/path/to/llama-7b", "llm")
    assert "model.llm=/data/models/llama-7b" in msg


def test_cli_check_refuses_the_shipped_data_placeholders(capsys):
    from scaling.cli.main import main

    config = os.path.join(REPO, "configs", "coco_depalm.yaml")
    rc = main(["train", "--config", config, "--check", "--world-size", "8", "model.llm=tiny-llama", "model.encoder=tiny-vit"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "data.train='/path/to/shards/coco' is a placeholder" in err and "data.val=" in err and "data.val=null" in err


def test_deleted_shards_stop_the_run_before_any_model_loads(tmp_path, tiny_shards, monkeypatch, capsys):
    """All shard files of the training split gone: one ConfigError naming them, not DataLoader worker tracebacks."""
    from scaling.cli.main import main
    from scaling.training import loaders

    for name in ("train-000000.tar", "train-000001.tar"):
        os.remove(tiny_shards / name)

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model/tokenizer was loaded before the data paths were checked")

    monkeypatch.setattr(loaders, "load_tokenizer", must_not_load)
    monkeypatch.setattr(loaders, "build", must_not_load)
    cfg = cfg_with(tmp_path, f"data.train={tiny_shards}", f"data.val={tiny_shards}#val")
    with pytest.raises(ConfigError) as err:
        plan_run(cfg, 1, "cpu")
    (msg,) = err.value.problems
    assert "none of its 2 shard file(s) exists" in msg and "train-000000.tar" in msg and "train-000001.tar" in msg
    assert "scaling data inspect" in msg
    run = tmp_path / "run"
    rc = main(["train", *tiny_run_overrides(str(run)), f"data.train={tiny_shards}", "data.val=null"])
    stderr = capsys.readouterr().err
    assert rc == 2, stderr
    assert "train-000000.tar" in stderr and "scaling data inspect" in stderr and "Traceback" not in stderr
    assert not os.path.exists(run / "checkpoints")  # stopped before anything was built


def test_a_mistyped_shape_name_fails_at_once_with_the_close_match(tmp_path):
    from scaling.training.validate import check_backbone

    (msg,) = check_backbone("tiny-lama", "llm")  # offline, a hub lookup would retry for a minute first
    assert "did you mean 'tiny-llama'?" in msg and "shape names:" in msg
    assert check_backbone("meta-llama/Llama-2-7b-hf", "llm") == []  # a hub id is left to the hub
    assert check_backbone("tiny-llama", "llm") == []


def test_cached_features_need_no_training_shards_and_unused_features_are_noted(tmp_path):
    cfg = cfg_with(tmp_path, "data.train=null", "data.use_features=true", f"data.features={tmp_path / 'features'}")
    with pytest.raises(ConfigError) as err:  # the features are checked in place of data.train
        plan_run(cfg, 1, "cpu")
    assert "data.train is not set" not in str(err.value) and "data.features" in str(err.value)
    plan = plan_run(cfg_with(tmp_path, f"data.features={tmp_path / 'features'}"), 1, "cpu")
    assert any("data.use_features=false" in note for note in plan.notes)
