"""The ``train`` config section: the papers' recipe as defaults (DePALM supplement C.3)."""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    seed: int = 0
    lr: float = 8e-4  # alpha_max
    weight_decay: float = 0.1
    warmup_fraction: float = 0.2  # linear warm-up over the first 20% of steps from lr*min_lr_ratio
    min_lr_ratio: float = 1e-4  # alpha_min = alpha_max * 1e-4
    clip: float = 0.8  # gradient clipping (global norm)
    global_batch: int = 128
    micro_batch: int = 16  # per device
    epochs: float = 8
    max_steps: int | None = None  # overrides epochs when set
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    deepspeed: str | None = None  # path to a ds_configs/*.json; None = plain DDP / single process
    gradient_checkpointing: bool = False
    save_every: int = 500  # steps
    keep_last: int = 3
    log_every: int = 10
    eval_every: int | None = None  # steps; None = at the end only
    resume: Literal["auto", "never"] = "auto"
