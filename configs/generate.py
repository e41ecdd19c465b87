"""Write one config per experiment: the DePALM paper's (dataset × method, full data and 1%) and eP-ALM's own.

    python configs/generate.py            # (re)write the files
    python configs/generate.py --check    # exit 1 if a file differs from what this script writes

DePALM (``configs/<setting>_<method>.yaml``): backbones and data sets follow DePALM Table 2 (LLM and
perceptual backbone per dataset, :data:`TABLE2`); the recipe of each file is the one of its official
script in facebookresearch/DePALM@d532fe1, ``experiments/<dataset>_100%/*.sh`` and ``experiments/*_1%/*.sh``
(:data:`RECIPES`: learning rate, gradient clip, batch per GPU and accumulation), over the defaults of
its ``config/run.yaml`` (AdamW lr 8e-4, eps 1e-4, weight decay 0.1, 20% warm-up then cosine to lr·1e-4,
clip 0.8, batch 16 per GPU × 8 GPUs, label smoothing 2e-3; beam search with 3 beams, at most 50 new
tokens) and ``config/mod/cross_attn.yaml`` for c-attn (clip 0.05, accumulation 2). Each file names
its source script. Where the official repository has no script for an experiment the file says so
and uses those defaults. Prompts: ``config/dataset/*.yaml`` and, for OPT, ``config/llm/opt.yaml``.

eP-ALM (``configs/epalm-paper_<dataset>.yaml``, :data:`EPALM_TABLE`): its own experiments with its
backbones and recipe (mshukor/eP-ALM@9ecfeb9 ``configs/*/*.yaml`` and ``run_scripts/accelerate_training``).

Paths are placeholders (``/path/to/...``) that ``scaling train`` refuses until they are set.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's scaling package (the registries below)

from scaling.config.tasks import metric_of  # noqa: E402

DEPALM = "facebookresearch/DePALM@d532fe1"
EPALM = "mshukor/eP-ALM@9ecfeb9"
GPUS = 8  # the official global batch: batch per GPU x accumulation x 8 GPUs (DePALM supplement C.3: 128)
# config/run.yaml training.epochs: what an experiment without a script runs on full data (the scripts of
# textvqa_100%, aokvqa_100%, okvqa_100%, textcaps_100% pass training.epochs=20, audiocaps_100% 12, the 1% ones 30)
RUN_YAML_EPOCHS = 8

# the paper's default perceptual backbones (DePALM config/feat_model/*.yaml), as model.encoder values
# (docs/backbones.md): EVA-CLIP-L through timm (eva-clip-L.yaml), MAViL's audio branch (mavil.yaml),
# CLIP-L (clip-vit-L.yaml, transformers), TimeSformer (timesformer.yaml, transformers)
ENCODERS = {
    "eva-clip-l": "timm:eva02_large_patch14_clip_224.merged2b@/path/to/eva02_large_patch14_clip_224.merged2b_s4b_b131k.bin",
    "mavil": "mavil:/path/to/mavil.pth",
    "clip-l": "/path/to/clip-vit-large-patch14",
    "timesformer": "/path/to/timesformer-base",
}

# dataset -> (task, modality, train size, LLM placeholder, encoder placeholder, epochs, note)
TABLE2 = {
    "coco": ("caption", "image", "82K", "/path/to/llama-7b", ENCODERS["eva-clip-l"], 8, "Karpathy splits"),
    "textcaps": ("caption", "image", "21K", "/path/to/llama-7b", ENCODERS["clip-l"], 20, ""),
    "vqav2": ("vqa", "image", "605K", "/path/to/opt-6.7b", ENCODERS["clip-l"], 8, "Karpathy splits"),
    "textvqa": ("vqa", "image", "34K", "/path/to/opt-6.7b", ENCODERS["clip-l"], 20, ""),
    "aokvqa": ("vqa", "image", "17K", "/path/to/opt-6.7b", ENCODERS["clip-l"], 20, ""),
    "okvqa": ("vqa", "image", "9K", "/path/to/opt-6.7b", ENCODERS["clip-l"], 20, ""),
    "audiocaps": ("caption", "audio", "49K", "/path/to/opt-6.7b", ENCODERS["mavil"], 12, ""),
    "msrvtt": ("caption", "video", "7K", "/path/to/llama-7b", ENCODERS["timesformer"], 8,
               "TimeSformer reads 16 frames (config/dataset/msrvtt.yaml num_frames), its checkpoint's 8 time "
               "embeddings resized nearest as depalm/models/perceptual/timesformermodel.py does"),
}

# MSR-VTT in the DePALM code: config/dataset/msrvtt.yaml num_frames 16 (sample_type rand_middle: a random frame per
# segment in training, the middle ones at test); depalm/data/data/video.py normalises with the CLIP mean/std and
# resizes bicubic (RandomResizedCrop in training, Resize((size, size)) at test). Its augmentation (train split,
# msrvtt.yaml random_augment: yes) is torchvision's transforms.RandAugment() with its defaults (2 ops, magnitude 9
# of 30), drawn once per clip: MSRVTTCaptionDataset passes auto_img_transforms=False to data_base.py's
# FeaturesDataset, which then never builds its RandomAugment(2, 7), and sets features_transform to None
DEPALM_VIDEO_FRAMES = 16
DEPALM_VIDEO_PREPROCESSING = (
    "  image_mean: [0.48145466, 0.4578275, 0.40821073]  # depalm/data/data/video.py: the CLIP mean and std\n"
    "  image_std: [0.26862954, 0.26130258, 0.27577711]\n"
    "  resample: bicubic  # RandomResizedCrop and the test Resize with Image.BICUBIC\n"
    "  image_resize: square  # test: Resize((image_size, image_size))\n"
    "  randaugment_style: torchvision  # video.py: transforms.RandAugment() on the frames (not data_base.py's RandomAugment)\n"
    "  randaugment_m: 9  # its default magnitude (of 30), 2 ops\n"
)

# low-data settings of the official experiments/ folder: setting -> (dataset of TABLE2, data fraction, epochs)
LOW_DATA = {
    "coco-1pct": ("coco", 0.01, 30),
    "vqav2-1pct": ("vqav2", 0.01, 30),
    "audiocaps-1pct": ("audiocaps", 0.01, 30),
}

# VQA instruction per dataset where it is not the task default ("{question}\n\nAnswer:", config/dataset/vqa.yaml,
# okvqa.yaml, aokvqa.yaml); textvqa.yaml sets no instruction: the bare question
PROMPT_TEMPLATE = {"textvqa": "{question}"}

# (setting, method) -> (official script under experiments/, lr, gradient clip, batch per GPU, accumulation);
# script None: the official repository has no script for it (config/run.yaml + config/mod/cross_attn.yaml defaults)
RECIPES = {
    # coco
    ("coco", "depalm"): ("coco_100%/coco_100%_depalm-QP-L0_eva-clip-L.sh", 4e-4, 0.8, 16, 1),
    ("coco", "limber-1"): ("coco_100%/coco_100%_limber-1_eva-clip-L.sh", 8e-4, 0.8, 16, 1),
    ("coco", "limber-all"): ("coco_100%/coco_100%_limber-all_eva-clip-L.sh", 8e-4, 0.8, 4, 4),
    ("coco", "mapl"): ("coco_100%/coco_100%_mapl_eva-clip-L.sh", 8e-4, 0.2, 16, 1),
    ("coco", "epalm"): ("coco_100%/coco_100%_epalm_eva-clip-L.sh", 1e-3, 0.8, 16, 1),
    ("coco", "depalm-qp-inner"): ("coco_100%/coco_100%_depalm-QP-inner_eva-clip-L.sh", 8e-4, 0.8, 8, 2),
    ("coco", "depalm-c-attn"): ("coco_100%/coco_100%_depalm-c-attn_eva-clip-L.sh", 8e-4, 0.05, 8, 2),
    ("coco", "depalm-r-avgpool"): ("coco_100%/coco_100%_depalm-R-avgpool-L0_eva-clip-L.sh", 1e-3, 0.8, 8, 2),
    ("coco", "depalm-r-linear"): ("coco_100%/coco_100%_depalm-R-linear-L0_eva-clip-L.sh", 1e-3, 0.8, 8, 2),
    ("coco", "depalm-r-qpmapper"): ("coco_100%/coco_100%_depalm-R-QPMapper-L0_eva-clip-L.sh", 4e-4, 0.5, 8, 2),
    ("coco", "depalm-r-rand"): ("coco_100%/coco_100%_depalm-R-rand-L0_eva-clip-L.sh", 1e-3, 0.8, 8, 2),
    # textcaps
    ("textcaps", "depalm"): ("textcaps_100%/textcaps_100%_depalm-QP-L0.sh", 1e-3, 0.8, 16, 1),
    ("textcaps", "limber-1"): ("textcaps_100%/textcaps_100%_limber-1.sh", 8e-4, 0.8, 16, 1),
    ("textcaps", "limber-all"): ("textcaps_100%/textcaps_100%_limber-all.sh", 8e-4, 0.8, 4, 4),
    ("textcaps", "mapl"): ("textcaps_100%/textcaps_100%_mapl.sh", 1e-3, 0.8, 16, 1),
    ("textcaps", "epalm"): ("textcaps_100%/textcaps_100%_epalm.sh", 1e-3, 0.8, 16, 1),
    ("textcaps", "depalm-qp-inner"): ("textcaps_100%/textcaps_100%_depalm-QP-inner.sh", 1e-3, 0.8, 8, 2),
    ("textcaps", "depalm-c-attn"): ("textcaps_100%/textcaps_100%_depalm-c-attn.sh", 8e-4, 0.05, 8, 2),
    ("textcaps", "depalm-r-avgpool"): ("textcaps_100%/textcaps_100%_depalm-R-avgpool-L0.sh", 1e-3, 0.8, 8, 2),
    ("textcaps", "depalm-r-linear"): ("textcaps_100%/textcaps_100%_depalm-R-linear-L0.sh", 4e-4, 0.8, 8, 2),
    ("textcaps", "depalm-r-qpmapper"): ("textcaps_100%/textcaps_100%_depalm-R-QPMapper-L0.sh", 1e-3, 0.5, 8, 2),
    ("textcaps", "depalm-r-rand"): ("textcaps_100%/textcaps_100%_depalm-R-rand-L0.sh", 1e-3, 0.8, 8, 2),
    # vqav2
    ("vqav2", "depalm"): ("vqa_100%/vqa_100%_depalm-QP-L0.sh", 4e-4, 0.8, 16, 1),
    ("vqav2", "limber-1"): ("vqa_100%/vqa_100%_limber-1.sh", 8e-4, 0.8, 16, 1),
    ("vqav2", "limber-all"): ("vqa_100%/vqa_100%_limber-all.sh", 8e-4, 0.8, 4, 4),
    ("vqav2", "mapl"): ("vqa_100%/vqa_100%_mapl.sh", 8e-4, 0.8, 16, 1),
    ("vqav2", "epalm"): ("vqa_100%/vqa_100%_epalm.sh", 1e-3, 0.8, 16, 1),
    ("vqav2", "depalm-qp-inner"): ("vqa_100%/vqa_100%_depalm-QP-inner.sh", 4e-4, 0.8, 8, 2),
    ("vqav2", "depalm-c-attn"): ("vqa_100%/vqa_100%_depalm-c-attn.sh", 8e-4, 0.05, 8, 2),
    ("vqav2", "depalm-r-avgpool"): ("vqa_100%/vqa_100%_depalm-R-avgpool-L0.sh", 1e-3, 0.8, 8, 2),
    ("vqav2", "depalm-r-linear"): ("vqa_100%/vqa_100%_depalm-R-linear-L0.sh", 4e-4, 0.8, 8, 2),
    ("vqav2", "depalm-r-qpmapper"): ("vqa_100%/vqa_100%_depalm-R-QPMapper-L0.sh", 4e-4, 0.5, 8, 2),
    ("vqav2", "depalm-r-rand"): ("vqa_100%/vqa_100%_depalm-R-rand-L0.sh", 1e-3, 0.8, 8, 2),
    # textvqa
    ("textvqa", "depalm"): ("textvqa_100%/textvqa_100%_depalm-QP-L0.sh", 1e-3, 0.2, 8, 2),
    ("textvqa", "limber-1"): ("textvqa_100%/textvqa_100%_limber-1.sh", 4e-4, 0.8, 16, 1),
    ("textvqa", "limber-all"): ("textvqa_100%/textvqa_100%_limber-all.sh", 8e-4, 0.8, 4, 4),
    ("textvqa", "mapl"): ("textvqa_100%/textvqa_100%_mapl.sh", 8e-4, 0.8, 16, 1),
    ("textvqa", "epalm"): ("textvqa_100%/textvqa_100%_epalm.sh", 1e-3, 0.8, 16, 1),
    ("textvqa", "depalm-qp-inner"): ("textvqa_100%/textvqa_100%_depalm-QP-inner.sh", 1e-3, 0.2, 8, 2),
    ("textvqa", "depalm-c-attn"): (None, 8e-4, 0.05, 16, 2),
    ("textvqa", "depalm-r-avgpool"): ("textvqa_100%/textvqa_100%_depalm-R-avgpool-L0.sh", 1e-3, 0.8, 8, 2),
    ("textvqa", "depalm-r-linear"): ("textvqa_100%/textvqa_100%_depalm-R-linear-L0.sh", 1e-3, 0.8, 8, 2),
    ("textvqa", "depalm-r-qpmapper"): ("textvqa_100%/textvqa_100%_depalm-R-QPMapper-L0.sh", 1e-3, 0.5, 8, 2),
    ("textvqa", "depalm-r-rand"): ("textvqa_100%/textvqa_100%_depalm-R-rand-L0.sh", 1e-3, 0.8, 8, 2),
    # aokvqa
    ("aokvqa", "depalm"): ("aokvqa_100%/aokvqa_100%_depalm-QP-L0.sh", 8e-4, 0.8, 16, 1),
    ("aokvqa", "limber-1"): ("aokvqa_100%/aokvqa_100%_limber-1.sh", 8e-4, 0.8, 16, 1),
    ("aokvqa", "limber-all"): ("aokvqa_100%/aokvqa_100%_limber-all.sh", 8e-4, 0.8, 4, 4),
    ("aokvqa", "mapl"): ("aokvqa_100%/aokvqa_100%_mapl.sh", 1e-3, 0.8, 16, 1),
    ("aokvqa", "epalm"): ("aokvqa_100%/aokvqa_100%_epalm.sh", 1e-3, 0.8, 16, 1),
    ("aokvqa", "depalm-qp-inner"): ("aokvqa_100%/aokvqa_100%_depalm-QP-inner.sh", 1e-3, 0.8, 8, 2),
    ("aokvqa", "depalm-c-attn"): ("aokvqa_100%/aokvqa_100%_depalm-c-attn.sh", 8e-4, 0.05, 8, 2),
    ("aokvqa", "depalm-r-avgpool"): ("aokvqa_100%/aokvqa_100%_depalm-R-avgpool-L0.sh", 1e-3, 0.8, 8, 2),
    ("aokvqa", "depalm-r-linear"): ("aokvqa_100%/aokvqa_100%_depalm-R-linear-L0.sh", 1e-3, 0.8, 8, 2),
    ("aokvqa", "depalm-r-qpmapper"): ("aokvqa_100%/aokvqa_100%_depalm-R-QPMapper-L0.sh", 1e-3, 0.5, 8, 2),
    ("aokvqa", "depalm-r-rand"): ("aokvqa_100%/aokvqa_100%_depalm-R-rand-L0.sh", 1e-3, 0.8, 8, 2),
    # okvqa
    ("okvqa", "depalm"): ("okvqa_100%/okvqa_100%_depalm-QP-L0.sh", 4e-4, 0.8, 16, 1),
    ("okvqa", "limber-1"): ("okvqa_100%/okvqa_100%_limber-1.sh", 1e-3, 0.8, 16, 1),
    ("okvqa", "limber-all"): ("okvqa_100%/okvqa_100%_limber-all.sh", 8e-4, 0.8, 4, 4),
    ("okvqa", "mapl"): ("okvqa_100%/okvqa_100%_mapl.sh", 1e-3, 0.8, 16, 1),
    ("okvqa", "epalm"): ("okvqa_100%/okvqa_100%_epalm.sh", 1e-3, 0.8, 16, 1),
    ("okvqa", "depalm-qp-inner"): ("okvqa_100%/okvqa_100%_depalm-QP-inner.sh", 1e-3, 0.8, 16, 1),
    ("okvqa", "depalm-c-attn"): ("okvqa_100%/okvqa_100%_depalm-c-attn.sh", 8e-4, 0.05, 8, 2),
    ("okvqa", "depalm-r-avgpool"): ("okvqa_100%/okvqa_100%_depalm-R-avgpool-L0.sh", 1e-3, 0.8, 8, 2),
    ("okvqa", "depalm-r-linear"): ("okvqa_100%/okvqa_100%_depalm-R-linear-L0.sh", 1e-3, 0.8, 8, 2),
    ("okvqa", "depalm-r-qpmapper"): ("okvqa_100%/okvqa_100%_depalm-R-QPMapper-L0.sh", 1e-3, 0.5, 8, 2),
    ("okvqa", "depalm-r-rand"): ("okvqa_100%/okvqa_100%_depalm-R-rand-L0.sh", 1e-3, 0.8, 8, 2),
    # audiocaps
    ("audiocaps", "depalm"): ("audiocaps_100%/audiocaps_100%_depalm-QP-L0_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps", "limber-1"): ("audiocaps_100%/audiocaps_100%_limber-1_mavil.sh", 1e-3, 0.5, 4, 4),
    ("audiocaps", "limber-all"): ("audiocaps_100%/audiocaps_100%_limber-all_mavil.sh", 1e-3, 0.5, 4, 4),
    ("audiocaps", "mapl"): ("audiocaps_100%/audiocaps_100%_mapl_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps", "epalm"): ("audiocaps_100%/audiocaps_100%_epalm_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps", "depalm-qp-inner"): ("audiocaps_100%/audiocaps_100%_depalm-QP-inner_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps", "depalm-c-attn"): ("audiocaps_100%/audiocaps_100%_depalm-c-attn_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps", "depalm-r-avgpool"): ("audiocaps_100%/audiocaps_100%_depalm-R-avgpool-L0_mavil.sh", 1e-3, 0.5, 8, 2),
    ("audiocaps", "depalm-r-linear"): ("audiocaps_100%/audiocaps_100%_depalm-R-linear-L0_mavil.sh", 1e-3, 0.5, 8, 2),
    ("audiocaps", "depalm-r-qpmapper"): ("audiocaps_100%/audiocaps_100%_depalm-R-QPMapper-L0_mavil.sh", 4e-4, 0.2, 8, 2),
    ("audiocaps", "depalm-r-rand"): ("audiocaps_100%/audiocaps_100%_depalm-R-rand-L0_mavil.sh", 1e-3, 0.5, 8, 2),
    # msrvtt
    ("msrvtt", "depalm"): ("msrvtt_100%/msrvtt_100%_depalm-QP-L0_timesformer.sh", 1e-3, 0.8, 8, 2),
    ("msrvtt", "limber-1"): ("msrvtt_100%/msrvtt_100%_limber-1_timesformer.sh", 1e-3, 0.8, 2, 8),
    ("msrvtt", "limber-all"): ("msrvtt_100%/msrvtt_100%_limber-all_timesformer.sh", 8e-4, 0.8, 2, 8),
    ("msrvtt", "mapl"): ("msrvtt_100%/msrvtt_100%_mapl_timesformer.sh", 8e-4, 0.8, 8, 2),
    ("msrvtt", "epalm"): ("msrvtt_100%/msrvtt_100%_epalm_timesformer.sh", 1e-3, 0.8, 8, 2),
    ("msrvtt", "depalm-qp-inner"): ("msrvtt_100%/msrvtt_100%_depalm-QP-inner_timesformer.sh", 1e-3, 0.8, 2, 8),
    ("msrvtt", "depalm-c-attn"): (None, 8e-4, 0.05, 16, 2),
    ("msrvtt", "depalm-r-avgpool"): ("msrvtt_100%/msrvtt_100%_depalm-R-avgpool-L0_timesformer.sh", 4e-4, 0.8, 8, 2),
    ("msrvtt", "depalm-r-linear"): ("msrvtt_100%/msrvtt_100%_depalm-R-linear-L0_timesformer.sh", 4e-4, 0.8, 2, 8),
    ("msrvtt", "depalm-r-qpmapper"): ("msrvtt_100%/msrvtt_100%_depalm-R-QPMapper-L0_timesformer.sh", 4e-4, 0.5, 1, 16),
    ("msrvtt", "depalm-r-rand"): ("msrvtt_100%/msrvtt_100%_depalm-R-rand-L0_timesformer.sh", 4e-4, 0.8, 2, 8),
    # coco-1pct
    ("coco-1pct", "depalm"): ("coco_1%/coco_1%_depalm-QP-L0_eva-clip-L.sh", 8e-4, 0.8, 16, 1),
    ("coco-1pct", "limber-1"): ("coco_1%/coco_1%_limber-1_eva-clip-L.sh", 1e-3, 0.8, 16, 1),
    ("coco-1pct", "limber-all"): ("coco_1%/coco_1%_limber-all_eva-clip-L.sh", 8e-4, 0.8, 4, 4),
    ("coco-1pct", "mapl"): ("coco_1%/coco_1%_mapl_eva-clip-L.sh", 8e-4, 0.8, 16, 1),
    ("coco-1pct", "epalm"): ("coco_1%/coco_1%_epalm_eva-clip-L.sh", 1e-3, 0.8, 16, 1),
    ("coco-1pct", "depalm-qp-inner"): ("coco_1%/coco_1%_depalm-QP-inner_eva-clip-L.sh", 8e-4, 0.8, 8, 2),
    ("coco-1pct", "depalm-c-attn"): (None, 8e-4, 0.05, 16, 2),
    ("coco-1pct", "depalm-r-avgpool"): ("coco_1%/coco_1%_depalm-R-avgpool-L0_eva-clip-L.sh", 1e-3, 0.8, 8, 2),
    ("coco-1pct", "depalm-r-linear"): ("coco_1%/coco_1%_depalm-R-linear-L0_eva-clip-L.sh", 1e-3, 0.8, 8, 2),
    ("coco-1pct", "depalm-r-qpmapper"): ("coco_1%/coco_1%_depalm-R-QPMapper-L0_eva-clip-L.sh", 1e-3, 0.5, 8, 2),
    ("coco-1pct", "depalm-r-rand"): ("coco_1%/coco_1%_depalm-R-rand-L0_eva-clip-L.sh", 1e-3, 0.8, 8, 2),
    # vqav2-1pct
    ("vqav2-1pct", "depalm"): ("vqa_1%/vqa_1%_depalm-QP-L0.sh", 8e-4, 0.2, 16, 1),
    ("vqav2-1pct", "limber-1"): ("vqa_1%/vqa_1%_limber-1.sh", 8e-4, 0.8, 16, 1),
    ("vqav2-1pct", "limber-all"): ("vqa_1%/vqa_1%_limber-all.sh", 8e-4, 0.8, 4, 4),
    ("vqav2-1pct", "mapl"): ("vqa_1%/vqa_1%_mapl.sh", 8e-4, 0.8, 16, 1),
    ("vqav2-1pct", "epalm"): ("vqa_1%/vqa_1%_epalm.sh", 1e-3, 0.8, 16, 1),
    ("vqav2-1pct", "depalm-qp-inner"): ("vqa_1%/vqa_1%_depalm-QP-inner.sh", 8e-4, 0.8, 8, 2),
    ("vqav2-1pct", "depalm-c-attn"): ("vqa_1%/vqa_1%_depalm-c-attn.sh", 4e-3, 0.1, 16, 2),
    ("vqav2-1pct", "depalm-r-avgpool"): ("vqa_1%/vqa_1%_depalm-R-avgpool-L0.sh", 1e-3, 0.8, 8, 2),
    ("vqav2-1pct", "depalm-r-linear"): ("vqa_1%/vqa_1%_depalm-R-linear-L0.sh", 1e-3, 0.8, 8, 2),
    ("vqav2-1pct", "depalm-r-qpmapper"): ("vqa_1%/vqa_1%_depalm-R-QPMapper-L0.sh", 4e-4, 0.5, 8, 2),
    ("vqav2-1pct", "depalm-r-rand"): ("vqa_1%/vqa_1%_depalm-R-rand-L0.sh", 1e-3, 0.8, 8, 2),
    # audiocaps-1pct
    ("audiocaps-1pct", "depalm"): ("audiocaps_1%/audiocaps_1%_depalm-QP-L0_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps-1pct", "limber-1"): ("audiocaps_1%/audiocaps_1%_limber-1_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps-1pct", "limber-all"): ("audiocaps_1%/audiocaps_1%_limber-all_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps-1pct", "mapl"): ("audiocaps_1%/audiocaps_1%_mapl_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps-1pct", "epalm"): ("audiocaps_1%/audiocaps_1%_epalm_mavil.sh", 1e-3, 0.5, 4, 4),
    ("audiocaps-1pct", "depalm-qp-inner"): ("audiocaps_1%/audiocaps_1%_depalm-QP-inner_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps-1pct", "depalm-c-attn"): ("audiocaps_1%/audiocaps_1%_depalm-c-attn_mavil.sh", 4e-4, 0.5, 4, 4),
    ("audiocaps-1pct", "depalm-r-avgpool"): ("audiocaps_1%/audiocaps_1%_depalm-R-avgpool-L0_mavil.sh", 4e-4, 0.5, 8, 2),
    ("audiocaps-1pct", "depalm-r-linear"): ("audiocaps_1%/audiocaps_1%_depalm-R-linear-L0_mavil.sh", 4e-4, 0.5, 8, 2),
    ("audiocaps-1pct", "depalm-r-qpmapper"): ("audiocaps_1%/audiocaps_1%_depalm-R-QPMapper-L0_mavil.sh", 4e-4, 0.5, 8, 2),
    ("audiocaps-1pct", "depalm-r-rand"): ("audiocaps_1%/audiocaps_1%_depalm-R-rand-L0_mavil.sh", 4e-4, 0.5, 8, 2),
}

TEMPLATE = """\
# DePALM paper experiment: {setting} ({modality} {task}, {size} training samples{fraction_note}) x {method}.
# Written by configs/generate.py from DePALM Table 2 (backbones) and the official recipe.
# Official source: {source}
# Lines marked '>>> SET' hold placeholders: scaling train refuses to start until they are real paths.
#   scaling train --config configs/{setting}_{method}.yaml
#   V100 (no bf16): add  train.precision=fp16 model.frozen_dtype=fp16 train.deepspeed=ds_configs/zero2_fp16.json
{note}model:
  method: {method}
  llm: {llm}  # >>> SET: local Hugging Face directory
  encoder: {encoder}  # >>> SET: local weights (docs/backbones.md)
  frozen_dtype: bf16  # fp16 on V100
{model_extra}data:
  name: {dataset}
  task: {task}
  train: /path/to/shards/{dataset}  # >>> SET: shards folder (its index.json) or a webdataset URL
  val: /path/to/shards/{dataset}#val  # >>> SET
  test: /path/to/shards/{dataset}#test  # >>> SET
{data_extra}train:
  output_dir: runs/{setting}_{method}
  seed: 0
  lr: {lr}  # {lr_source}
  weight_decay: 0.1
  adam_eps: 1.0e-4
  warmup_fraction: 0.2
  min_lr_ratio: 1.0e-4
  clip: {clip}  # {clip_source}
  global_batch: {global_batch}  # {micro_batch} per GPU x accumulation {accumulation} x 8 GPUs
  micro_batch: {micro_batch}
  epochs: {epochs}
  precision: bf16  # fp16 on V100
  deepspeed: ds_configs/zero2_bf16.json  # null = DDP; zero3_bf16.json partitions the frozen LLM too
  save_every: 500
  keep_last: 3
  log_every: 10
  eval_every: 2000
