"""The ``data`` config section: where shards are, the task, subsets, augmentation, text templates.

A split source (``train`` / ``val`` / ``test``) is one or several sources joined by ``::``; each is
an index reference (``shards/coco`` or ``shards/coco/index.json``, optionally ``#split`` to read
another split of that index) or a webdataset URL pattern (``shards/coco/train-{000000..000031}.tar``,
``pipe:curl -s https://host/train-{000000..000031}.tar``, ``https://...``). Sample counts always come
from the shards' ``index.json`` (found next to the shards, one folder up, or at ``data.index``).
See docs/data.md for the shard format.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from scaling.config.base import ConfigError
from scaling.config.tasks import TaskName

RANDAUGMENT_OPS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
    "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)
# the 10 operations of the official DePALM code (depalm/data/data/data_base.py RandomAugment(2, 7, augs=...))
OFFICIAL_RANDAUGMENT_OPS = (
    "Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
    "Rotate",
)
RANDAUGMENT_MAX_M = {"official": 10, "torchvision": 30}


@dataclasses.dataclass
class DataConfig:
    name: str | None = None  # dataset name used in reports (coco, vqav2, ...)
    task: TaskName = "caption"  # a task of scaling/config/tasks.py
    train: str | None = None  # webdataset URL(s): 'shards/coco/train-{000000..000031}.tar', pipe:..., http(s)://...
    val: str | None = None
    test: str | None = None
    use_features: bool = False  # read cached encoder features (scaling data cache-features) instead of media
    fraction: float = 1.0  # low-data subset: deterministic fraction of the training samples
    subset_seed: int = 0
    shuffle_buffer: int = 1000
    num_workers: int = 2
    max_text_len: int = 64
    prompt_template: str | None = None  # default per task (scaling.data.text: VQA "{question}\n\nAnswer:", caption empty)
    answer_token: str | None = None  # appended to the prompt, answer right after it (official OPT config: "</a>")
    answer_prompt: str | None = None  # an empty prompt becomes this (official OPT config: "Answer: ")
    video_frames: int = 8
    # image/video preprocessing in place of the encoder's own (its MediaSpec), e.g. eP-ALM's datasets normalise
    # every backbone with the CLIP mean/std and resize bicubic: null = the encoder's values
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    resample: Literal["bicubic", "bilinear", "nearest", "lanczos"] | None = None  # resize and random-crop filter
    image_resize: Literal["square", "shortest_edge"] | None = None  # evaluation: size x size, or shortest edge + center crop
    augment: bool = True
    samples_per_epoch: int | None = None  # default: read from the shards' index
    # ---- added with the streaming pipeline (scaling/data) ----
    index: str | None = None  # explicit index.json (path or URL) when it cannot be found next to the shards (pipe: sources)
    features: str | None = None  # folder of cached feature shards (its index.json); used when use_features=true
    hflip: float = 0.5  # horizontal flip probability at training (images, videos)
    crop_scale: list[float] = dataclasses.field(default_factory=lambda: [0.5, 1.0])  # random resized crop area range
    crop_ratio: list[float] = dataclasses.field(default_factory=lambda: [3 / 4, 4 / 3])  # aspect ratio range
    randaugment_n: int = 2  # RandAugment: ops per image (0 disables)
    randaugment_m: int = 7  # RandAugment: magnitude, 0..10 (official style) or 0..30 (torchvision style)
    randaugment_ops: list[str] | None = None  # default: the style's ops (official: 10, torchvision: 14)
    # official: the DePALM code's RandomAugment (levels of 10, each drawn op applied with p 0.5, grey fill);
    # torchvision: torchvision's RandAugment magnitude ranges, every drawn op applied (see scaling.data.augment)
    randaugment_style: Literal["official", "torchvision"] = "official"
    freq_mask: int = 24  # audio: max frequency-mask width (mel bins) at training
    time_mask: int = 96  # audio: max time-mask width (frames) at training
    length_bucketing: bool = False  # group samples of similar text length into batches (training)
    bucket_batches: int = 8  # bucketing window, in batches
    prefetch_factor: int = 2  # batches prefetched per dataloader worker
    pin_memory: bool = True  # pin batches when CUDA is available
    # pipe: sources are shell commands: the loader opens them only when you set this yourself (a checkpoint's
    # stored config never can; `scaling eval/predict --data 'pipe:...'` sets it for its own argument)
    allow_pipe: bool = False

    def __post_init__(self):
        problems = []
        if not 0.0 < self.fraction <= 1.0:
            problems.append(f"data.fraction must be in (0, 1], got {self.fraction} (e.g. 0.01 for the 1% setting)")
        if self.shuffle_buffer < 1:
            problems.append("data.shuffle_buffer must be >= 1 (1 = no shuffling inside shards)")
        if self.num_workers < 0:
            problems.append("data.num_workers must be >= 0 (0 = load in the training process)")
        if self.max_text_len < 2:
            problems.append("data.max_text_len must be >= 2 (a prompt token and an answer token)")
        if self.video_frames < 1:
            problems.append("data.video_frames must be >= 1")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            problems.append(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {self.crop_scale}")
        if len(self.crop_ratio) != 2 or not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            problems.append(f"data.crop_ratio must be [low, high] with 0 < low <= high, got {self.crop_ratio}")
        top = RANDAUGMENT_MAX_M.get(self.randaugment_style, 30)
        if not 0 <= self.randaugment_m <= top:
            problems.append(f"data.randaugment_m must be in 0..{top} with data.randaugment_style "
                            f"{self.randaugment_style}, got {self.randaugment_m}")
        if self.randaugment_ops is not None:
            valid = OFFICIAL_RANDAUGMENT_OPS if self.randaugment_style == "official" else RANDAUGMENT_OPS
            bad = [op for op in self.randaugment_ops if op not in valid]
            if bad:
                problems.append(f"data.randaugment_ops: unknown {bad} with data.randaugment_style "
                                f"{self.randaugment_style}; valid: {list(valid)}")
        for key in ("image_mean", "image_std"):
            value = getattr(self, key)
            if value is not None and (len(value) != 3 or (key == "image_std" and min(value) <= 0)):
                problems.append(f"data.{key} must be 3 numbers (R, G, B){', all > 0' if key == 'image_std' else ''}, "
                                f"got {value}; null keeps the encoder's")
        if not 0 <= self.hflip <= 1:
            problems.append(f"data.hflip is a probability, got {self.hflip}")
        if self.freq_mask < 0 or self.time_mask < 0:
            problems.append("data.freq_mask and data.time_mask must be >= 0")
        if self.bucket_batches < 1:
            problems.append("data.bucket_batches must be >= 1")
        if self.prefetch_factor < 1:
            problems.append("data.prefetch_factor must be >= 1")
        if problems:
            raise ConfigError(problems)
