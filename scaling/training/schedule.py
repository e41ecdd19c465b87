"""The learning-rate schedule of DePALM supplement C.3: linear warm-up, then cosine decay.

Over the first ``warmup_fraction`` (20%) of the optimizer steps the rate rises linearly from
``lr·min_ratio`` to ``lr``; then a half cosine brings it back to ``lr·min_ratio`` at the last step.
:func:`lr_factor` is the multiplier of ``lr`` at a step; :func:`build_scheduler` wraps it in a
``LambdaLR`` (whose state — the step count — goes into checkpoints).
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.2, min_ratio: float = 1e-4
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor`; step it once per applied optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_fraction, min_ratio)
    )
