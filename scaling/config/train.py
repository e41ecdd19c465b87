"""The ``train`` config section: the official DePALM code's recipe as defaults (``config/run.yaml``).

See docs/fidelity.md "Recipes, prompts and evaluation" for each default's source and the option
that selects the papers' text (or eP-ALM's recipe) instead."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from scaling.common.values import as_number
from scaling.config.base import ConfigError

DEFAULT_EPOCHS = 8.0  # DePALM supplement C.3
DEFAULT_VALUES = {"lr": 8e-4, "weight_decay": 0.1, "warmup_fraction": 0.2, "min_lr_ratio": 1e-4, "clip": 0.8, "epochs": 8}

# train.param_groups' categories -> the top-level modules of scaling.models.model.PerceptualLM whose parameters
# each holds (the optimizer, scaling.training.optim, sorts the trainable parameters by them), and the keys a
# category may override
PARAM_CATEGORIES: dict[str, tuple[str, ...]] = {
    "mapper": ("mapper",),
    "injection": ("injection",),
    "prompt": ("prompt", "deep_prompt"),
    "llm": ("llm", "adapters"),
    "encoder": ("extractor",),
    "other": (),
}
GROUP_KEYS = ("lr", "weight_decay")


@dataclasses.dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    seed: int = 0
    lr: float = 8e-4  # alpha_max
    weight_decay: float = 0.1  # on every trainable parameter (official code); see decay_1d
    adam_eps: float = 1e-4  # AdamW epsilon (official config/run.yaml)
    # per-category overrides of lr / weight_decay, e.g. {prompt: {lr: 1.0e-5}}; categories: mapper, injection,
    # prompt, llm, encoder, other (PARAM_CATEGORIES above; official training.optimizer.overwrite)
    param_groups: dict[str, Any] = dataclasses.field(default_factory=dict)
    warmup_fraction: float = 0.2  # linear warm-up over the first 20% of steps from lr*min_lr_ratio
    min_lr_ratio: float = 1e-4  # alpha_min = alpha_max * 1e-4
    clip: float = 0.8  # gradient clipping (global norm)
    global_batch: int = 128
    micro_batch: int = 16  # per device
    epochs: float | None = None  # the training length: epochs (default 8 when max_steps is not set) ...
    max_steps: int | None = None  # ... or optimizer steps; one of the two, never both
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    deepspeed: str | None = None  # path to a ds_configs/*.json; None = plain DDP / single process
    gradient_checkpointing: bool = False
    save_every: int = 500  # steps
    keep_last: int = 3
    log_every: int = 10
    eval_every: int | None = None  # steps; None = at the end only; 0 = off (no validation loss, samples or best checkpoint)
    resume: Literal["auto", "never"] = "auto"
    # --- added with the trainer (scaling/training) ---
    decay_1d: bool = True  # weight-decay biases, norm scales and 1-D parameters too (official); false: matrices only
    # the loss: target tokens (answer: the answer/caption and EOS; all: every non-pad token, the prompt included,
    # as eP-ALM), reduction (token_mean: mean over the batch's target tokens, DePALM; sample_sum: per-sample sum
    # averaged over the batch, eP-ALM) and a constant factor (eP-ALM's lm_loss_weight 0.1)
    loss_on: Literal["answer", "all"] = "answer"
    loss_reduction: Literal["token_mean", "sample_sum"] = "token_mean"
    loss_weight: float = 1.0
    # when the lr schedule advances: micro_batch (official DePALM: the rate of an optimizer step is the schedule
    # at its last micro batch's fraction of training) or optimizer_step (one schedule step per optimizer step)
    schedule_unit: Literal["micro_batch", "optimizer_step"] = "micro_batch"
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda:LOCAL_RANK when CUDA exists, else CPU
    dist_backend: str | None = None  # default: nccl on GPU, gloo on CPU
    val_batches: int | None = 50  # batches per rank for the periodic validation loss (None = the whole split)
    log_samples: int = 4  # generated samples written to TensorBoard/the log at each evaluation
    tensorboard: bool = True
    progress_bar: bool = True  # tqdm with ETA on rank 0
    requeue_exit_code: int = 124  # exit code after a preemption checkpoint (launch/*.sbatch requeue on it)
    # seconds between a preemption signal and SIGKILL (Slurm's KillWait, 30 by default, when a job is killed without
    # grace time; DeepSpeed's launcher: 30): the trainer warns when its slowest step + save exceed it
    signal_budget: float = 30.0
    # this many optimizer steps in a row skipped for non-finite gradients stop the run with a diagnosis (exit 3):
    # the weights no longer change or have diverged (fp16's loss scaler skips a few at the start; 0 = never stop)
    max_skipped_in_a_row: int = 20

    def __post_init__(self):
        problems = []
        for name in ("lr", "weight_decay", "warmup_fraction", "min_lr_ratio", "clip", "epochs"):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"train.{name} must be a finite number, got {value} (e.g. train.{name}="
                                f"{DEFAULT_VALUES.get(name, 1)})")
        if problems:  # the comparisons below would all be False for nan
            raise ConfigError(problems)
        if self.epochs is not None and self.max_steps is not None:
            raise ConfigError(
                f"train.epochs={self.epochs:g} and train.max_steps={self.max_steps} are both set, and only one can decide "
                f"the training length: keep one (train.epochs=null to train {self.max_steps} steps, or "
                f"train.max_steps=null to train {self.epochs:g} epochs)")
        if self.epochs is None and self.max_steps is None:
            self.epochs = DEFAULT_EPOCHS
        if self.lr <= 0:
            problems.append(f"train.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if not self.adam_eps > 0:
            problems.append(f"train.adam_eps must be > 0, got {self.adam_eps}")
        problems += _check_param_groups(self.param_groups)
        if not self.loss_weight > 0:
            problems.append(f"train.loss_weight must be > 0, got {self.loss_weight}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"train.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.clip < 0:
            problems.append(f"train.clip must be >= 0 (0 disables clipping), got {self.clip}")
        for name in ("global_batch", "micro_batch", "save_every", "keep_last", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs <= 0:
            problems.append(f"train.epochs must be > 0 (or set train.max_steps), got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"train.max_steps must be >= 1, got {self.max_steps}")
        if self.eval_every is not None and self.eval_every < 0:
            problems.append(f"train.eval_every must be >= 1 (every N steps), 0 (off) or null (at the end only), "
                            f"got {self.eval_every}")
        if self.val_batches is not None and self.val_batches < 0:
            problems.append(f"train.val_batches must be >= 0 or null, got {self.val_batches}")
        if self.signal_budget <= 0:
            problems.append(f"train.signal_budget must be > 0 seconds (Slurm's KillWait: 30 by default), got {self.signal_budget}")
        if self.max_skipped_in_a_row < 0:
            problems.append(f"train.max_skipped_in_a_row must be >= 0 (0 = never stop), got {self.max_skipped_in_a_row}")
        if not 1 <= self.requeue_exit_code <= 255:
            problems.append(f"train.requeue_exit_code must be in 1..255, got {self.requeue_exit_code}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < SEED_LIMIT:
            problems.append(f"train.seed must be an integer in [0, 2**32) (numpy's and the data pipeline's seeds), got "
                            f"{self.seed}")
        problems += check_output_dir(self.output_dir)
        if problems:
            raise ConfigError(problems)


SEED_LIMIT = 2**32


def check_output_dir(path: Any) -> list[str]:
    """``train.output_dir`` must name a directory: not empty, and not an existing file or device (``/dev/null``)."""
    import os

    if not isinstance(path, str) or not path.strip():
        return [f"train.output_dir is empty ({path!r}): set the run directory, e.g. train.output_dir=runs/coco-depalm"]
    full = os.path.expanduser(path)
    if os.path.exists(full) and not os.path.isdir(full):
        kind = "a file" if os.path.isfile(full) else "a device or special file"
        return [f"train.output_dir={path!r} is {kind}, not a directory: the run writes its checkpoints and logs in a "
                f"directory; set train.output_dir to a folder, e.g. train.output_dir=runs/coco-depalm"]
    return []


def _check_param_groups(groups: Any) -> list[str]:
    if not isinstance(groups, dict):
        return [f"train.param_groups must be a mapping category -> {{lr, weight_decay}}, got {groups!r}"]
    problems = []
    for cat, over in groups.items():
        if cat not in PARAM_CATEGORIES:
            problems.append(f"train.param_groups: unknown category {cat!r}; valid: {list(PARAM_CATEGORIES)} "
                            "(official adapter = mapper + injection, cross_attn = injection, feat_model = encoder, "
                            "model_text = llm)")
            continue
        if not isinstance(over, dict) or not over:
            problems.append(f"train.param_groups.{cat} must be a non-empty mapping with keys {list(GROUP_KEYS)}, got {over!r}")
            continue
        for key, value in list(over.items()):
            value = over[key] = as_number(value)  # YAML reads 1e-5 (no dot) as a string
            if key not in GROUP_KEYS:
                problems.append(f"train.param_groups.{cat}: unknown key {key!r}; valid: {list(GROUP_KEYS)}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"train.param_groups.{cat}.{key} must be a number, got {value!r}")
            elif (key == "lr" and value <= 0) or (key == "weight_decay" and value < 0):
                problems.append(f"train.param_groups.{cat}.{key} must be {'> 0' if key == 'lr' else '>= 0'}, got {value}")
    return problems
