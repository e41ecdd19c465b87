"""Write one config per experiment of the DePALM paper: dataset × method (``configs/<dataset>_<method>.yaml``).

    python configs/generate.py            # (re)write the files
    python configs/generate.py --check    # exit 1 if a file differs from what this script writes

Backbones and data sets follow DePALM Table 2 (LLM and perceptual backbone per dataset); epochs and
the optimisation recipe follow its supplement C.3 (8 epochs; 12 on AudioCaps; 20 on TextCaps,
OKVQA, AOKVQA and TextVQA; AdamW lr 8e-4, weight decay 0.1, 20% warm-up then cosine to lr·1e-4,
clipping 0.8, batch 16 per GPU × 8 GPUs = 128, label smoothing 2e-3). Paths are placeholders
(``/path/to/...``) that ``scaling train`` refuses until they are set.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

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
               "TimeSformer reads 8 frames (data.video_frames)"),
}

METHODS = [
    "depalm", "limber-1", "limber-all", "mapl", "epalm", "depalm-qp-inner", "depalm-c-attn",
    "depalm-r-avgpool", "depalm-r-linear", "depalm-r-qpmapper", "depalm-r-rand",
]

TEMPLATE = """\
# DePALM paper experiment: {dataset} ({modality} {task}, {size} training samples) x {method}.
# Written by configs/generate.py from DePALM Table 2 (backbones) and supplement C.3 (recipe).
# Lines marked '>>> SET' hold placeholders: scaling train refuses to start until they are real paths.
#   scaling train --config configs/{dataset}_{method}.yaml
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
  output_dir: runs/{dataset}_{method}
  seed: 0
  lr: 8.0e-4  # the paper sweeps {{1e-3, 8e-4, 4e-4}} per method x dataset
  weight_decay: 0.1
  warmup_fraction: 0.2
  min_lr_ratio: 1.0e-4
  clip: 0.8
  global_batch: 128
  micro_batch: 16
  epochs: {epochs}
  precision: bf16  # fp16 on V100
  deepspeed: ds_configs/zero2_bf16.json  # null = DDP; zero3_bf16.json partitions the frozen LLM too
  save_every: 500
  keep_last: 3
  log_every: 10
  eval_every: 2000
eval:
  batch_size: 32
  max_new_tokens: {max_new_tokens}
  num_beams: 1
  metric: {metric}
"""


def render(dataset: str, method: str) -> str:
    task, modality, size, llm, encoder, epochs, note = TABLE2[dataset]
    return TEMPLATE.format(
        dataset=dataset, method=method, task=task, modality=modality, size=size, llm=llm, encoder=encoder,
        epochs=epochs, note=f"# Note: {note}.\n" if note else "",
        data_extra="  video_frames: 8\n" if modality == "video" else "",
        model_extra=("  attn_implementation: eager  # transformers' TimeSformer has no SDPA (this also makes the LLM eager)\n"
                     if modality == "video" else ""),
        max_new_tokens=20 if task == "caption" else 10,
        metric="CIDEr" if task == "caption" else "accuracy",
    )


def files() -> dict[str, str]:
    return {os.path.join(HERE, f"{d}_{m}.yaml"): render(d, m) for d in TABLE2 for m in METHODS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare the files with what would be written")
    args = parser.parse_args(argv)
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
