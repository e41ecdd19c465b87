"""Every shipped config, DeepSpeed JSON and launch script is valid (litgpt's config-hub test).

Experiment configs hold placeholder backbone paths (/path/to/llama-7b); they are validated for an
8-GPU node and built on meta tensors with the matching shape names, so parameter counts are real.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

from scaling.config import ConfigError, load_config
from scaling.models.builder import build_model
from scaling.training import ds_config as dsc
from scaling.training.validate import plan_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
DS_CONFIGS = sorted(glob.glob(os.path.join(REPO, "ds_configs", "*.json")))
LAUNCH = sorted(glob.glob(os.path.join(REPO, "launch", "*")))
# placeholder path of the shipped configs -> shape name of the same architecture
SHAPES = {
    "/path/to/llama-7b": "llama-7b",
    "/path/to/opt-6.7b": "opt-6.7b",
    # the paper's backbones of other libraries: their real architecture on meta tensors (no weights)
    "timm:eva02_large_patch14_clip_224.merged2b@/path/to/eva02_large_patch14_clip_224.merged2b_s4b_b131k.bin":
        "timm:eva02_large_patch14_clip_224.merged2b",
    "/path/to/clip-vit-large-patch14": "clip-vit-l14",
    "mavil:/path/to/mavil.pth": "mavil:base",
    "/path/to/timesformer-base": "timesformer-b",
}


def test_there_is_a_config_per_experiment_and_they_match_the_generator():
    names = {os.path.basename(p) for p in CONFIGS}
    for dataset in ("coco", "textcaps", "vqav2", "textvqa", "aokvqa", "okvqa", "audiocaps", "msrvtt"):
        for method in ("depalm", "limber-1", "limber-all", "mapl", "epalm", "depalm-qp-inner", "depalm-c-attn",
                       "depalm-r-avgpool", "depalm-r-linear", "depalm-r-qpmapper", "depalm-r-rand"):
            assert f"{dataset}_{method}.yaml" in names
    assert "cpu_tiny.yaml" in names
    out = subprocess.run([sys.executable, os.path.join(REPO, "configs", "generate.py"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


_built: dict = {}


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_validates_and_builds(path):
    cfg = load_config(path)
    if cfg.model.llm in SHAPES or cfg.model.encoder in SHAPES:
        # the placeholders are refused with a message saying what to set
        with pytest.raises(ConfigError, match="placeholder"):
            plan_run(cfg, 8, "cuda", bf16_supported=True)
        plan = plan_run(cfg, 8, "cuda", bf16_supported=True, check_paths=False)
        assert plan.accumulation * cfg.train.micro_batch * 8 == cfg.train.global_batch == 128
        assert cfg.train.epochs in (8, 12, 20)
        overrides = [f"model.llm={SHAPES[cfg.model.llm]}", f"model.encoder={SHAPES[cfg.model.encoder]}"]
        cfg = load_config(path, overrides)
    else:
        plan_run(cfg, 1, "cpu")
        plan_run(cfg, 2, "cpu")
    key = (cfg.model.method, cfg.model.llm, cfg.model.encoder, cfg.model.video_frames)
    if key not in _built:  # 88 configs, 44 distinct models
        model = build_model(cfg.model, meta=True)
        _built[key] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert _built[key] > 0


@pytest.mark.parametrize("path", DS_CONFIGS, ids=os.path.basename)
def test_ds_config_fills_and_agrees(path):
    raw = dsc.load(path)
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert raw[key] == "auto", f"{key} must be auto: the trainer owns it"
    assert raw["fp16"]["enabled"] == "auto" and raw["bf16"]["enabled"] == "auto"
    precision = "fp16" if "fp16" in os.path.basename(path) else "bf16"
    owned = dsc.owned_values(128, 16, 8, 0.8, precision)
    assert dsc.check(raw, owned) == []
    resolved = dsc.resolve(raw, owned)
    assert resolved["gradient_accumulation_steps"] == 1 and resolved[precision]["enabled"] is True
    assert dsc.zero_stage(raw) in (2, 3)
    if "offload" in path:
        assert dsc.offloads_optimizer(raw) and dsc.offloads_params(raw)


@pytest.mark.parametrize("path", LAUNCH, ids=os.path.basename)
def test_launch_scripts_have_no_personal_paths(path):
    text = open(path).read()
    assert not re.search(r"/(home|Users|scratch|gpfs|lustre)/", text), "personal or cluster path"
    if path.endswith((".sh", ".sbatch")):
        assert subprocess.run(["bash", "-n", path]).returncode == 0
    if path.endswith((".sh", ".sbatch")) and not path.endswith("lib.sh"):  # lib.sh: functions the others source
        assert ">>> SET" in text
        assert "scaling train" in text or "--module scaling train" in text or "scaling bench" in text
    if path.endswith(".sbatch"):
        assert "--signal=USR1@120" in text and "--requeue" in text
        assert text.rstrip().splitlines()[-1].endswith(" requeue")  # finish ... requeue: scontrol requeue on the marker


def test_a_shell_expanded_shard_pattern_is_refused_and_other_repeats_take_the_last_value():
    # an unquoted shard pattern expanded by a shell: one data.train= per shard, of which the last would win
    with pytest.raises(ConfigError, match=r"data.train is given twice .*Quote the override"):
        load_config(None, ["data.train=/d/train-000000.tar", "data.train=/d/train-000001.tar"])
    cfg = load_config(None, ["train.lr=1e-4", "train.lr=2e-4", "data.train=/d/a.tar", "data.train=/d/a.tar"])
    assert cfg.train.lr == 2e-4 and cfg.data.train == "/d/a.tar"  # a later override replaces an earlier one


def test_a_value_of_the_wrong_type_is_one_clear_problem():
    # not also a TypeError from the section's own range checks comparing the unconverted string
    with pytest.raises(ConfigError) as err:
        load_config("configs/cpu_tiny.yaml", ["train.lr=abc"])
    assert err.value.problems == ["train.lr: expected a number, got 'abc'"]
