"""The ``data`` config section: where shards are, the task, subsets, augmentation, text templates."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class DataConfig:
    name: str | None = None  # dataset name used in reports (coco, vqav2, ...)
    task: Literal["caption", "vqa", "gqa", "videoqa"] = "caption"
    train: str | None = None  # webdataset URL(s): 'shards/coco/train-{000000..000031}.tar', pipe:..., http(s)://...
    val: str | None = None
    test: str | None = None
    use_features: bool = False  # read cached encoder features (scaling data cache-features) instead of media
    fraction: float = 1.0  # low-data subset: deterministic fraction of the training samples
    subset_seed: int = 0
    shuffle_buffer: int = 1000
    num_workers: int = 2
    max_text_len: int = 64
    prompt_template: str | None = None  # default per task
    video_frames: int = 8
    augment: bool = True
    samples_per_epoch: int | None = None  # default: read from the shards' index