eval:
  batch_size: 32
  max_new_tokens: 50  # official config/run.yaml llm.generation
  num_beams: 3
  metric: {metric}
"""


def _sci(x: float) -> str:
    mantissa, exp = f"{x:.1e}".split("e")
    return f"{mantissa}e{int(exp)}"


def depalm_settings() -> dict[str, tuple[str, float, int]]:
    """setting -> (dataset, data fraction, epochs): the full-data settings of TABLE2 and the LOW_DATA ones."""
    out = {d: (d, 1.0, row[5]) for d, row in TABLE2.items()}
    out.update(LOW_DATA)
    return out


def render(setting: str, method: str) -> str:
    dataset, fraction, epochs = depalm_settings()[setting]
    task, modality, size, llm, encoder, _, note = TABLE2[dataset]
    script, lr, clip, micro, accum = RECIPES[(setting, method)]
    if script is None:
        source = (f"none: {DEPALM} has no script for {setting} x {method}; the defaults of its config/run.yaml "
                  "and config/mod/cross_attn.yaml (batch 16 per GPU, accumulation 2")
        if fraction == 1:
            epochs = RUN_YAML_EPOCHS
            source += f", {epochs} epochs)"
        else:
            source += f"; {epochs} epochs as every 1% script)"
        lr_source = clip_source = "official default (no script)"
    else:
        source = f"{DEPALM} experiments/{script}"
        lr_source, clip_source = "official script", "official script"
    data_extra = ""
    if fraction < 1:
        data_extra += f"  fraction: {fraction}  # the official dataset.splits.train.max_rows={fraction}\n"
    if modality == "video":
        data_extra += f"  video_frames: {DEPALM_VIDEO_FRAMES}  # config/dataset/msrvtt.yaml num_frames\n" + DEPALM_VIDEO_PREPROCESSING
    if dataset in PROMPT_TEMPLATE:
        data_extra += f"  prompt_template: {PROMPT_TEMPLATE[dataset]!r}  # official config/dataset/{dataset}.yaml: no instruction\n"
    if "opt" in os.path.basename(llm):
        data_extra += ('  answer_token: "</a>"  # official config/llm/opt.yaml special_answer_token\n'
                       '  answer_prompt: "Answer: "  # official config/llm/opt.yaml special_answer_prompt (empty prompts)\n')
    return TEMPLATE.format(
        setting=setting, dataset=dataset, method=method, task=task, modality=modality, size=size, llm=llm, encoder=encoder,
        fraction_note=f", {fraction:.0%} of them" if fraction < 1 else "", source=source,
        epochs=epochs, note=f"# Note: {note}.\n" if note else "",
        data_extra=data_extra,
        model_extra=("  attn_implementation: eager  # transformers' TimeSformer has no SDPA (this also makes the LLM eager)\n"
                     f"  video_frames: {DEPALM_VIDEO_FRAMES}  # the TimeSformer reads them (time embeddings resized nearest)\n"
                     if modality == "video" else ""),
        lr=_sci(lr), lr_source=lr_source, clip=clip, clip_source=clip_source,
        micro_batch=micro, accumulation=accum, global_batch=micro * accum * GPUS,
        metric=metric_of(task),
    )


# ---------------------------------------------------------------- eP-ALM's own experiments
# dataset -> (task, modality, official config, official run script, LLM, encoder, epochs, batch per GPU, GPUs,
#             prompt template, data name, note)
EPALM_TABLE = {
    "vqav2": ("vqa", "image", "configs/image/ePALM_vqa.yaml", "run_scripts/accelerate_training/image/ePALM_vqa.sh",
              "/path/to/opt-2.7b", "/path/to/vit-base-patch16-224", 8, 64, 4, "{question}?</a>", "vqav2", "Karpathy splits"),
    "gqa": ("gqa", "image", "configs/image/ePALM_gqa.yaml", "run_scripts/accelerate_training/image/ePALM_gqa.sh",
            "/path/to/opt-2.7b", "/path/to/vit-base-patch16-224", 8, 64, 4, "{question}?</a>", "gqa", ""),
    "coco": ("caption", "image", "configs/image/ePALM_caption.yaml", "run_scripts/accelerate_training/image/ePALM_caption.sh",
             "/path/to/opt-2.7b", "/path/to/vit-base-patch16-224", 8, 16, 4, None, "coco", "Karpathy splits"),
    "msrvtt": ("caption", "video", "configs/video/ePALM_video_caption_msrvtt.yaml",
               "run_scripts/accelerate_training/video/ePALM_video_caption_msrvtt.sh",
               "/path/to/opt-2.7b", "/path/to/timesformer-base", 26, 16, 4, None, "msrvtt",
               "the official config reads 16 frames (num_frames: 16): the TimeSformer's 8 time embeddings are resized nearest"),
    "msrvtt-qa": ("videoqa", "video", "configs/video/ePALM_video_qa_msrvtt.yaml",
                  "run_scripts/accelerate_training/video/ePALM_video_qa_msrvtt.sh",
                  "/path/to/opt-2.7b", "/path/to/timesformer-base", 26, 8, 4, "{question}?</a>", "msrvtt-qa", ""),
    "msvd-qa": ("videoqa", "video", "configs/video/ePALM_video_qa_msvd.yaml",
                "run_scripts/accelerate_training/video/ePALM_video_qa_msvd.sh",
                "/path/to/opt-2.7b", "/path/to/timesformer-base", 26, 8, 4, "{question}?</a>", "msvd-qa", ""),
    "audiocaps": ("caption", "audio", "configs/audio/ePALM_audio_caption.yaml",
                  "run_scripts/accelerate_training/audio/ePALM_audio_caption.sh",
                  "/path/to/opt-2.7b", "/path/to/ast-audioset", 30, 8, 4, None, "audiocaps", ""),
}

# eP-ALM's datasets (dataset/vqa.py, gqa.py, caption.py, video_caption.py, video_vqa.py) preprocess every backbone
# alike: transforms.Normalize with the CLIP mean/std, RandomResizedCrop(scale (0.5, 1), BICUBIC) in training and
# Resize((size, size), BICUBIC) at test; images get RandomAugment(2, 7) over the 10 ops of the DePALM code, video
# frames torchvision's transforms.RandAugment() (2 ops, magnitude 9 of 30). Audio (dataset/audio_caption.py): Kaldi
# fbank, 128 bins, 1024 frames, (x + 4.27) / (2 * 4.57), masks 24/96: the AST MediaSpec and the data defaults already.
_EPALM_NORMALIZE = (
    "  image_mean: [0.48145466, 0.4578275, 0.40821073]  # transforms.Normalize: the CLIP mean and std\n"
    "  image_std: [0.26862954, 0.26130258, 0.27577711]\n"
    "  resample: bicubic  # RandomResizedCrop and the test Resize with Image.BICUBIC\n"
    "  image_resize: square  # test: Resize((image_size, image_size))\n"
)
EPALM_IMAGE_PREPROCESSING = {
    "image": _EPALM_NORMALIZE,
    "video": _EPALM_NORMALIZE + ("  randaugment_style: torchvision  # transforms.RandAugment() on the frames\n"
                                 "  randaugment_m: 9  # its default magnitude\n"),
}

# num_frames of eP-ALM's configs/video/*.yaml: 16 for MSR-VTT captioning, 8 for the video QA ones
EPALM_VIDEO_FRAMES = {"msrvtt": 16, "msrvtt-qa": 8, "msvd-qa": 8}

EPALM_TEMPLATE = """\
# eP-ALM paper experiment: {dataset} ({modality} {task}) with eP-ALM's backbones and recipe.
# Written by configs/generate.py from the official eP-ALM code.
# Official source: {epalm} {config} (recipe), {script} (backbones, {gpus} GPUs)
# Lines marked '>>> SET' hold placeholders: scaling train refuses to start until they are real paths.
#   scaling train --config configs/epalm-paper_{dataset}.yaml
{note}model:
  method: epalm
  llm: {llm}  # >>> SET: local Hugging Face directory
  encoder: {encoder}  # >>> SET: local Hugging Face directory
  frozen_dtype: fp16  # the official runs: accelerate --mixed_precision=fp16
  label_smoothing: 0.0
{model_extra}data:
  name: {name}
  task: {task}
  train: /path/to/shards/{name}  # >>> SET: shards folder (its index.json) or a webdataset URL
  val: /path/to/shards/{name}#val  # >>> SET
  test: /path/to/shards/{name}#test  # >>> SET
{data_extra}train:
  output_dir: runs/epalm-paper_{dataset}
  seed: 42
  lr: 2.0e-5  # optimizer.lr
  weight_decay: 0.02
  adam_eps: 1.0e-8  # optim/optim_factory.py builds torch.optim.AdamW without eps (no opt_eps in the configs)
  param_groups:
    prompt:
      lr: 1.0e-5  # optimizer.prompt_lr
  loss_on: all  # every non-pad token, the question included
  loss_reduction: sample_sum  # loss.sum() / batch size
  loss_weight: 0.1  # lm_loss_weight
  warmup_fraction: {warmup}  # approximation: a warm-up over the first epoch; eP-ALM's timm schedule is not reproduced (docs/fidelity.md)
  min_lr_ratio: 0.05  # min_lr 1e-6 / lr 2e-5
  clip: 0.0  # no gradient clipping
  global_batch: {global_batch}  # {micro_batch} per GPU x {gpus} GPUs
  micro_batch: {micro_batch}
  epochs: {epochs}
  precision: fp16
  deepspeed: null
  save_every: 500
  keep_last: 3
  log_every: 10
  eval_every: 2000
