"""Every shipped config, DeepSpeed JSON and launch script is valid (litgpt's config-hub test).

Experiment configs hold placeholder backbone paths (/path/to/llama-7b); they are validated for an
8-GPU node and built on meta tensors with the matching shape names, so parameter counts are real.
"""

import glob
import importlib.util
import os
import re
import subprocess
import sys

import pytest

from scaling.config import ConfigError, load_config
from scaling.config.methods import METHODS
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
    "/path/to/opt-2.7b": "opt-2.7b",
    "/path/to/vit-base-patch16-224": "vit-b16",
    "/path/to/ast-audioset": "ast-b",
}


def _generator():
    spec = importlib.util.spec_from_file_location("configs_generate", os.path.join(REPO, "configs", "generate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_config_per_experiment_and_they_match_the_generator():
    gen = _generator()
    names = {os.path.basename(p) for p in CONFIGS}
    # the experiments are the generator's tables (DePALM settings x the methods it compares, eP-ALM's own), whose
    # names are the registries' (presets, tasks, converters); the only hand-written configs are these two
    assert gen.check_registries() == []
    expected = {f"{s}_{m}.yaml" for s in gen.depalm_settings() for m in gen.METHODS}
    expected |= {f"epalm-paper_{d}.yaml" for d in gen.EPALM_TABLE}
    assert names == expected | {"cpu_tiny.yaml", "demo_caption.yaml"}
    assert {os.path.basename(p) for p in gen.files()} == expected
    assert set(gen.METHODS) <= set(METHODS) and "limber-1" in gen.METHODS and "coco-1pct" in gen.depalm_settings()
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
        gpus = 4 if os.path.basename(path).startswith("epalm-paper_") else 8  # the official runs' GPU counts
        plan = plan_run(cfg, gpus, "cuda", bf16_supported=True, check_paths=False)
        assert plan.accumulation * cfg.train.micro_batch * gpus == cfg.train.global_batch
        assert cfg.train.epochs in (8, 12, 20, 26, 30)
        overrides = [f"model.llm={SHAPES[cfg.model.llm]}", f"model.encoder={SHAPES[cfg.model.encoder]}"]
        cfg = load_config(path, overrides)
    elif str(cfg.model.llm).startswith("./demo/"):  # configs/demo_caption.yaml: folders the demo exports
        with pytest.raises(ConfigError, match="scaling demo --export-backbones demo"):
            plan_run(cfg, 1, "cpu")
        cfg = load_config(path, ["model.llm=tiny-llama", "model.encoder=tiny-vit"])
        plan_run(cfg, 1, "cpu", check_paths=False)
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


# ---------------------------------------------------------------- official recipes (issue 14, items 12-17)
GENERATED = [p for p in CONFIGS if "Written by configs/generate.py" in open(p).read(2000)]  # not cpu_tiny, demo_*
DEPALM_GENERATED = [p for p in GENERATED if not os.path.basename(p).startswith("epalm-paper_")]
# scaling preset -> the official script's exp_name
OFFICIAL_NAME = {"depalm": "depalm-QP-L0", "depalm-qp-inner": "depalm-QP-inner", "depalm-c-attn": "depalm-c-attn",
                 "depalm-r-avgpool": "depalm-R-avgpool-L0", "depalm-r-linear": "depalm-R-linear-L0",
                 "depalm-r-qpmapper": "depalm-R-QPMapper-L0", "depalm-r-rand": "depalm-R-rand-L0", "epalm": "epalm",
                 "limber-1": "limber-1", "limber-all": "limber-all", "mapl": "mapl"}
OFFICIAL_FOLDER = {"coco": "coco_100%", "textcaps": "textcaps_100%", "vqav2": "vqa_100%", "textvqa": "textvqa_100%",
                   "aokvqa": "aokvqa_100%", "okvqa": "okvqa_100%", "audiocaps": "audiocaps_100%", "msrvtt": "msrvtt_100%",
                   "coco-1pct": "coco_1%", "vqav2-1pct": "vqa_1%", "audiocaps-1pct": "audiocaps_1%"}
# values of the official scripts written here by hand (the examples and a few more), independent of generate.py
SPOT = {("coco", "depalm"): (4e-4, 0.8), ("textvqa", "depalm"): (1e-3, 0.2), ("textvqa", "depalm-qp-inner"): (1e-3, 0.2),
        ("audiocaps", "depalm"): (4e-4, 0.5), ("audiocaps", "depalm-r-qpmapper"): (4e-4, 0.2),
        ("coco", "depalm-c-attn"): (8e-4, 0.05), ("vqav2", "depalm-c-attn"): (8e-4, 0.05),
        ("vqav2-1pct", "depalm-c-attn"): (4e-3, 0.1), ("coco", "mapl"): (8e-4, 0.2), ("coco", "epalm"): (1e-3, 0.8),
        ("msrvtt", "depalm-r-qpmapper"): (4e-4, 0.5)}
REF = "/work/ref/facebookresearch+DePALM/experiments"  # the official repository, where a developer has it


def _header_source(path):
    line = next(l for l in open(path) if l.startswith("# Official source: "))
    return line[len("# Official source: "):].strip()


@pytest.mark.parametrize("path", DEPALM_GENERATED, ids=os.path.basename)
def test_generated_depalm_config_names_its_official_script_and_recipe(path):
    setting, method = os.path.basename(path)[:-5].split("_", 1)
    source = _header_source(path)
    cfg = load_config(path)
    if source.startswith("none:"):  # no official script: the official defaults, said in the file
        assert method == "depalm-c-attn" and f"no script for {setting} x {method}" in source
        assert (cfg.train.lr, cfg.train.clip) == (8e-4, 0.05)
        # config/run.yaml: batch 16 per GPU, 8 epochs; config/mod/cross_attn.yaml: accumulation 2 (global 256 on
        # 8 GPUs); the 1% settings keep the 30 epochs every 1% script passes
        assert (cfg.train.micro_batch, cfg.train.global_batch) == (16, 16 * 2 * 8)
        assert cfg.train.epochs == (30 if setting.endswith("-1pct") else 8)
    else:
        repo, script = source.split(" experiments/")
        assert repo == "facebookresearch/DePALM@d532fe1"
        folder, name = script.split("/")
        assert folder == OFFICIAL_FOLDER[setting] and name.startswith(f"{folder}_{OFFICIAL_NAME[method]}")
        assert name[len(folder) + 1 + len(OFFICIAL_NAME[method]):] in (".sh", "_eva-clip-L.sh", "_mavil.sh", "_timesformer.sh")
    if (setting, method) in SPOT:
        assert (cfg.train.lr, cfg.train.clip) == SPOT[(setting, method)]
    assert cfg.train.lr in (4e-4, 8e-4, 1e-3, 4e-3) and cfg.train.clip in (0.05, 0.1, 0.2, 0.5, 0.8)
    # optimizer, evaluation and prompts of the official code
    assert (cfg.train.adam_eps, cfg.train.weight_decay, cfg.train.decay_1d) == (1e-4, 0.1, True)
    assert (cfg.eval.num_beams, cfg.eval.max_new_tokens, cfg.eval.max_length, cfg.eval.stop_strings) == (3, 50, None, [])
    assert cfg.train.loss_on == "answer" and cfg.train.loss_reduction == "token_mean" and cfg.model.label_smoothing == 0.002
    opt = "opt" in cfg.model.llm
    assert (cfg.data.answer_token, cfg.data.answer_prompt) == (("</a>", "Answer: ") if opt else (None, None))
    if cfg.data.task == "vqa":
        from scaling.data.text import template_for

        expected = "{question}" if setting == "textvqa" else "{question}\n\nAnswer:"
        assert template_for(cfg.data.task, cfg.data.prompt_template) == expected
    assert cfg.data.fraction == (0.01 if setting.endswith("-1pct") else 1.0)
    if setting == "msrvtt":  # config/dataset/msrvtt.yaml: 16 frames, read by the TimeSformer (time embeddings resized)
        assert cfg.data.video_frames == cfg.model.video_frames == 16
        assert (cfg.data.resample, cfg.data.image_resize) == ("bicubic", "square")  # depalm/data/data/video.py
    # augmentation of the training split: depalm/data/data/video.py gives MSR-VTT's frames torchvision's
    # transforms.RandAugment() (2 ops, magnitude 9 of 30, 14 ops; MSRVTTCaptionDataset opts out of data_base.py's
    # automatic transforms); every other dataset gets data_base.py's RandomAugment(2, 7) over its 10 ops
    ra = (cfg.data.randaugment_style, cfg.data.randaugment_n, cfg.data.randaugment_m, cfg.data.randaugment_ops)
    assert ra == (("torchvision", 2, 9, None) if setting == "msrvtt" else ("official", 2, 7, None)), ra


@pytest.mark.skipif(not os.path.isdir(REF), reason="the official DePALM repository is not on this machine")
def test_msrvtt_augmentation_is_the_one_of_the_official_video_dataset():
    """Where the official repository is at hand: MSR-VTT's dataset class builds its own transform with torchvision's
    RandAugment at its defaults and turns off the base class's automatic one (RandomAugment(2, 7))."""
    root = os.path.dirname(REF)
    video = open(os.path.join(root, "depalm", "data", "data", "video.py")).read()
    assert "transforms.RandAugment()" in video and "auto_img_transforms=False" in video
    assert "RandomAugment(" not in video
    assert re.search(r"train:\s*\n(\s+\w+:.*\n)*?\s+random_augment: yes",
                     open(os.path.join(root, "config", "dataset", "msrvtt.yaml")).read())


@pytest.mark.skipif(not os.path.isdir(REF), reason="the official DePALM repository is not on this machine")
@pytest.mark.parametrize("path", [p for p in DEPALM_GENERATED if not _header_source(p).startswith("none:")],
                         ids=os.path.basename)
def test_generated_recipe_equals_the_official_script(path):
    """Where the official repository is at hand: lr, clip and batch geometry read from the named script itself
    (configs whose header says there is no official script are checked against run.yaml's defaults above)."""
    import shlex

    source = _header_source(path)
    script = os.path.join(REF, source.split(" experiments/")[1])
    line = next(l for l in open(script) if l.startswith("python "))
    args = dict(a.split("=", 1) for a in shlex.split(line)[2:] if "=" in a)
    cattn = args.get("mod") == "cross_attn"
    cfg = load_config(path)
    assert cfg.train.lr == float(args.get("training.optimizer.args.lr", 8e-4))
    assert cfg.train.clip == float(args.get("training.clip_norm", 0.05 if cattn else 0.8))
    accum = int(args.get("training.accumulate_steps", 2 if cattn else 1))
    assert cfg.train.micro_batch == int(args.get("dataset.splits.train.batch_size", 16))
    assert cfg.train.global_batch == cfg.train.micro_batch * accum * 8
    assert cfg.train.epochs == int(args.get("training.epochs", 8))


@pytest.mark.parametrize("path", [p for p in GENERATED if os.path.basename(p).startswith("epalm-paper_")], ids=os.path.basename)
def test_epalm_paper_configs_carry_epalms_recipe(path):
    source = _header_source(path)
    assert source.startswith("mshukor/eP-ALM@9ecfeb9 configs/") and "run_scripts/accelerate_training/" in source
    cfg = load_config(path)
    t = cfg.train
    assert cfg.model.method == "epalm" and cfg.model.label_smoothing == 0.0
    assert (t.lr, t.weight_decay, t.param_groups) == (2e-5, 0.02, {"prompt": {"lr": 1e-5}})
    assert t.adam_eps == 1e-8  # torch.optim.AdamW built without eps (optim/optim_factory.py)
    if cfg.data.task in ("videoqa",) or "msrvtt" in path:  # configs/video/*.yaml num_frames: 16 captioning, 8 QA
        frames = 16 if cfg.data.task == "caption" else 8
        assert cfg.data.video_frames == cfg.model.video_frames == frames
    assert (t.loss_on, t.loss_reduction, t.loss_weight) == ("all", "sample_sum", 0.1)
    assert (cfg.eval.num_beams, cfg.eval.max_length) == (3, 30)
    if cfg.data.task != "caption":
        from scaling.data.text import format_prompt

        assert format_prompt(cfg.data.prompt_template, {"question": "is it red"}, cfg.data.answer_token,
                             cfg.data.answer_prompt) == "is it red?</a>"  # eP-ALM: question + '?' + </a>, no space


@pytest.mark.parametrize("path", [p for p in GENERATED if os.path.basename(p).startswith("epalm-paper_")
                                  and "audiocaps" not in p], ids=os.path.basename)  # audio: the AST spec itself
def test_epalm_paper_configs_preprocess_images_and_frames_as_epalms_datasets(path, tmp_path):
    """eP-ALM's datasets normalise with the CLIP mean/std and resize bicubic to size x size at test, whatever the
    backbone (a ViT-B/16 whose own processor says mean/std 0.5 and bilinear; a TimeSformer: ImageNet and a crop)."""
    import random

    import numpy as np
    from PIL import Image

    from scaling.common.media import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from scaling.config.model import model_config
    from scaling.data.augment import ImageTransform
    from scaling.models.transforms import media_spec

    cfg = load_config(path)
    encoder = tmp_path / "enc"
    encoder.mkdir()
    video = "timesformer" in cfg.model.encoder
    (encoder / "config.json").write_text('{"model_type": "%s", "image_size": 32, "num_frames": 8}' % ("timesformer" if video else "vit"))
    (encoder / "preprocessor_config.json").write_text(
        '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": {"height": 32, "width": 32}}'
        if not video else '{"image_mean": [0.45, 0.45, 0.45], "image_std": [0.22, 0.22, 0.22], "resample": 2, '
        '"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": true}')
    spec = media_spec(model_config(method="epalm", encoder=str(encoder)), cfg.data)
    assert (spec.mean, spec.std) == (tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8))
    ours = ImageTransform(spec, train=False, cfg=cfg.data)(img, random.Random(0))
    ref = np.asarray(img.resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255.0
    ref = (ref - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    np.testing.assert_allclose(np.asarray(ours), ref.transpose(2, 0, 1), atol=1e-5)
    if video:
        assert cfg.data.randaugment_style == "torchvision" and cfg.data.randaugment_m == 9  # transforms.RandAugment()
