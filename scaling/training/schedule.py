"""The learning-rate schedule of DePALM supplement C.3: linear warm-up, then cosine decay.

Over the first ``warmup_fraction`` (20%) of training the rate rises linearly from ``lr·min_ratio``
to ``lr``; then a half cosine brings it back towards ``lr·min_ratio``. Two clocks (``train.schedule_unit``):

* ``micro_batch`` (default; the official DePALM code, ``depalmodel.py`` + ``optim/cosine_scheduler.py``):
  the schedule is a function of the fraction of training done, advanced after every micro batch; an
  optimizer step applies the rate of its **last** micro batch, ``t = (s·A + A − 1) / (S·A)`` for step
  ``s`` of ``S`` with ``A`` micro batches per step (:func:`fraction_factor`). The last step ends just
  short of the minimum.
* ``optimizer_step``: one schedule step per optimizer step, the last one exactly at ``lr·min_ratio``
  (:func:`lr_factor`).

:func:`build_scheduler` wraps the chosen clock in a ``LambdaLR`` stepped once per optimizer step (its
state — the step count — goes into checkpoints).
"""

from __future__ import annotations

import math

import torch


def lr_factor(step: int, total_steps: int, warmup_fraction: float = 0.2, min_ratio: float = 1e-4) -> float:
    """Multiplier of the peak rate at optimizer step ``step`` (0-based) of ``total_steps``."""
    total = max(1, int(total_steps))
    warmup = int(round(warmup_fraction * total))
    step = min(max(0, step), total - 1) if total > 1 else 0
    if warmup > 0 and step < warmup:
        return min_ratio + (1.0 - min_ratio) * step / warmup
    decay = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / decay)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def fraction_factor(t: float, warmup_fraction: float = 0.2, min_ratio: float = 1e-4) -> float:
    """Multiplier of the peak rate at fraction ``t`` in [0, 1] of training (the official DePALM
    ``LinearWarmupCosineAnnealingLR`` with its clock in epochs divided by the number of epochs)."""
    t = min(max(0.0, t), 1.0)
    if t < warmup_fraction:
        return min_ratio + (1.0 - min_ratio) * t / warmup_fraction
    progress = (t - warmup_fraction) / max(1e-12, 1.0 - warmup_fraction)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedule_factor(
    step: int, total_steps: int, warmup_fraction: float = 0.2, min_ratio: float = 1e-4,
    accumulation: int = 1, unit: str = "micro_batch",
) -> float:
    """Multiplier of the peak rate at optimizer step ``step`` (0-based) under ``train.schedule_unit``."""
    if unit == "optimizer_step":
        return lr_factor(step, total_steps, warmup_fraction, min_ratio)
    if unit != "micro_batch":
        raise ValueError(f"unknown schedule unit {unit!r}: micro_batch or optimizer_step")
    a, total = max(1, int(accumulation)), max(1, int(total_steps))
    step = min(max(0, step), total - 1)
    return fraction_factor((step * a + a - 1) / (total * a), warmup_fraction, min_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.2, min_ratio: float = 1e-4,
    accumulation: int = 1, unit: str = "micro_batch",
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`schedule_factor`; step it once per applied optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: schedule_factor(s, total_steps, warmup_fraction, min_ratio, accumulation, unit)
    )