eval:
  batch_size: 32
  max_new_tokens: 30
  max_length: 30  # at most 30 tokens in total, prompt included (Hugging Face max_length)
  num_beams: 3
  metric: {metric}
"""


def render_epalm(dataset: str) -> str:
    task, modality, config, script, llm, encoder, epochs, micro, gpus, template, name, note = EPALM_TABLE[dataset]
    data_extra = ""
    if template is not None:
        data_extra += (f"  prompt_template: {template!r}  # question + '?' + the answer token, answer right after it\n"
                       '  answer_token: "</a>"  # special_answer_token\n')
    frames = EPALM_VIDEO_FRAMES.get(dataset, 8)
    if modality == "video":
        data_extra += f"  video_frames: {frames}  # num_frames of the official config\n"
    if modality in ("image", "video"):
        data_extra += EPALM_IMAGE_PREPROCESSING[modality]
    return EPALM_TEMPLATE.format(
        dataset=dataset, modality=modality, task=task, epalm=EPALM, config=config, script=script, gpus=gpus,
        note=f"# Note: {note}.\n" if note else "", llm=llm, encoder=encoder, name=name, data_extra=data_extra,
        model_extra=("  attn_implementation: eager  # transformers' TimeSformer has no SDPA (this also makes the LLM eager)\n"
                     f"  video_frames: {frames}  # the TimeSformer reads them (time embeddings resized nearest when not 8)\n"
                     if modality == "video" else ""),
        warmup=round(1 / epochs, 4), epochs=epochs, micro_batch=micro, global_batch=micro * gpus,
        metric=metric_of(task),
    )


# the methods DePALM compares (Tables 2-4): those of RECIPES, every one a preset of scaling/config/methods.py
METHODS = list(dict.fromkeys(method for _, method in RECIPES))


def check_registries() -> list[str]:
    """Names of these tables that the project's registries do not know: methods (presets), tasks, datasets
    (converters of ``scaling data convert``)."""
    from scaling.config.methods import METHODS as PRESETS
    from scaling.config.tasks import TASKS
    from scaling.data.annotations import PARSERS

    problems = [f"method {m!r} is not a preset of scaling/config/methods.py" for m in METHODS if m not in PRESETS]
    rows = [(d, row[0], d) for d, row in TABLE2.items()] + [(d, row[0], row[10]) for d, row in EPALM_TABLE.items()]
    problems += [f"{d}: task {t!r} is not one of scaling/config/tasks.py" for d, t, _ in rows if t not in TASKS]
    problems += [f"{d}: dataset {n!r} has no converter (scaling/data/annotations.py)" for d, _, n in rows if n not in PARSERS]
    missing = [(s, m) for s in depalm_settings() for m in METHODS if (s, m) not in RECIPES]
    problems += [f"RECIPES has no entry for {s} x {m}" for s, m in missing]
    return problems


def files() -> dict[str, str]:
    out = {os.path.join(HERE, f"{s}_{m}.yaml"): render(s, m) for s in depalm_settings() for m in METHODS}
    out.update({os.path.join(HERE, f"epalm-paper_{d}.yaml"): render_epalm(d) for d in EPALM_TABLE})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare the files with what would be written")
    args = parser.parse_args(argv)
    problems = check_registries()
    if problems:
        print("configs/generate.py disagrees with the registries:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    stale = []
    for path, text in files().items():
        current = open(path).read() if os.path.isfile(path) else None
        if current != text:
            stale.append(path)
            if not args.check:
                with open(path, "w") as fh:
                    fh.write(text)
    if args.check and stale:
        print(f"{len(stale)} config(s) differ from configs/generate.py, e.g. {stale[:3]}; run python configs/generate.py", file=sys.stderr)
        return 1
    if not args.check:
        print(f"wrote {len(stale)} of {len(files())} configs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
